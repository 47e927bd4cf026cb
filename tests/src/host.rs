//! The harness's dealings with the host: processes and containers left by peers, commands
//! run with a time limit, the release build, waits, and clocks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

use crate::use_knit_bin;

/// The process groups of the replicas the `process` driver of the peer with `data_dir`
/// started (from its records).
pub fn replica_pids_in(data_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("processes")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}

/// Whether process `pid` runs (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.get(s.rfind(')')? + 2..)?.chars().next())
        .is_some_and(|state| state != 'Z')
}

/// Whether the tests run as root (switching users, mounting, iptables).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Clears the `KNIT_*` settings of the test's own environment from `cmd`, so that only
/// the arguments the harness gives count.
pub fn clear_knit_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("KNIT_") && key != "KNIT_REQUIRE_DOCKER" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Force-removes the Docker containers with this label filter (`key=value`), if Docker runs.
pub fn remove_containers(label: &str) {
    let Ok(out) = run_bounded(
        Command::new("docker").args(["ps", "-aq", "--filter", &format!("label={label}")]),
        Duration::from_secs(20),
    ) else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = run_bounded(
            Command::new("docker").args(["rm", "-f"]).args(&ids),
            Duration::from_secs(60),
        );
    }
}

/// Runs a command with a time limit; kills it past the limit. Its output is read while it
/// runs: a command that writes more than a pipe holds (`node ls` of 150 members) would
/// otherwise wait for a reader until it is killed.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "command timed out after {limit:?}: {}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Reads a child's pipe to its end on a thread of its own.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

fn collect(reader: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    reader.join().unwrap_or_default()
}

/// For benchmark programs: builds the release `knit` (into `$CARGO_TARGET_DIR`, else the
/// workspace's `target`) and makes [`knit_bin`] return it, unless `$KNIT_BIN` names a
/// binary already. Returns the binary in use.
pub fn use_release_knit() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("KNIT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no workspace above tests/")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    eprintln!("building the release knit…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-q", "-p", "knit", "--bin", "knit"])
        .current_dir(workspace)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release -p knit failed ({status})");
    }
    let bin = target.join("release").join("knit");
    if !use_knit_bin(bin.clone()) {
        bail!("the harness already uses another knit binary");
    }
    Ok(bin)
}

/// What `--format json` prints, one object per line as Docker prints them, as one JSON
/// array (an array printed whole, as older peers did, is taken as it is).
pub fn json_rows(text: &str) -> Result<serde_json::Value> {
    let values: Vec<serde_json::Value> = serde_json::Deserializer::from_str(text)
        .into_iter()
        .collect::<Result<_, _>>()?;
    Ok(match <[serde_json::Value; 1]>::try_from(values) {
        Ok([array @ serde_json::Value::Array(_)]) => array,
        Ok([one]) => serde_json::Value::Array(vec![one]),
        Err(values) => serde_json::Value::Array(values),
    })
}

/// Polls `probe` every 100 ms until it returns `Some`, or fails after `limit`.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<(T, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Ok((value, started.elapsed()));
        }
        if started.elapsed() > limit {
            return Err(anyhow!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Milliseconds since the Unix epoch: the clock the peers' `since_ms` stamps are on.
pub fn wall_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
