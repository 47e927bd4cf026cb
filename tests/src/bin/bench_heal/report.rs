//! The table the benchmark prints, and its notes.

use knit_tests::report::{Cell, Format, Notes, Report, Samples, Table};
use serde_json::{Map, json};

use crate::scenario::{Figures, Setup};
use crate::swarm::{SwarmFigures, SwarmTrial};

/// Replicas lost per trial: one count, or the range over the trials.
fn lost(f: &Figures) -> Cell {
    let lost = Samples::new(f.heals.iter().map(|h| u64::try_from(h.lost).unwrap_or(0)));
    match (lost.min(), lost.max()) {
        (Some(a), Some(b)) if a == b => Cell::int(a),
        (Some(a), Some(b)) => Cell::figure(format!("{a}-{b}"), json!({ "min": a, "max": b })),
        _ => Cell::missing(),
    }
}

/// The table, one row per configuration, then one line per failure.
pub(crate) fn print(out: &Report, results: &[(Setup, String, Figures)]) {
    let mut table = Table::new(&[
        "profile",
        "driver",
        "failure",
        "heal p50 (s)",
        "heal p99 (s)",
        "heal max (s)",
        "detect p50 (s)",
        "detect first p50 (s)",
        "heal − detect p50 (s)",
        "started p50 (s)",
        "check passed p50 (s)",
        "restore p50 (s)",
        "replicas lost / trial",
        "trials ok",
    ]);
    for (setup, driver, f) in results {
        let heal = Samples::new(f.heals.iter().map(|h| h.heal_ms));
        let restart = f
            .heals
            .iter()
            .map(|h| h.heal_ms.saturating_sub(h.detect_last_ms));
        table.row(vec![
            Cell::text(&setup.profile),
            Cell::text(driver),
            Cell::text(setup.failure.name()),
            Cell::secs(heal.p50()),
            Cell::secs(heal.p99()),
            Cell::secs(heal.max()),
            Cell::secs(Samples::new(f.heals.iter().map(|h| h.detect_last_ms)).p50()),
            Cell::secs(Samples::new(f.heals.iter().map(|h| h.detect_first_ms)).p50()),
            Cell::secs(Samples::new(restart).p50()),
            Cell::secs(Samples::new(f.heals.iter().filter_map(|h| h.phases.started_ms)).p50()),
            Cell::secs(Samples::new(f.heals.iter().filter_map(|h| h.phases.healthy_ms)).p50()),
            Cell::secs(Samples::new(f.restore_ms.iter().copied()).p50()),
            lost(f),
            Cell::ratio(f.heals.len(), setup.trials),
        ]);
    }
    out.table("heal", &table);
    let mut notes = Notes::new();
    for (setup, driver, f) in results {
        let label = format!("{}, {driver}, {}", setup.profile, setup.failure.name());
        if let Some(ms) = f.first_ms {
            notes.add(format!(
                "{label}: {} replicas first ran healthy {} s after create",
                setup.replicas,
                Cell::secs(Some(ms)).shown()
            ));
        }
        notes.outcome(&label, &f.failures, f.aborted.as_ref());
    }
    out.notes(&notes);
}

/// What the side-by-side table compares, printed before it.
const SIDE_BY_SIDE_HEADER: &str = "\
Heal side by side with Docker Swarm: the same number of hosts and replicas, the same trials,
and per profile one knit run and one Swarm run, back to back on this machine.

- End condition, knit: every slot of the service has an owner other than the victim whose
  replica is `running` and `healthy` (knit's HTTP check of `/`, every 250 ms, passed), as
  the first survivor that answers `/v1/services/NAME/ps` shows it, polled every 50 ms.
- End condition, Swarm (swarm-heal.sh): as many tasks as replicas with desired and current
  state `Running` on nodes other than the victim, as the manager's `docker service ps`
  shows it, polled every 100 ms; the service has no health check (busybox httpd), so a
  replica counts once its container runs. Right after, the script GETs `/` of each over
  HTTP (outside the timed window; a miss is noted below).
- kill: SIGKILL of the host's peer (knit) or of every process of the node: dockerd,
  containerd, shims, containers (Swarm). netcut: the host becomes unreachable while
  everything on it keeps running: iptables drops all traffic between the peer's loopback
  address and the other peers' (knit; the peers run on loopback because their containers
  publish on the peer's address, which a network namespace would hide from the host's one
  Docker engine), the node's veth on the lab bridge set down (Swarm).
- Victim: knit loses the peer with the most replicas; Swarm a node with replicas other
  than the Raft leader (a worker; one manager), rotating. Replicas lost are in the other
  table (knit) and in the notes (Swarm).
- Times run from the failure (knit's netcut: from before the first of its iptables rules,
  all in place within about 0.1 s); knit's detect is the last survivor's `down` stamp,
  Swarm's the first poll where the manager lists the node `Down`. knit's service has
  `--restart-delay 200ms`; `fast` probes every 500 ms, `lan` every 1 s.";

