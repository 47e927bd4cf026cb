//! `knit lab`: a local cluster of N peers on loopback addresses, to try knit on one machine.
//! The peers are real `knit up` processes (this same binary); Ctrl-C stops them (they leave
//! the cluster) and removes their data dirs unless `--keep` was given.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::cli::LabArgs;

struct LabPeer {
    name: String,
    listen: SocketAddr,
    /// The admin API's socket, in the peer's data dir.
    api: PathBuf,
    metrics: SocketAddr,
    child: Child,
}

fn addr(i: usize, port: u16) -> SocketAddr {
    let host = u8::try_from(11 + i).unwrap_or(250);
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), port))
}

/// The service range of peer `i`: the lab's peers share one network namespace, so each
/// has a /22 of its own in 10.212.0.0/16 (room for 64 peers), and with it its own DNS
/// address and VIPs. A peer on the same host run by `knit up` keeps the default range.
fn service_range(i: usize) -> String {
    let third = u8::try_from(4 * i).unwrap_or(252);
    format!("10.212.{third}.0/22")
}

async fn spawn(
    exe: &Path,
    root: &Path,
    args: &LabArgs,
    i: usize,
    join: Option<(SocketAddr, &Path)>,
) -> Result<LabPeer> {
    let name = format!("lab-{}", i + 1);
    let (listen, metrics) = (addr(i, 7946), addr(i, 7948));
    let data_dir = root.join(&name);
    let api = data_dir.join(crate::api_addr::SOCKET_NAME);
    let log = std::fs::File::create(root.join(format!("{name}.log")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("up").arg("--data-dir").arg(&data_dir);
    cmd.arg("--listen").arg(listen.to_string());
    cmd.arg("--ingress-addr").arg(listen.ip().to_string());
    cmd.arg("--metrics-addr").arg(metrics.to_string());
    cmd.arg("--enable-process-driver");
    cmd.arg("--service-range").arg(service_range(i));
    cmd.args(["--name", &name, "--profile", &args.profile.to_string()]);
    if let Some((seed, token_file)) = join {
        cmd.arg("--join")
            .arg(seed.to_string())
            .arg("--token-file")
            .arg(token_file);
    }
    for var in [
        "KNIT_API",
        "KNIT_TOKEN_FILE",
        "KNIT_METRICS_ADDR",
        "KNIT_API_INSECURE",
        "KNIT_DATA_DIR",
        "KNIT_LISTEN",
        "KNIT_ADVERTISE",
        "KNIT_JOIN",
        "KNIT_TOKEN",
        "KNIT_NAME",
        "KNIT_SERVICE_RANGE",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    Ok(LabPeer {
        name,
        listen,
        api,
        metrics,
        child,
    })
}

/// How long a replica the lab leaves behind has to stop before it is killed.
const CLEANUP_GRACE: Duration = Duration::from_secs(5);

/// Stops the process replicas and Docker containers the (stopped) lab peers ran; returns
/// how many.
async fn stop_replicas(peers: &[LabPeer]) -> usize {
    use crate::driver::{docker::DockerDriver, process::ProcessDriver};
    let tasks = crate::tasks::Tasks::new();
    let docker = DockerDriver::connect(Ipv4Addr::LOCALHOST.into(), &tasks)
        .await
        .ok()
        .map(std::sync::Arc::new);
    let mut stops = Vec::new();
    for peer in peers {
        let Some(data_dir) = peer.api.parent() else {
            continue;
        };
        if let Ok(process) = ProcessDriver::new(&data_dir.join("processes"), None, &tasks) {
            let ids: Vec<String> = process
                .list()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.runtime_id)
                .collect();
            let process = std::sync::Arc::new(process);
            for id in ids {
                let process = process.clone();
                stops.push(tokio::spawn(async move {
                    process.stop(&id, CLEANUP_GRACE).await.is_ok()
                }));
            }
        }
        let node = std::fs::read_to_string(data_dir.join("node-id")).unwrap_or_default();
        if let (Some(docker), false) = (&docker, node.trim().is_empty()) {
            for replica in docker.list(node.trim()).await.unwrap_or_default() {
                let docker = docker.clone();
                stops.push(tokio::spawn(async move {
                    docker
                        .stop(&replica.runtime_id, CLEANUP_GRACE)
                        .await
                        .is_ok()
                }));
            }
        }
    }
    let mut stopped = 0;
    for stop in stops {
        if stop.await.unwrap_or(false) {
            stopped += 1;
        }
    }
    // The drivers' own tasks (Docker's event stream) end here.
    let late = tasks.stop(CLEANUP_GRACE).await;
    if !late.is_empty() {
        tracing::debug!(tasks = ?late, "lab cleanup tasks still running");
    }
    stopped
}

/// Removes the service ranges' local routes that peers killed before their stop left
/// (a peer that stops removes its own; a missing route is no error).
async fn remove_routes(peers: usize) {
    for i in 0..peers {
        let range = service_range(i);
        let removed = Command::new("ip")
            .args(["route", "del", "local", &range, "dev", "lo"])
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(5), removed).await;
    }
}

async fn wait_for_file(path: &Path, limit: Duration) -> Result<String> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text.trim().to_owned());
        }
        if started.elapsed() > limit {
            bail!(
                "the first peer did not create the cluster within {limit:?}; see the logs in {}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the lab until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: LabArgs) -> Result<()> {
    let mut stop_signals = crate::peer::StopSignals::install()?;
    if !(1..=50).contains(&args.nodes) {
        bail!("--nodes {} is out of range: give 1 to 50", args.nodes);
    }
    let exe = std::env::current_exe().context("cannot find the knit binary")?;
    let root: PathBuf = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("knit-lab-{}", std::process::id())),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut peers = vec![spawn(&exe, &root, &args, 0, None).await?];
    let token_file = root.join("lab-1").join("join-token");
    wait_for_file(&token_file, Duration::from_secs(20)).await?;
    for i in 1..args.nodes {
        peers.push(spawn(&exe, &root, &args, i, Some((peers[0].listen, &token_file))).await?);
    }
    println!(
        "knit lab: {} peers on loopback ({} profile); logs and data in {}",
        args.nodes,
        args.profile,
        root.display()
    );
    for (i, peer) in peers.iter().enumerate() {
        println!(
            "  {:<8} mesh {}  api {}  metrics http://{}/metrics  services {}",
            peer.name,
            peer.listen,
            peer.api.display(),
            peer.metrics,
            service_range(i)
        );
    }
    let (knit, api) = (exe.display(), peers[0].api.display());
    println!(
        "\nTry (as root, like Docker's socket; `cargo install --path node` puts knit on the PATH):"
    );
    println!("  export KNIT_API={api}");
    println!("  {knit} node ls");
    println!(
        "  {knit} service create --driver process --name web --replicas 3 -p 8080:8080 -- sh -c 'exec python3 -m http.server $PORT'"
    );
    println!("  curl http://{}:8080/", peers[0].listen.ip());
    println!(
        "  {knit} service create --name api -p 8080 IMAGE   # reached by name from every replica: http://api:8080/"
    );
    println!("  kill -9 <pid of a peer> and watch it go down:  watch {knit} node ls");
    println!("\nCtrl-C stops the lab.");
    for peer in &peers {
        if let Some(pid) = peer.child.id() {
            println!("  {} pid {pid}", peer.name);
        }
    }
    stop_signals.wait().await;
    println!("stopping the lab");
    for peer in &peers {
        if let Some(pid) = peer.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for peer in &mut peers {
        if tokio::time::timeout(Duration::from_secs(3), peer.child.wait())
            .await
            .is_err()
        {
            let _ = peer.child.kill().await;
        }
    }
    // Replicas outlive their peer (a restarted peer adopts them), but a lab's peers never
    // come back: stop what they ran, or it would run on with no peer to mind it.
    let stopped = stop_replicas(&peers).await;
    if stopped > 0 {
        println!("stopped {stopped} replicas the lab's peers ran");
    }
    remove_routes(peers.len()).await;
    if args.keep || args.data_dir.is_some() {
        println!("data and logs kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}
