//! What installing knit on a host relies on: the peer tells systemd it is ready
//! (`Type=notify` in `packaging/knit.service`) once its API answers, and the binary prints
//! its version, shell completions and man pages without a peer.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use knit_tests::{Cluster, cluster_lock, knit_bin};

/// How long a peer may take to come up on a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a command that starts no peer may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `knit ARGS` (no peer needed) and returns its standard output. The output goes to
/// a file, not a pipe: a completion script is more than a pipe holds.
fn knit(args: &[&str]) -> String {
    let out_path = std::env::temp_dir().join(format!(
        "knit-install-out-{}-{}",
        std::process::id(),
        args.join("-").replace(['/', ' '], "_")
    ));
    let out_file = std::fs::File::create(&out_path).expect("an output file");
    let mut cmd = Command::new(knit_bin());
    let mut child = knit_tests::clear_knit_env(&mut cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("knit starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            panic!(
                "knit {} did not finish within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("knit's status");
    let stdout = std::fs::read_to_string(&out_path).expect("utf-8 output");
    let _ = std::fs::remove_file(&out_path);
    assert!(
        out.status.success(),
        "knit {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_peer_notifies_systemd_once_it_serves() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::new("fast").expect("cluster layout");
    let socket_path = cluster.root().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let i = cluster.add_unstarted();
    cluster.peers[i].env.push((
        "NOTIFY_SOCKET".into(),
        socket_path.to_string_lossy().into_owned(),
    ));
    cluster.start_peer(i).expect("the peer starts");

    let started = Instant::now();
    let mut buf = [0u8; 256];
    let message = loop {
        match socket.recv(&mut buf) {
            Ok(n) => break String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) if started.elapsed() < READY_TIMEOUT => {}
            Err(e) => panic!(
                "no READY=1 within {READY_TIMEOUT:?} ({e}); the peer's log:\n{}",
                cluster.peers[i].log_tail(30)
            ),
        }
    };
    assert_eq!(message, "READY=1");
    // Ready means serving: the API answers at once.
    let ids = cluster.peers[i]
        .cli_ok(&["node", "ls", "-q"])
        .expect("node ls");
    assert_eq!(ids.lines().count(), 1, "{ids}");

    // SIGTERM: the peer says it is stopping, and its one way out ends quickly (nothing is
    // in flight on an idle peer; the bound is generous for a loaded machine).
    let stopped_in = cluster.peers[i]
        .terminate(Duration::from_secs(30))
        .expect("the peer stops on SIGTERM");
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    assert!(
        stopped_in < Duration::from_secs(10),
        "an idle peer took {stopped_in:?} to stop; its log:\n{}",
        cluster.peers[i].log_tail(30)
    );
}

#[test]
fn version_names_the_revision() {
    let short = knit(&["--version"]);
    assert!(short.starts_with("knit 0."), "{short}");
    assert!(short.contains(" ("), "no revision in {short}");
    let json: serde_json::Value =
        serde_json::from_str(&knit(&["version", "--format", "json"])).expect("one JSON object");
    let revision = json["revision"].as_str().expect("a revision");
    assert!(!revision.is_empty());
    assert!(short.contains(revision), "{short} vs {revision}");
    assert_eq!(
        knit(&["version", "--format", "{{.Revision}}"]).trim(),
        revision
    );
}

#[test]
fn completion_and_man_pages_come_from_the_binary() {
    let bash = knit(&["completion", "bash"]);
    assert!(bash.contains("service") && bash.contains("node"), "{bash}");
    let dir = std::env::temp_dir().join(format!("knit-man-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    knit(&["man", dir.to_str().expect("utf-8 path")]);
    let page = std::fs::read_to_string(dir.join("knit-service-create.1")).expect("the page");
    assert!(page.contains(r"\-\-replicas"), "--replicas missing");
    assert!(dir.join("knit.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
