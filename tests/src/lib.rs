//! knit's end-to-end harness: starts real `knit` processes on loopback addresses, kills
//! them with real signals, and reads what they say through the real CLI.
//!
//! Every peer gets its own loopback address (`127.A.B.C`, with `A` derived from the test
//! process id so that concurrent runs cannot collide) and its own data dir under a
//! temporary folder. A [`Cluster`] kills its processes and removes its folders when dropped,
//! also when a test panics, and then prints the tail of each peer's log.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub mod browser;
pub mod cost;
pub mod heal;
mod host;
mod http;
pub mod images;
pub mod netns;
pub mod options;
mod partition;
pub mod proxy;
pub mod report;

pub use host::*;
pub use http::*;
pub use partition::Partition;
pub use report::percentile;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Tests that start clusters hold this, so that they run one at a time: on two cores,
/// parallel clusters starve each other into false "down"s.
pub fn cluster_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The binary [`knit_bin`] returns, fixed on first use.
static KNIT_BIN: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`knit_bin`] return `path` (a harness that built its own `knit`, e.g. a release
/// build), unless [`knit_bin`] has already been fixed. Returns whether `path` is the binary
/// in use. Safe code cannot set `$KNIT_BIN` for its own process; this is the way to do it.
pub fn use_knit_bin(path: PathBuf) -> bool {
    KNIT_BIN.set(path.clone()).is_ok() || KNIT_BIN.get() == Some(&path)
}

/// The `knit` binary: `$KNIT_BIN`, or the workspace's debug build (built if missing).
pub fn knit_bin() -> PathBuf {
    KNIT_BIN
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("KNIT_BIN") {
                return PathBuf::from(bin);
            }
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-q", "-p", "knit", "--bin", "knit"])
                .current_dir(&workspace)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "cannot build the knit binary"
            );
            target.join("debug").join("knit")
        })
        .clone()
}

/// One node as `knit node ls --format json` prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeRow {
    /// Node id.
    pub id: String,
    /// Node name.
    pub name: String,
    /// Mesh address.
    pub addr: String,
    /// alive | suspect | down | left.
    pub state: String,
    /// Epoch of the incarnation seen.
    pub epoch: u64,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Whether this row is the answering node.
    #[serde(rename = "self")]
    pub is_self: bool,
}

fn unique_block() -> u8 {
    // 127.<20..=219>.x.y: a block per test process.
    u8::try_from(20 + std::process::id() % 200).unwrap_or(20)
}

/// Peers of one cluster with a service range of their own; later ones get `none`.
const SERVICE_RANGES_MAX: usize = 16;

/// The service range of peer `i` of the cluster on loopback block `block`
/// (`127.A.B.0/24`): `10.A.B.(16 i)/28` (a DNS address and 13 VIPs), so that peers on
/// one host, and clusters of concurrent test processes, never share one; `none` past
/// [`SERVICE_RANGES_MAX`] peers.
pub fn service_range(block: [u8; 3], i: usize) -> String {
    match u8::try_from(16 * i) {
        Ok(fourth) if i < SERVICE_RANGES_MAX => format!("10.{}.{}.{fourth}/28", block[1], block[2]),
        _ => "none".to_owned(),
    }
}

/// Removes the local route of a service range (a peer killed by SIGKILL leaves its own);
/// a missing route, or a test that is not root, is no error.
pub fn remove_service_route(range: &str) {
    if range == "none" || !is_root() {
        return;
    }
    let _ = run_bounded(
        Command::new("ip").args(["route", "del", "local", range, "dev", "lo"]),
        Duration::from_secs(5),
    );
}

fn next_cluster() -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    u8::try_from(NEXT.fetch_add(1, Ordering::Relaxed) % 250 + 1).unwrap_or(1)
}

