//! Docker Swarm's heal time, for the side-by-side table: `swarm-heal.sh` (a script kept
//! outside this repository, given with `--swarm PATH`) runs as a child process with the
//! same node count, replicas, trials and failures as knit's part, and its per-trial CSV is
//! read back. The script builds its own swarm (one dockerd per network namespace on a
//! bridge of its own), removes it on exit (its trap), and is bounded here in time: past
//! the limit it gets SIGTERM (so that its trap cleans up), then SIGKILL, then a run of
//! its `--clean`.
//!
//! What it counts (read from the script): a trial fails one node that holds replicas (a
//! worker other than the Raft leader, rotating), then polls the manager every 100 ms until
//! the service has `replicas` tasks whose desired and current state are both `Running`
//! on other nodes (`docker service ps`): that is `heal_s`. Only then does it GET `/` of
//! every such replica over HTTP (`http_ok`); the service has no health check.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::scenario::Failure;

/// The longest the script may take to build its lab and form the swarm.
const SETUP_LIMIT: Duration = Duration::from_secs(600);
/// The longest one trial may take: a healthy swarm, the service up, the heal (at most
/// [`HEAL_LIMIT_S`]), the node back `Ready` and the service removed.
const TRIAL_LIMIT: Duration = Duration::from_secs(300);
/// The script's own limit on one heal, in seconds: knit's (`scenario::HEAL_LIMIT`).
const HEAL_LIMIT_S: u64 = 60;
/// How long the script may take to clean up after SIGTERM before it is killed.
const CLEANUP_LIMIT: Duration = Duration::from_secs(180);
/// How long the copies of the script's output may go on after it exits.
const FORWARD_LIMIT: Duration = Duration::from_secs(5);
/// Lines of the script's output kept to explain a failure.
const TAIL_LINES: usize = 15;
/// Commands the script needs on `PATH` (it checks more, and says so).
const NEEDED_COMMANDS: [&str; 7] = [
    "docker",
    "dockerd",
    "containerd",
    "runc",
    "ip",
    "nsenter",
    "unshare",
];

/// One Swarm configuration to measure.
#[derive(Debug, Clone)]
pub(crate) struct SwarmSetup {
    /// `swarm-heal.sh`.
    pub(crate) script: PathBuf,
    /// knit's profile this configuration stands beside.
    pub(crate) profile: String,
    /// Swarm nodes: as many as knit's peers.
    pub(crate) nodes: usize,
    pub(crate) replicas: usize,
    /// Trials per failure.
    pub(crate) trials: usize,
    pub(crate) failures: Vec<Failure>,
}

/// One trial as the script's CSV gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SwarmTrial {
    pub(crate) failure: Failure,
    /// `node3/worker`.
    pub(crate) victim: String,
    /// Replicas the victim ran.
    pub(crate) lost: usize,
    /// Until the manager listed the node `Down`, ms; `None`: not within the trial.
    pub(crate) detect_ms: Option<u64>,
    /// Until every replica ran off the victim, ms; `None`: not within the script's limit.
    pub(crate) heal_ms: Option<u64>,
    /// Replicas that answered HTTP right after the heal.
    pub(crate) http_ok: usize,
}

/// What one Swarm configuration measured.
#[derive(Debug, Default)]
pub(crate) struct SwarmFigures {
    /// Swarm's settings, as the table shows them.
    pub(crate) settings: String,
    pub(crate) trials: Vec<SwarmTrial>,
    /// Why it did not run, or stopped early.
    pub(crate) aborted: Option<String>,
}

impl SwarmFigures {
    /// The trials of `failure`.
    pub(crate) fn of(&self, failure: Failure) -> impl Iterator<Item = &SwarmTrial> {
        self.trials.iter().filter(move |t| t.failure == failure)
    }
}

/// Swarm's settings that stand beside knit's `profile`: `fast` (probe every 500 ms) beside
/// a 1 s dispatcher heartbeat and no restart delay, `lan` beside Swarm's defaults (5 s,
/// 5 s); `wan` has no counterpart.
pub(crate) fn settings_for(profile: &str) -> Option<(&'static [&'static str], &'static str)> {
    match profile {
        "fast" => Some((
            &["--heartbeat", "1s", "--restart-delay", "0s"],
            "heartbeat 1s, restart delay 0s",
        )),
        "lan" => Some((&[], "defaults: heartbeat 5s, restart delay 5s")),
        _ => None,
    }
}

/// Why this host cannot run the script, if it cannot: not root, the script missing, a
/// command missing, or no busybox (the script takes `$BUSYBOX`, else `busybox` on `PATH`).
pub(crate) fn missing_needs(script: &Path) -> Option<String> {
    if !script.is_file() {
        return Some(format!("{} is not a file", script.display()));
    }
    if !knit_tests::is_root() {
        return Some("the Swarm lab needs root (network namespaces, dockerd)".to_owned());
    }
    let missing: Vec<&str> = NEEDED_COMMANDS
        .iter()
        .copied()
        .filter(|c| on_path(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing command(s) for the Swarm lab: {}",
            missing.join(", ")
        ));
    }
    let busybox = std::env::var_os("BUSYBOX")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| on_path("busybox"));
    if busybox.is_none() {
        return Some(
            "no busybox for the Swarm lab's image: apt-get install busybox-static, or set BUSYBOX=/path/to/static/busybox"
                .to_owned(),
        );
    }
    None
}

