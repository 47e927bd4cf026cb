//! Following a service until it converges, as `docker service create/update` does: the
//! overall count, then one line per slot with a bar and its state (`pending`, `assigned`,
//! `starting`, `running`, `healthy`), redrawn in place on a terminal and written as plain
//! lines (one per change) when the output is a file or a pipe; then `verify: Service
//! converged`. It reads the replicas again each time the peer's event stream says the
//! cluster changed (`changes.rs`), or after a quiet spell.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use knit_scheduler::ServiceSpec;

use super::Client;
use super::changes::Changes;
use crate::wire::TaskRow;

/// How long a command that follows a rollout waits for the replicas.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// A rollout that makes no progress for this long is reported as stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the replicas are read again when the peer's event stream cannot be had.
const POLL: Duration = Duration::from_millis(300);
/// How long to wait for a change on the event stream before reading again anyway (a
/// stalled rollout, a timeout to notice).
const QUIET: Duration = Duration::from_secs(2);
/// The steps of a slot's bar: pending, assigned, starting, running, serving.
const STEPS: u64 = 5;

/// Where a slot is on its way, and the word for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stage {
    pub(super) state: String,
    pub(super) step: u64,
}

/// The stage of a wanted slot's replica. A replica of an older spec, or one whose health
/// check has not passed yet, is one step short of done.
pub(super) fn stage(row: &TaskRow) -> Stage {
    let serving = row.current && matches!(row.health.as_str(), "none" | "healthy");
    let (state, step) = match row.state.as_str() {
        "pending" => ("pending", 1),
        "assigned" => ("assigned", 2),
        "starting" => ("starting", 3),
        "running" if serving && row.health == "healthy" => ("healthy", STEPS),
        "running" if serving => ("running", STEPS),
        "running" if !row.current => ("updating", 3),
        "running" => ("running", 4),
        other => (other, 0),
    };
    Stage {
        state: state.to_owned(),
        step,
    }
}

/// Orders slots as people count them: `web.2` before `web.10`.
fn slot_order(slot: &str) -> (String, u64, String) {
    match slot.rsplit_once('.') {
        Some((service, n)) => match n.parse() {
            Ok(n) => (service.to_owned(), n, String::new()),
            Err(_) => (service.to_owned(), u64::MAX, n.to_owned()),
        },
        None => (slot.to_owned(), 0, String::new()),
    }
}