/// The side-by-side table: knit's heal beside Swarm's, per profile and failure.
pub(crate) fn print_side_by_side(
    out: &Report,
    results: &[(Setup, String, Figures)],
    swarm: &[(String, SwarmFigures)],
    skipped: Option<&str>,
) {
    // JSON gives one note per line: one per paragraph or list item there.
    let header = match out.format() {
        Format::Table => SIDE_BY_SIDE_HEADER.to_owned(),
        Format::Json => unwrapped(SIDE_BY_SIDE_HEADER),
    };
    out.text(&format!("\n{header}\n"));
    let mut table = Table::new(&[
        "profile",
        "failure",
        "knit driver",
        "knit p50 (s)",
        "knit p90 (s)",
        "knit max (s)",
        "knit detect p50 (s)",
        "knit ok",
        "Swarm settings",
        "Swarm p50 (s)",
        "Swarm p90 (s)",
        "Swarm max (s)",
        "Swarm detect p50 (s)",
        "Swarm ok",
        "Swarm/knit p50",
        "Swarm/knit p90",
    ]);
    for (setup, driver, f) in results {
        let knit = Samples::new(f.heals.iter().map(|h| h.heal_ms));
        let knit_detect = Samples::new(f.heals.iter().map(|h| h.detect_last_ms));
        let theirs = swarm
            .iter()
            .find(|(p, _)| *p == setup.profile)
            .map(|(_, s)| s);
        let trials: Vec<&SwarmTrial> = theirs
            .map(|s| s.of(setup.failure).collect())
            .unwrap_or_default();
        let healed = Samples::new(trials.iter().filter_map(|t| t.heal_ms));
        let detect = Samples::new(trials.iter().filter_map(|t| t.detect_ms));
        let settings = theirs.map_or(Cell::missing(), |s| {
            if s.settings.is_empty() {
                Cell::missing()
            } else {
                Cell::text(&s.settings)
            }
        });
        let ran = theirs.is_some_and(|s| !s.settings.is_empty());
        let mut extra = Map::new();
        extra.insert(
            "knit_heal_ms".into(),
            json!(f.heals.iter().map(|h| h.heal_ms).collect::<Vec<_>>()),
        );
        extra.insert(
            "swarm_heal_ms".into(),
            json!(trials.iter().map(|t| t.heal_ms).collect::<Vec<_>>()),
        );
        table.row_with(
            vec![
                Cell::text(&setup.profile),
                Cell::text(setup.failure.name()),
                Cell::text(driver),
                Cell::secs(knit.p50()),
                Cell::secs(knit.p90()),
                Cell::secs(knit.max()),
                Cell::secs(knit_detect.p50()),
                Cell::ratio(f.heals.len(), setup.trials),
                settings,
                Cell::secs(healed.p50()),
                Cell::secs(healed.p90()),
                Cell::secs(healed.max()),
                Cell::secs(detect.p50()),
                if ran {
                    Cell::ratio(healed.count(), setup.trials)
                } else {
                    Cell::missing()
                },
                times(healed.p50(), knit.p50()),
                times(healed.p90(), knit.p90()),
            ],
            extra,
        );
    }
    out.table("side_by_side", &table);
    let mut notes = Notes::new();
    if let Some(why) = skipped {
        notes.add(format!("Swarm: skipped: {why}"));
    }
    for (profile, s) in swarm {
        for t in &s.trials {
            notes.add(format!(
                "Swarm {profile}, {}: {} lost {} replicas, down after {}, healed after {}, {} answered HTTP",
                t.failure.name(),
                t.victim,
                t.lost,
                secs_or_na(t.detect_ms),
                secs_or_na(t.heal_ms),
                t.http_ok,
            ));
        }
        notes.outcome(
            &format!("Swarm {profile}"),
            Vec::<String>::new(),
            s.aborted.as_ref(),
        );
    }
    out.notes(&notes);
}

/// `theirs / ours` as `2.4x`, where both are there.
fn times(theirs: Option<u64>, ours: Option<u64>) -> Cell {
    match (theirs, ours) {
        (Some(t), Some(o)) if o > 0 => {
            // Milliseconds far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let ratio = t as f64 / o as f64;
            Cell::figure(format!("{ratio:.1}x"), json!(ratio))
        }
        _ => Cell::missing(),
    }
}

/// Milliseconds as `1.23 s`, or `NA`.
fn secs_or_na(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "NA".to_owned(),
        |ms| format!("{} s", Cell::secs(Some(ms)).shown()),
    )
}

/// `text` with each paragraph and list item (`- `) on one line.
fn unwrapped(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim) {
        let continues = !line.is_empty() && !line.starts_with("- ") && !out.ends_with('\n');
        if continues && !out.is_empty() {
            out.push(' ');
        } else if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line);
        if line.is_empty() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unwrapped;

    #[test]
    fn paragraphs_and_list_items_become_one_line_each() {
        let text = "First para\ngoes on.\n\n- one item\n  wrapped\n- two";
        assert_eq!(
            unwrapped(text),
            "First para goes on.\n\n- one item wrapped\n- two"
        );
    }
}