fn on_path(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// Runs the script for `setup` and reads its figures; never fails: what went wrong is in
/// `aborted`.
pub(crate) fn run(setup: &SwarmSetup) -> SwarmFigures {
    let Some((args, settings)) = settings_for(&setup.profile) else {
        return SwarmFigures {
            aborted: Some(format!(
                "no Swarm counterpart of the {} profile",
                setup.profile
            )),
            ..SwarmFigures::default()
        };
    };
    let mut figures = SwarmFigures {
        settings: settings.to_owned(),
        ..SwarmFigures::default()
    };
    let pid = std::process::id();
    let lab = Lab {
        dir: std::env::temp_dir().join(format!("knit-swarmlab-{pid}")),
        prefix: format!("ksw{}", pid % 1_000_000),
        csv: std::env::temp_dir().join(format!("knit-swarm-{pid}-{}.csv", setup.profile)),
    };
    let _ = std::fs::remove_file(&lab.csv);
    let result = lab.run_script(setup, args);
    match std::fs::read_to_string(&lab.csv) {
        Ok(text) => match parse_csv(&text) {
            Ok(trials) => figures.trials = trials,
            Err(e) => figures.aborted = Some(format!("cannot read the script's CSV: {e:#}")),
        },
        Err(_) if result.is_err() => {}
        Err(e) => figures.aborted = Some(format!("the script wrote no CSV: {e}")),
    }
    if let Err(e) = result {
        eprintln!("  swarm: {e:#}");
        figures.aborted = Some(format!("{e:#}"));
    }
    let _ = std::fs::remove_file(&lab.csv);
    figures
}

/// Where one run of the script keeps its lab, named by this process.
struct Lab {
    /// `--lab`: the script's working directory (it must not exist).
    dir: PathBuf,
    /// `--prefix`: its network namespaces and cgroup.
    prefix: String,
    /// `--csv`.
    csv: PathBuf,
}

impl Lab {
    /// Runs the script to its end, within its time limit; its output goes to our stderr.
    fn run_script(&self, setup: &SwarmSetup, settings: &[&str]) -> Result<()> {
        let failure = match setup.failures.as_slice() {
            [one] => one.name(),
            _ => "both",
        };
        let numbers = [
            ("--nodes", setup.nodes.to_string()),
            ("--replicas", setup.replicas.to_string()),
            ("--trials", setup.trials.to_string()),
            ("--timeout", HEAL_LIMIT_S.to_string()),
        ];
        let mut cmd = Command::new("bash");
        cmd.arg(&setup.script);
        for (flag, value) in &numbers {
            cmd.args([flag, value.as_str()]);
        }
        cmd.args(["--failure", failure]).args(settings);
        cmd.arg("--csv").arg(&self.csv);
        cmd.arg("--lab").arg(&self.dir);
        cmd.args(["--prefix", &self.prefix]);
        let trials = u32::try_from(setup.trials * setup.failures.len()).unwrap_or(u32::MAX);
        let limit = SETUP_LIMIT + TRIAL_LIMIT * trials;
        eprintln!(
            "  swarm: {} nodes, {} replicas, {} trial(s) of {failure}, {}; limit {} s",
            setup.nodes,
            setup.replicas,
            setup.trials,
            settings_for(&setup.profile).map_or("", |(_, s)| s),
            limit.as_secs()
        );
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run bash {}", setup.script.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let forwarders = [
            child
                .stdout
                .take()
                .map(|out| forward(out, Arc::clone(&tail))),
            child
                .stderr
                .take()
                .map(|err| forward(err, Arc::clone(&tail))),
        ];
        let outcome = wait_within(&mut child, limit);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                self.stop(&mut child, &setup.script);
                Err(e)
            }
        };
        // A process the script left behind may still hold its output open: wait a little,
        // not forever, for the copies to end.
        let started = Instant::now();
        for forwarder in forwarders.into_iter().flatten() {
            while !forwarder.is_finished() && started.elapsed() < FORWARD_LIMIT {
                std::thread::sleep(Duration::from_millis(50));
            }
            if forwarder.is_finished() {
                let _ = forwarder.join();
            }
        }
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => {
                let tail = tail.lock().map(|t| t.clone()).unwrap_or_default();
                let tail: Vec<String> = tail.into_iter().collect();
                bail!("{e:#}; its last lines:\n{}", tail.join("\n"))
            }
        }
    }

    /// Stops the script after its limit: SIGTERM (its trap removes the lab), SIGKILL if it
    /// does not end, and then its `--clean` for whatever it left.
    fn stop(&self, child: &mut Child, script: &Path) {
        eprintln!("  swarm: stopping the script (SIGTERM to {})", child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if wait_within(child, CLEANUP_LIMIT).is_ok() {
            return;
        }
        let _ = child.kill();
        let _ = child.wait();
        let mut clean = Command::new("bash");
        clean
            .arg(script)
            .arg("--clean")
            .arg("--lab")
            .arg(&self.dir)
            .args(["--prefix", &self.prefix]);
        if let Err(e) = knit_tests::run_bounded(&mut clean, CLEANUP_LIMIT) {
            eprintln!("  swarm: its --clean failed too: {e:#}");
        }
    }
}

