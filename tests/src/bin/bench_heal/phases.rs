//! Where a heal's time goes after the `down`: when the survivors' logs say each lost
//! slot's new replica started (the driver's create and start returned) and first passed
//! its health check. The end of the heal (a survivor's `ps` showing it) is the heal time.

use std::collections::BTreeSet;

use knit_tests::Peer;

/// For one trial, ms from the kill until the last lost slot reached each point.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Phases {
    /// The replica started (logged `started` by its new owner).
    pub(crate) started_ms: Option<u64>,
    /// Its first health check passed (logged by its new owner).
    pub(crate) healthy_ms: Option<u64>,
}

/// Reads the phases of the slots `lost` from the logs of `survivors`, counting only lines
/// stamped after `kill_ms`.
pub(crate) fn read(survivors: &[&Peer], lost: &BTreeSet<String>, kill_ms: u64) -> Phases {
    let mut started = Vec::new();
    let mut healthy = Vec::new();
    for peer in survivors {
        for line in peer.log().lines() {
            let Some((at, message, slot)) = parse(line) else {
                continue;
            };
            if at < kill_ms || !lost.contains(slot) {
                continue;
            }
            let into = match message {
                "started" => &mut started,
                "first health check passed" => &mut healthy,
                _ => continue,
            };
            into.push((slot.to_owned(), at - kill_ms));
        }
    }
    Phases {
        started_ms: last_of_firsts(&started, lost),
        healthy_ms: last_of_firsts(&healthy, lost),
    }
}

/// The latest of each slot's first time, if every slot has one.
fn last_of_firsts(times: &[(String, u64)], slots: &BTreeSet<String>) -> Option<u64> {
    slots
        .iter()
        .map(|slot| {
            times
                .iter()
                .filter(|(s, _)| s == slot)
                .map(|(_, ms)| *ms)
                .min()
        })
        .try_fold(0, |latest, first| first.map(|ms| latest.max(ms)))
}

/// A peer's plain log line, `2026-12-03T06:25:29.412566Z  INFO started slot=web.1 ...`:
/// its time (ms since the epoch), its message and its slot.
fn parse(line: &str) -> Option<(u64, &str, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("INFO")?.trim_start();
    let (message, fields) = rest.split_once(" slot=")?;
    let slot = fields.split(' ').next()?;
    Some((rfc3339_ms(stamp)?, message, slot))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` as ms since the Unix epoch.
fn rfc3339_ms(stamp: &str) -> Option<u64> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date.next()??, date.next()??, date.next()??);
    let (clock, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (clock.next()??, clock.next()??, clock.next()??);
    let millis: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_give_their_time_message_and_slot() {
        let line = "2026-12-03T06:25:29.412566Z  INFO started slot=heal-docker-9.2 runtime_id=abc version=1";
        let (at, message, slot) = parse(line).unwrap();
        // date -d 2026-12-03T06:25:29.412Z +%s%3N
        assert_eq!(at, 1_796_279_129_412);
        assert_eq!((message, slot), ("started", "heal-docker-9.2"));
        assert_eq!(
            parse("2026-12-03T06:25:29Z  WARN start failed slot=x"),
            None
        );
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
    }

    #[test]
    fn a_phase_is_the_last_slot_to_reach_it_first() {
        let slots: BTreeSet<String> = ["a".into(), "b".into()].into();
        let times = vec![("a".into(), 300), ("b".into(), 500), ("a".into(), 900)];
        assert_eq!(last_of_firsts(&times, &slots), Some(500));
        assert_eq!(last_of_firsts(&times[..1], &slots), None);
    }
}