/// A `knit` peer process.
pub struct Peer {
    /// Its name (also `--name`).
    pub name: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its mesh address.
    pub listen: SocketAddr,
    /// Its admin API: the Unix socket in its data dir.
    pub api: PathBuf,
    /// Where it serves `/metrics` and `/healthz`.
    pub metrics: SocketAddr,
    profile: String,
    /// Whether it starts with `--enable-process-driver` (the harness's default).
    pub process_driver: bool,
    /// Extra environment for the `knit up` process.
    pub env: Vec<(String, String)>,
    /// The network namespace it runs in (see [`netns::Net`]); `None`: the test's own.
    pub netns: Option<String>,
    /// Its service range (`KNIT_SERVICE_RANGE`): one of its own, as peers on one host
    /// need (see [`service_range`]), or `none`.
    pub service_range: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Peer {
    fn new(root: &Path, name: &str, ip: [u8; 4], profile: &str) -> Self {
        let ip = std::net::Ipv4Addr::from(ip);
        let data_dir = root.join(name);
        Self {
            name: name.to_owned(),
            log: root.join(format!("{name}.log")),
            api: data_dir.join("knit.sock"),
            data_dir,
            listen: SocketAddr::from((ip, 7946)),
            metrics: SocketAddr::from((ip, 7948)),
            profile: profile.to_owned(),
            process_driver: true,
            env: Vec::new(),
            netns: None,
            service_range: "none".to_owned(),
            child: None,
        }
    }

    /// Starts `knit up`, joining through `join` with `token` when given.
    pub fn start(&mut self, join: Option<SocketAddr>, token: Option<&str>) -> Result<()> {
        self.start_with(join, token, &[])
    }

    /// Starts `knit up` with extra arguments.
    pub fn start_with(
        &mut self,
        join: Option<SocketAddr>,
        token: Option<&str>,
        extra: &[&str],
    ) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(knit_bin());
                cmd
            }
            None => Command::new(knit_bin()),
        };
        cmd.arg("up").arg("--data-dir").arg(&self.data_dir);
        cmd.arg("--listen").arg(self.listen.to_string());
        cmd.arg("--ingress-addr").arg(self.listen.ip().to_string());
        cmd.arg("--metrics-addr").arg(self.metrics.to_string());
        if self.process_driver {
            cmd.arg("--enable-process-driver");
        }
        cmd.args(["--name", &self.name, "--profile", &self.profile]);
        if let Some(join) = join {
            cmd.arg("--join").arg(join.to_string());
        }
        if let Some(token) = token {
            cmd.args(["--token", token]);
        }
        cmd.args(extra);
        // `KNIT_PEER_LOG` (a `RUST_LOG` filter) turns on more of the peers' logs for a
        // benchmark's or a test's reading; `info` otherwise, whatever the caller's `RUST_LOG`.
        let filter = std::env::var("KNIT_PEER_LOG").unwrap_or_else(|_| "info".to_owned());
        clear_knit_env(&mut cmd)
            .env("RUST_LOG", filter)
            .env("KNIT_SERVICE_RANGE", &self.service_range)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().context("cannot start knit")?);
        Ok(())
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; returns how long the process took to exit (bounded by `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Result<Duration> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        while started.elapsed() < limit {
            if child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("{} did not exit within {limit:?} of SIGTERM", self.name)
    }

    /// Runs a client command against this peer's API.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(knit_bin());
        clear_knit_env(&mut cmd)
            .arg("--api")
            .arg(&self.api)
            .args(args);
        run_bounded(&mut cmd, Duration::from_secs(20))
    }

    /// GETs `path` from this peer's admin API (its socket); the body of a `200`.
    pub fn api_get(&self, path: &str, limit: Duration) -> Result<String> {
        api_request(&self.api, "GET", path, None, limit)
    }

    /// POSTs the JSON `body` to `path` on this peer's admin API; the body of a `200`.
    pub fn api_post(&self, path: &str, body: &str, limit: Duration) -> Result<String> {
        api_request(&self.api, "POST", path, Some(body), limit)
    }

    /// This peer's `/metrics` text.
    pub fn metrics_text(&self, limit: Duration) -> Result<String> {
        http_get(self.metrics, "/metrics", limit)
    }

    /// `node ls --format json`.
    pub fn nodes(&self) -> Result<Vec<NodeRow>> {
        let out = self.cli(&["node", "ls", "--format", "json"])?;
        if !out.status.success() {
            bail!(
                "node ls on {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_value(json_rows(
            &String::from_utf8_lossy(&out.stdout),
        )?)?)
    }

    /// The same rows as [`Peer::nodes`], read straight from the admin API (`/v1/nodes`)
    /// instead of through a CLI process: cheap enough to poll many peers often.
    pub fn nodes_http(&self) -> Result<Vec<NodeRow>> {
        let body = self.api_get("/v1/nodes", Duration::from_secs(2))?;
        Ok(serde_json::from_str(&body)?)
    }

    /// The resident set size of the process, in KiB (`VmRSS` in `/proc/<pid>/status`),
    /// while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Runs a client command that must succeed; returns its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "knit {} on {} failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a client command with `--format json` appended and parses its output (one
    /// object per line) as one array.
    pub fn cli_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        Ok(serde_json::from_value(json_rows(&self.cli_ok(&args)?)?)?)
    }

    /// `service ls --format json`, as JSON values.
    pub fn services(&self) -> Result<Vec<serde_json::Value>> {
        self.cli_json(&["service", "ls"])
    }

    /// `service inspect NAME`: the spec as JSON, or `None` when there is no such service.
    pub fn spec(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let out = self.cli(&["service", "inspect", name])?;
        if !out.status.success() {
            return Ok(None);
        }
        let specs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        Ok(specs.into_iter().next())
    }

    /// This peer's node id (from its data dir).
    pub fn node_id(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data_dir.join("node-id"))?
            .trim()
            .to_owned())
    }

    /// The process groups of the replicas this peer's `process` driver started (from its
    /// records in the data dir).
    pub fn replica_pids(&self) -> Vec<u32> {
        replica_pids_in(&self.data_dir)
    }

    /// SIGKILLs the process groups of this peer's process replicas, and removes the Docker
    /// containers labelled with its node id: what losing the host does to them.
    pub fn kill_replicas(&self) {
        for pid in self.replica_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        if let Ok(id) = self.node_id() {
            remove_containers(&format!("knit.node={id}"));
        }
    }

    /// Host loss: the peer is SIGKILLed and its replicas with it.
    pub fn lose_host(&mut self) {
        self.kill9();
        self.kill_replicas();
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A set of peers on their own loopback addresses, cleaned up on drop.
pub struct Cluster {
    /// The peers, `p0` first (the one that created the cluster).
    pub peers: Vec<Peer>,
    root: PathBuf,
    block: [u8; 3],
    profile: String,
    token: Option<String>,
    /// The namespaces its peers run in, if any; dropped after the peers are killed.
    net: Option<netns::Net>,
}

impl Cluster {
    /// An empty cluster layout (nothing started) with `profile`.
    pub fn new(profile: &str) -> Result<Self> {
        // A block whose addresses are free: a run that was killed (and so never dropped
        // its cluster) may have left peers behind on the block this process would take.
        let mut block = [127, unique_block(), next_cluster()];
        for _ in 0..250 {
            let ip = std::net::Ipv4Addr::new(block[0], block[1], block[2], 1);
            if std::net::UdpSocket::bind((ip, 7946)).is_ok()
                && std::net::TcpListener::bind((ip, 7948)).is_ok()
            {
                break;
            }
            eprintln!("{ip} is taken (a peer left behind by another run?); using the next block");
            block[2] = next_cluster();
        }
        let root =
            std::env::temp_dir().join(format!("knit-e2e-{}-{}", std::process::id(), block[2]));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        // Process replicas run as `nobody` under a root peer: tests give them a folder
        // they may write to (markers, web roots). Data dirs inside stay 0700.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777))?;
        Ok(Self {
            peers: Vec::new(),
            root,
            block,
            profile: profile.to_owned(),
            token: None,
            net: None,
        })
    }

    /// Starts `n` peers, each in a network namespace of its own on one switch (see
    /// [`netns::Net`]; root needed): the first creates the cluster, the others join it.
    pub fn in_namespaces(n: usize, profile: &str) -> Result<Self> {
        let net = netns::Net::new(n)?;
        let mut cluster = Self::new(profile)?;
        for i in 0..n {
            let name = format!("p{i}");
            let mut peer = Peer::new(&cluster.root, &name, net.addr(i).octets(), profile);
            peer.netns = Some(net.namespace(i));
            peer.service_range = service_range(cluster.block, i);
            cluster.peers.push(peer);
        }
        cluster.net = Some(net);
        for i in 0..n {
            cluster.start_peer(i)?;
        }
        cluster.wait_all_alive(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// The namespaces of a cluster made by [`Cluster::in_namespaces`].
    pub fn net(&self) -> Option<&netns::Net> {
        self.net.as_ref()
    }

    /// Starts `n` peers: the first creates the cluster, the others join through it.
    pub fn start(n: usize, profile: &str) -> Result<Self> {
        let mut cluster = Self::new(profile)?;
        for _ in 0..n {
            cluster.add_peer()?;
        }
        cluster.wait_all_alive(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Adds a peer (not started).
    pub fn add_unstarted(&mut self) -> usize {
        let i = self.peers.len();
        let ip = [
            self.block[0],
            self.block[1],
            self.block[2],
            u8::try_from(i + 1).unwrap_or(250),
        ];
        let mut peer = Peer::new(&self.root, &format!("p{i}"), ip, &self.profile);
        peer.service_range = service_range(self.block, i);
        self.peers.push(peer);
        i
    }

    /// Adds and starts a peer: the first creates the cluster, later ones join `p0`.
    pub fn add_peer(&mut self) -> Result<usize> {
        let i = self.add_unstarted();
        self.start_peer(i)?;
        Ok(i)
    }

    /// Starts peer `i`, added with [`Cluster::add_unstarted`] (and maybe set up since): the
    /// first creates the cluster, later ones join `p0`.
    pub fn start_peer(&mut self, i: usize) -> Result<()> {
        if i == 0 {
            self.peers[0].start(None, None)?;
            let token_file = self.peers[0].data_dir.join("join-token");
            let (token, _) = wait_until(Duration::from_secs(20), "the join token", || {
                std::fs::read_to_string(&token_file)
                    .ok()
                    .map(|t| t.trim().to_owned())
            })
            .with_context(|| format!("the first peer's log:\n{}", self.peers[0].log_tail(20)))?;
            self.token = Some(token);
        } else {
            let seed = self.peers[0].listen;
            let token = self.token.clone();
            self.peers[i].start(Some(seed), token.as_deref())?;
        }
        Ok(())
    }

    /// The join token.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The root folder of the cluster's data dirs and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Waits until every running peer lists every running peer as alive.
    pub fn wait_all_alive(&mut self, limit: Duration) -> Result<Duration> {
        let running: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].is_running())
            .collect();
        let ids: Vec<String> = running
            .iter()
            .map(|&i| self.wait_node_id(i))
            .collect::<Result<_>>()?;
        let peers = &self.peers;
        let (_, took) = wait_until(limit, "every peer to see every peer alive", || {
            running
                .iter()
                .all(|&i| {
                    peers[i].nodes().is_ok_and(|rows| {
                        ids.iter()
                            .all(|id| rows.iter().any(|r| &r.id == id && r.state == "alive"))
                    })
                })
                .then_some(())
        })?;
        Ok(took)
    }

    fn wait_node_id(&self, i: usize) -> Result<String> {
        let peer = &self.peers[i];
        wait_until(Duration::from_secs(20), "a node id", || peer.node_id().ok()).map(|(id, _)| id)
    }

    /// Waits until every running peer other than `subject` sees `subject` in `state`.
    pub fn wait_seen_as(
        &mut self,
        subject: &str,
        state: &str,
        limit: Duration,
    ) -> Result<Duration> {
        let observers: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].is_running())
            .collect();
        let peers = &self.peers;
        let waited = wait_until(
            limit,
            &format!("{subject} to be {state} everywhere"),
            || {
                observers
                    .iter()
                    .all(|&i| {
                        peers[i].nodes().is_ok_and(|rows| {
                            rows.iter().any(|r| r.id == subject && r.state == state)
                        })
                    })
                    .then_some(())
            },
        );
        match waited {
            Ok((_, took)) => Ok(took),
            Err(e) => {
                // Say what each observer saw instead.
                let seen: Vec<String> = observers
                    .iter()
                    .map(|&i| {
                        let state = peers[i].nodes().ok().and_then(|rows| {
                            rows.into_iter().find(|r| r.id == subject).map(|r| r.state)
                        });
                        format!("p{i}: {}", state.as_deref().unwrap_or("not listed"))
                    })
                    .collect();
                Err(e.context(format!("seen as: {}", seen.join(", "))))
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for peer in &mut self.peers {
            peer.kill9();
            peer.kill_replicas();
        }
        // After the replicas: a container must never see its service addresses routed
        // off the host.
        for peer in self.peers.iter().filter(|p| p.netns.is_none()) {
            remove_service_route(&peer.service_range);
        }
        if std::thread::panicking() {
            for peer in &self.peers {
                eprintln!("---- log of {} ----\n{}", peer.name, peer.log_tail(40));
                if std::env::var_os("KNIT_KEEP_LOGS").is_some() {
                    let _ = std::fs::copy(
                        &peer.log,
                        std::env::temp_dir().join(format!("knit-failed-{}.log", peer.name)),
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::{metric_value, service_range};

    #[test]
    fn every_peer_of_every_cluster_gets_a_range_of_its_own() {
        assert_eq!(service_range([127, 42, 7], 0), "10.42.7.0/28");
        assert_eq!(service_range([127, 42, 7], 15), "10.42.7.240/28");
        assert_eq!(service_range([127, 42, 7], 16), "none");
        let ranges: std::collections::BTreeSet<String> = (0..16)
            .flat_map(|i| {
                [
                    service_range([127, 42, 7], i),
                    service_range([127, 42, 8], i),
                ]
            })
            .collect();
        assert_eq!(ranges.len(), 32);
    }

    #[test]
    fn metrics_are_read_as_integers_or_floats() {
        let text = "# TYPE knit_x counter\nknit_x_total 1234\nknit_y_total 5.0\n# EOF\n";
        assert_eq!(metric_value(text, "knit_x_total").unwrap(), 1234);
        assert_eq!(metric_value(text, "knit_y_total").unwrap(), 5);
        assert!(metric_value(text, "knit_z_total").is_err());
    }
}