/// Waits for `child` to exit within `limit`: `Ok(Ok(()))` on success, `Ok(Err)` on a
/// failed exit, `Err` past the limit.
fn wait_within(child: &mut Child, limit: Duration) -> Result<Result<()>> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(if status.success() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("swarm-heal.sh failed ({status})"))
            });
        }
        if started.elapsed() > limit {
            bail!("swarm-heal.sh took longer than {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Copies `from` line by line to our stderr (indented), keeping the last lines in `tail`.
fn forward(
    from: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            eprintln!("  swarm | {line}");
            if let Ok(mut tail) = tail.lock() {
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    })
}

/// The trials in the script's CSV (`variant,trial,victim_role,lost,detect_s,replaced_s,
/// heal_s,…,http_ok,…`; `NA` where a figure was not reached), columns found by name.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<SwarmTrial>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("no column {name} in {header:?}"))
    };
    let [variant, victim, lost, detect, heal, http] = [
        "variant",
        "victim_role",
        "lost",
        "detect_s",
        "heal_s",
        "http_ok",
    ]
    .map(column);
    let (variant, victim, lost, detect, heal, http) =
        (variant?, victim?, lost?, detect?, heal?, http?);
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .copied()
                    .with_context(|| format!("short line {line:?}"))
            };
            let failure = Failure::from_name(field(variant)?)
                .with_context(|| format!("unknown failure in {line:?}"))?;
            Ok(SwarmTrial {
                failure,
                victim: field(victim)?.to_owned(),
                lost: field(lost)?.parse().context("lost")?,
                detect_ms: seconds_to_ms(field(detect)?)?,
                heal_ms: seconds_to_ms(field(heal)?)?,
                http_ok: field(http)?.parse().context("http_ok")?,
            })
        })
        .collect()
}

/// `"2.35"` seconds as 2350 ms; `"NA"` as `None`.
fn seconds_to_ms(text: &str) -> Result<Option<u64>> {
    if text == "NA" {
        return Ok(None);
    }
    let secs: f64 = text
        .parse()
        .with_context(|| format!("{text:?} is not seconds"))?;
    if !(0.0..1e9).contains(&secs) {
        bail!("{text:?} is out of range");
    }
    // Checked to lie in 0..1e9 s just above: the product fits a u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Some((secs * 1000.0).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::{Failure, parse_csv, settings_for};

    #[test]
    fn the_scripts_csv_is_read_by_column_name() {
        let csv = "variant,trial,victim_role,lost,detect_s,replaced_s,heal_s,polls,poll_ms,http_ok,nodes,managers,replicas,heartbeat,restart_delay
kill,1,node2/worker,2,5.31,5.40,6.02,40,150,10,5,1,10,default,default
netcut,1,node3/worker,2,NA,NA,NA,400,150,8,5,1,10,default,default
";
        let trials = parse_csv(csv).unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].failure, Failure::Kill);
        assert_eq!(trials[0].victim, "node2/worker");
        assert_eq!(trials[0].detect_ms, Some(5310));
        assert_eq!(trials[0].heal_ms, Some(6020));
        assert_eq!(trials[0].http_ok, 10);
        assert_eq!(trials[1].failure, Failure::Netcut);
        assert_eq!(trials[1].heal_ms, None);
        assert_eq!(trials[1].http_ok, 8);
    }

    #[test]
    fn a_csv_without_a_needed_column_or_with_a_bad_figure_is_an_error() {
        assert!(parse_csv("variant,trial\nkill,1\n").is_err());
        assert!(parse_csv("").is_err());
        let bad = "variant,victim_role,lost,detect_s,heal_s,http_ok\nkill,n2,2,x,1.0,2\n";
        assert!(parse_csv(bad).is_err());
        let header_only = "variant,victim_role,lost,detect_s,heal_s,http_ok\n";
        assert_eq!(parse_csv(header_only).unwrap(), Vec::new());
    }

    #[test]
    fn fast_and_lan_have_swarm_counterparts_wan_has_none() {
        assert!(settings_for("fast").unwrap().0.contains(&"--heartbeat"));
        assert!(settings_for("lan").unwrap().0.is_empty());
        assert!(settings_for("wan").is_none());
    }
}
