//! Timing profiles for failure detection: `lan` (foca's LAN preset), `wan`, and `fast`.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifeguard::SuspicionBounds;

/// foca's largest packet. A QUIC datagram holds 1,162 bytes before path-MTU discovery
/// raises the limit; the transport adds a one-byte envelope.
pub const MAX_PACKET_BYTES: usize = 1100;

/// How quickly the mesh probes and how long it suspects before it declares a member down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// foca's LAN preset: probe every 1 s, suspect for 1 to 6 s (see
    /// [`Profile::suspicion_bounds`]).
    #[default]
    Lan,
    /// foca's WAN preset: probe every 5 s, suspect for 10 to 30 s (see
    /// [`Profile::suspicion_bounds`]).
    Wan,
    /// For one rack or one host: probe every 500 ms, suspect for 0.5 to 2 s (see
    /// [`Profile::suspicion_bounds`]).
    /// Measured on loopback with no false positive (see BENCHMARKS.md).
    Fast,
}

impl Profile {
    /// How often a peer runs anti-entropy with one member (ms): every second on `fast`,
    /// every 2 s otherwise. The peer and the simulator both read it here.
    pub fn anti_entropy_period_ms(self) -> u64 {
        match self {
            Self::Fast => 1_000,
            _ => 2_000,
        }
    }

    /// How often a peer has the transport check one member's port (ms), one datagram of a
    /// byte out and, on average, one in each time, whatever the cluster's size: a quarter
    /// of the probe period on `fast` (125 ms), which trades idle wake-ups for the shortest
    /// detection, half of it elsewhere (`lan` 500 ms, `wan` 2.5 s).
    pub fn port_sweep_ms(self) -> u64 {
        let period = self.config(1).probe_period;
        let share = if self == Profile::Fast { 4 } else { 2 };
        u64::try_from(period.as_millis() / share)
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The time between two periodic gossips (ms), whatever the cluster's size.
    pub fn gossip_period_ms(self) -> u64 {
        self.config(1).periodic_gossip.map_or(1_000, |g| {
            u64::try_from(g.frequency.as_millis()).unwrap_or(u64::MAX)
        })
    }

    /// How long a suspicion lasts in a cluster of `cluster_size`: from the longest, with
    /// no other member confirming it, to the shortest, with enough confirmations
    /// (Lifeguard's dynamic suspicion; see [`crate::lifeguard`]). Both grow with
    /// `max(1, log10 n)`, as foca's fixed timeout does.
    ///
    /// | profile | shortest | longest | foca's fixed timeout before |
    /// |---|---|---|---|
    /// | `fast` | 0.5 s | 2 s | 1 s |
    /// | `lan` | 1 s | 6 s | 4 s |
    /// | `wan` | 10 s | 30 s | 30 s |
    pub fn suspicion_bounds(self, cluster_size: usize) -> SuspicionBounds {
        let (min_ms, max_ms) = match self {
            Profile::Fast => (500.0, 2_000.0),
            Profile::Lan => (1_000.0, 6_000.0),
            Profile::Wan => (10_000.0, 30_000.0),
        };
        let scale = log10_at_least_one(cluster_size);
        SuspicionBounds::new(
            Duration::from_secs_f64(min_ms * scale / 1_000.0),
            Duration::from_secs_f64(max_ms * scale / 1_000.0),
            cluster_size,
        )
    }

    /// foca's configuration for a cluster of `cluster_size` members under this profile.
    /// foca's own suspicion timeout (on the member whose probe failed) is the longest of
    /// [`Self::suspicion_bounds`]; confirmations end a suspicion sooner.
    pub fn config(self, cluster_size: usize) -> foca::Config {
        let size = NonZeroU32::new(u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let (mut config, announce_down_every, announce_every) = match self {
            Profile::Lan => (
                foca::Config::new_lan(size),
                Duration::from_secs(10),
                Duration::from_secs(5),
            ),
            Profile::Wan => (
                foca::Config::new_wan(size),
                Duration::from_secs(60),
                Duration::from_secs(30),
            ),
            Profile::Fast => {
                let mut config = foca::Config::new_lan(size);
                config.probe_period = Duration::from_millis(500);
                config.probe_rtt = Duration::from_millis(200);
                if let Some(gossip) = config.periodic_gossip.as_mut() {
                    gossip.frequency = Duration::from_millis(100);
                }
                (config, Duration::from_secs(5), Duration::from_secs(2))
            }
        };
        // Asking one member for its member list every few seconds (foca's default is every
        // 30 s) makes views converge in seconds after many peers join at once: views that
        // differ mean placements that differ.
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: announce_every,
            num_members: NonZeroUsize::MIN,
        });
        config.max_packet_size = NonZeroUsize::new(MAX_PACKET_BYTES).unwrap_or(NonZeroUsize::MIN);
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: announce_down_every,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        // Down members are forgotten by foca after an hour; `node ls` keeps them as `down`.
        config.remove_down_after = Some(Duration::from_secs(3600));
        config.suspect_to_down_after = self.suspicion_bounds(cluster_size).max;
        config
    }

    /// The longest time from a member's death to every survivor seeing it `down`, in a
    /// quiet cluster of `cluster_size`: up to two probe periods to be probed and found
    /// silent, the suspicion, and a few gossip rounds to spread the verdict.
    pub fn detection_bound(self, cluster_size: usize) -> Duration {
        let config = self.config(cluster_size);
        let gossip = config
            .periodic_gossip
            .map(|g| g.frequency)
            .unwrap_or(config.probe_period);
        config.probe_period * 2 + config.suspect_to_down_after + gossip * 5
    }
}

fn log10_at_least_one(n: usize) -> f64 {
    // Cluster sizes are far below 2^52, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n.log10().max(1.0)
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Fast => "fast",
        })
    }
}

/// A profile name that is not `lan`, `wan` or `fast`.
#[derive(Debug, thiserror::Error)]
#[error("unknown profile {0:?}: use lan, wan or fast")]
pub struct ParseProfileError(String);

impl FromStr for Profile {
    type Err = ParseProfileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lan" => Ok(Profile::Lan),
            "wan" => Ok(Profile::Wan),
            "fast" => Ok(Profile::Fast),
            other => Err(ParseProfileError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_fit_a_quic_datagram_and_scale_suspicion() {
        for profile in [Profile::Lan, Profile::Wan, Profile::Fast] {
            let config = profile.config(5);
            assert_eq!(config.max_packet_size.get(), MAX_PACKET_BYTES);
            assert!(profile.config(1000).suspect_to_down_after > config.suspect_to_down_after);
        }
        assert_eq!(
            Profile::Fast.config(5).probe_period,
            Duration::from_millis(500)
        );
        assert!(Profile::Fast.detection_bound(5) < Profile::Lan.detection_bound(5));
        assert_eq!(Profile::Fast.port_sweep_ms(), 125);
        assert_eq!(Profile::Lan.port_sweep_ms(), 500);
        let announce = |p: Profile| p.config(50).periodic_announce.map(|a| a.frequency);
        assert_eq!(announce(Profile::Lan), Some(Duration::from_secs(5)));
        assert_eq!(announce(Profile::Fast), Some(Duration::from_secs(2)));
        assert_eq!(announce(Profile::Wan), Some(Duration::from_secs(30)));
    }

    #[test]
    fn profile_names_parse() {
        assert_eq!("fast".parse::<Profile>().unwrap(), Profile::Fast);
        let err = "quick".parse::<Profile>().unwrap_err().to_string();
        assert!(err.contains("lan, wan or fast"), "{err}");
    }
}