/// Waits until every slot of the service `written` runs what it asks for, showing the
/// progress. Scaling meanwhile (by hand or by policy) is no reason to stop waiting.
pub(super) async fn converge(client: &Client, written: &ServiceSpec) -> Result<()> {
    let name = &written.name;
    let template = written.template_id();
    let started = Instant::now();
    let mut progressed = Instant::now();
    let mut display = Display::new(name, written.version, std::io::stdout().is_terminal());
    // Subscribed before the first read, so that no change between it and the stream is
    // missed.
    let mut changes = match Changes::open(client).await {
        Ok(changes) => Some(changes),
        Err(e) => {
            tracing::debug!(error = %e, "no event stream: following by period");
            None
        }
    };
    loop {
        let spec: ServiceSpec = client.get(&format!("/v1/services/{name}")).await?;
        if spec.template_id() != template {
            display.abandon();
            bail!(
                "{name} changed again while this update rolled out (now version {}); if the update failed, it was rolled back: see `knit service ps {name} --history`",
                spec.version
            );
        }
        let tasks: Vec<TaskRow> = client.get(&format!("/v1/services/{name}/ps")).await?;
        let mut wanted: Vec<&TaskRow> = tasks
            .iter()
            .filter(|t| t.desired_state == "running")
            .collect();
        wanted.sort_by_key(|t| slot_order(&t.slot));
        let stages: Vec<(String, Stage)> =
            wanted.iter().map(|t| (t.slot.clone(), stage(t))).collect();
        if display.show(&stages) {
            progressed = Instant::now();
        }
        let done = stages.iter().filter(|(_, s)| s.step == STEPS).count();
        if progressed.elapsed() > STALL_TIMEOUT {
            display.abandon();
            bail!(
                "{name} made no progress for {STALL_TIMEOUT:?}: a failed update pauses; see `knit service ps {name} --history`, then fix and `knit service update`, or `knit service rollback {name}`"
            );
        }
        // Replicas on a host that is down (`lost`) stop with it: nothing to wait for.
        let leaving = tasks
            .iter()
            .any(|t| t.desired_state != "running" && t.state != "lost");
        if done == stages.len() && !leaving {
            display.finish();
            return Ok(());
        }
        if started.elapsed() > CONVERGE_TIMEOUT {
            display.abandon();
            bail!(
                "{name} did not converge within {CONVERGE_TIMEOUT:?}; see `knit service ps {name}`"
            );
        }
        match changes.as_mut() {
            Some(changes) => {
                changes.wait(QUIET).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// What the user sees while a service converges.
enum Display {
    /// A terminal: bars redrawn in place.
    Live {
        bars: MultiProgress,
        overall: ProgressBar,
        slots: BTreeMap<String, ProgressBar>,
        style: ProgressStyle,
        last: Vec<(String, Stage)>,
    },
    /// A file or a pipe: a line per change.
    Plain {
        name: String,
        version: u64,
        last: BTreeMap<String, Stage>,
        overall: String,
    },
}

impl Display {
    fn new(name: &str, version: u64, terminal: bool) -> Self {
        if !terminal {
            return Self::Plain {
                name: name.to_owned(),
                version,
                last: BTreeMap::new(),
                overall: String::new(),
            };
        }
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = bars.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("overall progress: {pos} out of {len} tasks")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let style = ProgressStyle::with_template("{prefix:>10}: {msg:<9} [{bar:50}]")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        Self::Live {
            bars,
            overall,
            slots: BTreeMap::new(),
            style,
            last: Vec::new(),
        }
    }

    /// Shows the slots' stages; returns whether anything changed since the last call.
    fn show(&mut self, stages: &[(String, Stage)]) -> bool {
        let done = stages.iter().filter(|(_, s)| s.step == STEPS).count();
        match self {
            Self::Live {
                bars,
                overall,
                slots,
                style,
                last,
            } => {
                if last.as_slice() == stages {
                    return false;
                }
                overall.set_length(stages.len() as u64);
                overall.set_position(done as u64);
                slots.retain(|slot, bar| {
                    let keep = stages.iter().any(|(s, _)| s == slot);
                    if !keep {
                        bars.remove(bar);
                    }
                    keep
                });
                for (slot, stage) in stages {
                    let bar = slots.entry(slot.clone()).or_insert_with(|| {
                        let bar = bars.add(ProgressBar::new(STEPS).with_style(style.clone()));
                        bar.set_prefix(slot.clone());
                        bar
                    });
                    bar.set_position(stage.step);
                    bar.set_message(stage.state.clone());
                }
                *last = stages.to_vec();
                true
            }
            Self::Plain {
                name,
                version,
                last,
                overall,
            } => {
                let mut changed = false;
                for (slot, stage) in stages {
                    if last.get(slot) != Some(stage) {
                        println!("{slot}: {}", stage.state);
                        last.insert(slot.clone(), stage.clone());
                        changed = true;
                    }
                }
                last.retain(|slot, _| stages.iter().any(|(s, _)| s == slot));
                let line = format!(
                    "{name}: {done}/{} running at version {version}",
                    stages.len()
                );
                if line != *overall {
                    println!("{line}");
                    *overall = line;
                    changed = true;
                }
                changed
            }
        }
    }

    fn finish(&self) {
        if let Self::Live { overall, slots, .. } = self {
            slots.values().for_each(ProgressBar::finish);
            overall.finish();
        }
        println!("verify: Service converged");
    }

    /// Leaves the bars as they are, for the error that follows.
    fn abandon(&self) {
        if let Self::Live { overall, slots, .. } = self {
            slots.values().for_each(ProgressBar::abandon);
            overall.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(slot: &str, state: &str, health: &str, current: bool) -> TaskRow {
        TaskRow {
            slot: slot.into(),
            id: String::new(),
            node: "n1".into(),
            node_id: "n1".into(),
            desired_state: "running".into(),
            state: state.into(),
            health: health.into(),
            spec_version: 1,
            current,
            host_port: None,
            error: None,
            cpu_millis: None,
        }
    }

    #[test]
    fn a_slot_is_done_when_it_runs_the_current_spec_and_is_not_unhealthy() {
        assert_eq!(stage(&row("w.1", "pending", "none", false)).step, 1);
        assert_eq!(stage(&row("w.1", "assigned", "none", false)).step, 2);
        assert_eq!(stage(&row("w.1", "starting", "none", true)).step, 3);
        assert_eq!(
            stage(&row("w.1", "running", "none", false)).state,
            "updating"
        );
        assert_eq!(stage(&row("w.1", "running", "starting", true)).step, 4);
        let healthy = stage(&row("w.1", "running", "healthy", true));
        assert_eq!((healthy.state.as_str(), healthy.step), ("healthy", STEPS));
        let plain = stage(&row("w.1", "running", "none", true));
        assert_eq!((plain.state.as_str(), plain.step), ("running", STEPS));
        assert_eq!(stage(&row("w.1", "failed", "none", true)).step, 0);
    }

    #[test]
    fn slots_are_ordered_as_counted() {
        let mut slots = vec!["web.10", "web.2", "api.1", "web.1"];
        slots.sort_by_key(|s| slot_order(s));
        assert_eq!(slots, ["api.1", "web.1", "web.2", "web.10"]);
    }

    #[test]
    fn plain_output_says_only_what_changed() {
        let mut display = Display::new("web", 2, false);
        let one = vec![(
            "web.1".to_owned(),
            stage(&row("web.1", "starting", "none", true)),
        )];
        assert!(display.show(&one));
        assert!(!display.show(&one), "nothing new");
        let two = vec![(
            "web.1".to_owned(),
            stage(&row("web.1", "running", "none", true)),
        )];
        assert!(display.show(&two));
    }
}
