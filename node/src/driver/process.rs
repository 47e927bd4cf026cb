//! The `process` driver: each replica is a plain child process in its own process group,
//! with `PORT` set to a free host port. A record per replica in
//! `<data dir>/processes/` (pid, start time, slot, spec version, ports) lets a restarted
//! peer adopt the processes it left running: they live on with the host, not with the peer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use knit_scheduler::{ReplicaState, SlotId};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::output::{self, FOLLOW_POLL_MS, LineSink, Lines, LogLine, LogQuery};
use super::{DriverError, Launch, Replica};

/// The most of a followed log read in one poll.
const FOLLOW_READ_MAX_BYTES: u64 = 256 * 1024;

mod log;
mod user;

pub(crate) use user::RunAs;

/// What is kept on disk about one replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    runtime_id: String,
    pid: u32,
    /// The process's start time in clock ticks since boot (/proc/PID/stat field 22), so a
    /// recycled pid is not taken for the replica.
    start_ticks: u64,
    slot: SlotId,
    spec_version: u64,
    /// The spec's template id; 0 in records written before it was kept (replaced).
    #[serde(default)]
    template: u64,
    host_ports: BTreeMap<u16, u16>,
    started_at_ms: u64,
    /// The signal that asks it to stop (the spec's when it started); SIGTERM when `None`.
    #[serde(default)]
    stop_signal: Option<String>,
    /// Set once this peer saw the process exit.
    exit_code: Option<i32>,
}

/// Runs replicas as processes.
pub(crate) struct ProcessDriver {
    dir: PathBuf,
    /// Who replicas run as; `None` when the driver is off (`--enable-process-driver`):
    /// replicas left from before are still listed and stopped, none is started.
    run_as: Option<RunAs>,
    /// Children this peer spawned: `None` until their waiter task reaps them, then the
    /// exit code.
    exits: Arc<Mutex<BTreeMap<String, Option<i32>>>>,
    /// How big replicas' logs may grow.
    log_bound: log::LogBound,
    /// Where the children's waiters run.
    tasks: crate::tasks::Tasks,
    /// When replicas' logs reached which length, for the times of past lines.
    marks: Arc<Mutex<log::Marks>>,
}

fn failed(e: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(e.to_string())
}

/// The start time (field 22) and state (field 3) of a live process.
fn proc_stat(pid: u32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// How long a port handed to a new replica stays claimed for it: time enough for the
/// replica to bind it, after which the kernel keeps others off it.
const CLAIM_TTL: Duration = Duration::from_secs(60);

/// Where the peers of one host claim the ports they hand out (see [`free_port`]).
fn claims_dir() -> PathBuf {
    std::env::temp_dir().join("knit-ports")
}

/// Claims `port` host-wide for a replica about to start. A claim older than [`CLAIM_TTL`]
/// is stale and taken over. Where claims cannot be written at all (another user's
/// directory, say) the kernel's word that the port is free has to do.
fn claim(dir: &Path, port: u16) -> bool {
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !stale(std::fs::metadata(&path)) || std::fs::remove_file(&path).is_err() {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
    false
}

/// A free TCP port for a new replica. The kernel picks it; the replica binds it only
/// later, when it has started, and in between another replica starting on this host (of
/// this peer, or of another peer on the same host, as in `knit lab`) could be handed the
/// same port. So each port is claimed host-wide first, and one already claimed is passed
/// over.
fn free_port(taken: &BTreeSet<u16>) -> Result<u16, DriverError> {
    let dir = claims_dir();
    let _ = std::fs::create_dir_all(&dir);
    for _ in 0..64 {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").map_err(failed)?;
        let port = listener.local_addr().map_err(failed)?.port();
        drop(listener);
        if !taken.contains(&port) && claim(&dir, port) {
            return Ok(port);
        }
    }
    Err(failed(
        "no free port after 64 tries: the host's ephemeral ports are exhausted or claimed",
    ))
}

/// Whether a claim with this metadata is older than [`CLAIM_TTL`].
fn stale(claim: std::io::Result<std::fs::Metadata>) -> bool {
    claim
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > CLAIM_TTL))
}

/// Removes the host's stale port claims.
fn prune_claims() {
    let Ok(entries) = std::fs::read_dir(claims_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if stale(entry.metadata()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The last line of a replica's output that says something, for the error of a replica
/// that failed. Reads at most the last 4 KiB.
fn last_words(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

fn now_ms() -> u64 {
    crate::clock::now_ms()
}

impl ProcessDriver {
    /// A driver keeping its records under `dir`, starting replicas as `run_as` (none when
    /// `None`).
    pub(crate) fn new(
        dir: &Path,
        run_as: Option<RunAs>,
        tasks: &crate::tasks::Tasks,
    ) -> Result<Self, DriverError> {
        std::fs::create_dir_all(dir).map_err(failed)?;
        prune_claims();
        Ok(Self {
            dir: dir.to_owned(),
            run_as,
            tasks: tasks.clone(),
            exits: Arc::default(),
            log_bound: log::LogBound::default(),
            marks: Arc::default(),
        })
    }

    /// The user and group replicas run as, when the peer switches to them.
    pub(crate) fn run_as_ids(&self) -> Option<(u32, u32)> {
        self.run_as.as_ref().and_then(|r| r.ids)
    }

    /// Whether it starts replicas (`--enable-process-driver`).
    pub(crate) fn enabled(&self) -> bool {
        self.run_as.is_some()
    }

    fn record_path(&self, runtime_id: &str) -> PathBuf {
        self.dir.join(format!("{runtime_id}.json"))
    }

    fn log_path(&self, runtime_id: &str) -> PathBuf {
        self.dir.join(format!("{runtime_id}.log"))
    }

    fn save(&self, record: &Record) -> Result<(), DriverError> {
        let bytes = serde_json::to_vec(record).map_err(failed)?;
        knit_mesh::quic::credentials::write_atomic(
            &self.dir,
            &format!("{}.json", record.runtime_id),
            &bytes,
        )
        .map_err(failed)
    }

    /// Starts one replica.
    pub(crate) async fn start(&self, launch: &Launch) -> Result<Replica, DriverError> {
        let Some(run_as) = &self.run_as else {
            return Err(DriverError::Unavailable(
                "the process driver is off on this host: start its peer with --enable-process-driver".into(),
            ));
        };
        let spec = &launch.spec;
        let mut words = spec.command.iter().chain(spec.args.iter());
        let program = words
            .next()
            .ok_or_else(|| DriverError::Failed("the service has no command to run".into()))?;
        if let Some(signal) = &spec.stop_signal
            && nix_signal(signal).is_none()
        {
            return Err(DriverError::Failed(format!(
                "the process driver cannot send stop signal {signal}: give a named signal such as SIGTERM"
            )));
        }
        let runtime_id = format!("{}-{:08x}", launch.slot, rand::random::<u32>());
        // Ports of this peer's live replicas are bound already, or about to be.
        let mut taken: BTreeSet<u16> = self
            .records()
            .iter()
            .filter(|r| r.exit_code.is_none())
            .flat_map(|r| r.host_ports.values().copied())
            .collect();
        let mut host_ports = BTreeMap::new();
        for port in &spec.ports {
            let host = free_port(&taken)?;
            taken.insert(host);
            host_ports.insert(port.target, host);
        }
        let log = log::open(&self.log_path(&runtime_id)).map_err(failed)?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(words);
        let mut env = run_as.environment(
            &spec.env,
            host_ports.values().next().copied(),
            &spec.name,
            &launch.slot.to_string(),
        );
        if let Some(dir) = &launch.secrets {
            env.insert("KNIT_SECRETS_DIR".into(), dir.display().to_string());
        }
        if let Some(dir) = &launch.configs {
            env.insert("KNIT_CONFIGS_DIR".into(), dir.display().to_string());
        }
        // Every service's address: the name service is the host's, not knit's.
        for (key, vip) in launch.directory.env() {
            env.entry(key).or_insert(vip);
        }
        run_as.apply(&mut cmd, &env);
        cmd.stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| DriverError::Failed(format!("cannot run {program}: {e}")))?;
        let pid = child
            .id()
            .ok_or_else(|| failed("the process exited at once"))?;
        let (start_ticks, _) = proc_stat(pid).unwrap_or((0, 'R'));
        let record = Record {
            runtime_id: runtime_id.clone(),
            pid,
            start_ticks,
            slot: launch.slot.clone(),
            spec_version: spec.version,
            template: spec.template_id(),
            host_ports,
            started_at_ms: now_ms(),
            stop_signal: spec.stop_signal.clone(),
            exit_code: None,
        };
        self.save(&record)?;
        let exits = self.exits.clone();
        exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(runtime_id.clone(), None);
        let id = runtime_id.clone();
        let shutdown = self.tasks.shutdown().clone();
        // The replica outlives a stopping peer (the next one adopts it from its record):
        // its waiter ends with the peer and leaves it running.
        self.tasks.spawn("process waiter", async move {
            let waited = tokio::select! {
                waited = child.wait() => waited,
                () = shutdown.cancelled() => return,
            };
            let code = match waited {
                Ok(status) => status.code().unwrap_or(128 + status_signal(&status)),
                Err(_) => -1,
            };
            exits
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, Some(code));
        });
        Ok(self.replica(&record))
    }

    fn replica(&self, record: &Record) -> Replica {
        let reaped = self
            .exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&record.runtime_id)
            .copied();
        let exit_code = record.exit_code.or(reaped.flatten());
        // A child of this peer that its waiter has not reaped yet still runs, or has just
        // ended and gets its exit code in a moment: not "exited while the peer was down".
        let unreaped = reaped == Some(None);
        let alive = exit_code.is_none()
            && (unreaped
                || proc_stat(record.pid).is_some_and(|(ticks, state)| {
                    state != 'Z' && (record.start_ticks == 0 || ticks == record.start_ticks)
                }));
        let (state, error) = match (alive, exit_code) {
            (true, _) => (ReplicaState::Running, None),
            (false, Some(0)) => (ReplicaState::Exited, None),
            (false, Some(code)) => {
                let said = last_words(&self.log_path(&record.runtime_id));
                let error = match said {
                    Some(line) => format!("exit code {code}: {line}"),
                    None => format!("exit code {code}"),
                };
                (ReplicaState::Failed, Some(error))
            }
            (false, None) => (
                ReplicaState::Failed,
                Some("exited while the peer was down (exit code unknown)".into()),
            ),
        };
        Replica {
            runtime_id: record.runtime_id.clone(),
            slot: record.slot.clone(),
            spec_version: record.spec_version,
            template: record.template,
            state,
            exit_code: exit_code.map(i64::from),
            host_ports: record.host_ports.clone(),
            started_at_ms: record.started_at_ms,
            driver_health: None,
            error,
        }
    }

    fn records(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records: Vec<Record> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        records.sort_by(|a, b| a.runtime_id.cmp(&b.runtime_id));
        records
    }

    /// Every replica this driver has a record of, running or not. Rotates the logs of
    /// those that run (see [`log`]).
    pub(crate) async fn list(&self) -> Result<Vec<Replica>, DriverError> {
        let replicas: Vec<Replica> = self.records().iter().map(|r| self.replica(r)).collect();
        let logs: Vec<PathBuf> = replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .map(|r| self.log_path(&r.runtime_id))
            .collect();
        let (bound, marks) = (self.log_bound, self.marks.clone());
        let rotated = tokio::task::spawn_blocking(move || {
            for path in logs {
                let rotated = log::rotate(&path, bound).unwrap_or_else(|e| {
                    tracing::warn!(log = %path.display(), error = %e, "cannot rotate a replica's log");
                    false
                });
                if let Ok(meta) = std::fs::metadata(&path) {
                    let mut marks = marks.lock().unwrap_or_else(PoisonError::into_inner);
                    marks.note(&path, meta.len(), rotated, crate::clock::now_ms());
                }
            }
        });
        let _ = rotated.await;
        Ok(replicas)
    }

    /// The CPU time the replica's process has used so far, in nanoseconds.
    pub(crate) async fn cpu_time_ns(&self, runtime_id: &str) -> Option<u64> {
        let record = self
            .records()
            .into_iter()
            .find(|r| r.runtime_id == runtime_id)?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", record.pid)).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime, fields 14 and 15, in clock ticks of 10 ms (USER_HZ is 100).
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks * 10_000_000)
    }

    /// The replica's stop signal (SIGTERM by default) to its process group, SIGKILL after
    /// `grace`; forgets it.
    pub(crate) async fn stop(&self, runtime_id: &str, grace: Duration) -> Result<(), DriverError> {
        let Some(record) = self
            .records()
            .into_iter()
            .find(|r| r.runtime_id == runtime_id)
        else {
            return Ok(());
        };
        if self.replica(&record).state == ReplicaState::Running {
            let group = Pid::from_raw(i32::try_from(record.pid).map_err(failed)?);
            let signal = record
                .stop_signal
                .as_deref()
                .and_then(nix_signal)
                .unwrap_or(Signal::SIGTERM);
            let _ = killpg(group, signal);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline
                && self.replica(&record).state == ReplicaState::Running
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if self.replica(&record).state == ReplicaState::Running {
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(self.record_path(runtime_id));
        log::remove(&self.log_path(runtime_id), self.log_bound);
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(&self.log_path(runtime_id));
        self.exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(runtime_id);
        Ok(())
    }

    /// Sends the replica's output that `query` asks for to `sink`: its past lines (stamped
    /// with their file's last change), then, to follow, what it writes next (stamped when
    /// read, at most [`FOLLOW_POLL_MS`] late) until `sink` closes or the log is removed.
    /// Reads at most [`FOLLOW_READ_MAX_BYTES`] a poll: a chatty replica is followed at the
    /// reader's pace, and what rotation cuts meanwhile is skipped.
    pub(crate) async fn stream_logs(
        &self,
        runtime_id: &str,
        query: LogQuery,
        sink: &LineSink,
    ) -> Result<(), DriverError> {
        let path = self.log_path(runtime_id);
        let (bound, at) = (self.log_bound, path.clone());
        let (mut files, mut offset) = tokio::task::spawn_blocking(move || log::history(&at, bound))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        if let Some(file) = files.last_mut().filter(|_| query.follow) {
            // An unfinished last line is left to the follow, which reads it whole.
            let whole = file
                .bytes
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            offset -= (file.bytes.len() - whole) as u64;
            file.bytes.truncate(whole);
        }
        let mut past = self.past_lines(files, &path);
        past.retain(|l| query.since_ms.is_none_or(|since| l.time_ms >= since));
        for line in output::last(past, query.tail) {
            if sink.send(line).await.is_err() {
                return Ok(());
            }
        }
        if !query.follow {
            return Ok(());
        }
        let mut lines = Lines::default();
        loop {
            tokio::select! {
                () = sink.closed() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)) => {}
            }
            let at = path.clone();
            let read = tokio::task::spawn_blocking(move || {
                log::read_from(&at, offset, FOLLOW_READ_MAX_BYTES)
            })
            .await
            .map_err(failed)?
            .map_err(failed)?;
            let Some((bytes, next)) = read else {
                return Ok(());
            };
            offset = next;
            let time_ms = crate::clock::now_ms();
            for text in lines.push(&bytes) {
                if sink.send(LogLine { time_ms, text }).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// The lines of a replica's past output, each with its time: from the marks for the
    /// live file (the last), else the file's last change.
    fn past_lines(&self, files: Vec<log::Written>, path: &Path) -> Vec<LogLine> {
        let live = files.len().saturating_sub(1);
        let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut past = Vec::new();
        for (i, file) in files.into_iter().enumerate() {
            let time = |end: u64| {
                (i == live)
                    .then(|| marks.time_of(path, end))
                    .flatten()
                    .unwrap_or(file.modified_ms)
            };
            let mut end = file.start;
            for piece in file.bytes.split_inclusive(|&b| b == b'\n') {
                end += piece.len() as u64;
                let mut lines = Lines::default();
                for text in lines.push(piece).into_iter().chain(lines.finish()) {
                    past.push(LogLine {
                        time_ms: time(end),
                        text,
                    });
                }
            }
        }
        past
    }

    /// The last `tail` lines of the replica's output.
    #[cfg(test)]
    pub(crate) async fn logs(&self, runtime_id: &str, tail: usize) -> Result<String, DriverError> {
        let text = log::read_all(&self.log_path(runtime_id), self.log_bound).map_err(failed)?;
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(tail)..].join("\n"))
    }

    /// Runs a health command on the host, with the replica's `PORT`; true on exit 0.
    pub(crate) async fn exec_probe(
        &self,
        runtime_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<bool, DriverError> {
        let record = self
            .records()
            .into_iter()
            .find(|r| r.runtime_id == runtime_id)
            .ok_or_else(|| failed("no such replica"))?;
        let Some((program, args)) = command.split_first() else {
            return Ok(true);
        };
        let Some(run_as) = &self.run_as else {
            return Err(DriverError::Unavailable(
                "the process driver is off on this host".into(),
            ));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let env = run_as.environment(
            &BTreeMap::new(),
            record.host_ports.values().next().copied(),
            &record.slot.service,
            &record.slot.to_string(),
        );
        run_as.apply(&mut cmd, &env);
        match tokio::time::timeout(timeout, cmd.status()).await {
            Ok(Ok(status)) => Ok(status.success()),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Ok(false),
        }
    }
}

/// A stop signal the process driver can send (real-time signals it cannot).
fn nix_signal(signal: &str) -> Option<Signal> {
    knit_scheduler::spec::signal_number(signal).and_then(|n| Signal::try_from(n).ok())
}

fn status_signal(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

#[cfg(test)]
mod tests;
