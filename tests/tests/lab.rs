//! `knit lab`, as a newcomer runs it: peers come up, a service runs, and Ctrl-C leaves
//! nothing running behind.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use knit_tests::{cluster_lock, knit_bin, run_bounded, wait_until};

/// Stops the lab if the test ends early: Ctrl-C first, so that it stops its peers, their
/// replicas and their routes; SIGKILL if it has not ended within 30 s.
struct Lab(std::process::Child);

impl Drop for Lab {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let _ = wait_until(Duration::from_secs(30), "the lab to stop", || {
                self.0.try_wait().ok().flatten()
            });
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_on_the_lab_leaves_no_replica_running() {
    let _lock = cluster_lock();
    let root = std::env::temp_dir().join(format!("knit-lab-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut cmd = Command::new(knit_bin());
    knit_tests::clear_knit_env(&mut cmd)
        .args(["lab", "--nodes", "2", "--data-dir"])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut lab = Lab(cmd.spawn().expect("knit lab starts"));
    let socket = root.join("lab-1").join("knit.sock");
    let knit = |args: &[&str]| {
        let mut cmd = Command::new(knit_bin());
        knit_tests::clear_knit_env(&mut cmd)
            .arg("--api")
            .arg(&socket)
            .args(args);
        run_bounded(&mut cmd, Duration::from_secs(20)).expect("knit runs")
    };
    wait_until(Duration::from_secs(30), "two lab peers alive", || {
        let out = knit(&["node", "ls", "--format", "json"]);
        // One object per line.
        let rows: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .ok()?;
        (rows.len() == 2 && rows.iter().all(|r| r["state"] == "alive")).then_some(())
    })
    .expect("the lab came up");
    let out = knit(&[
        "service",
        "create",
        "--driver",
        "process",
        "--name",
        "sleepers",
        "--replicas",
        "3",
        "--",
        "sleep",
        "600",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Names and addresses: each lab peer serves the service at an address of its own
    // range (they share the host's one network namespace), and both answer (root only:
    // the ranges' local routes need it).
    let discovery = knit_tests::is_root();
    if discovery {
        let out = knit(&[
            "service",
            "create",
            "--driver",
            "process",
            "--name",
            "hello",
            "-p",
            "8080",
            "--",
            "sh",
            "-c",
            // Every interface: the other lab peer forwards to its node's address.
            "exec python3 -m http.server $PORT",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let peer_socket = |peer: &str| root.join(peer).join("knit.sock");
        let vip_on = |peer: &str| -> Option<String> {
            let mut cmd = Command::new(knit_bin());
            knit_tests::clear_knit_env(&mut cmd)
                .arg("--api")
                .arg(peer_socket(peer))
                .args(["service", "ls", "--format", "{{.Name}} {{.VIP}}"]);
            let out = run_bounded(&mut cmd, Duration::from_secs(20)).ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let line = text.lines().find(|l| l.starts_with("hello "))?;
            line.split_whitespace().nth(1).map(str::to_owned)
        };
        for (peer, prefix) in [("lab-1", "10.212.0."), ("lab-2", "10.212.4.")] {
            let (vip, _) = wait_until(Duration::from_secs(30), "hello's VIP", || vip_on(peer))
                .expect("each lab peer gives hello a VIP");
            assert!(vip.starts_with(prefix), "{peer}: {vip}");
            let addr = format!("{vip}:8080").parse().unwrap();
            wait_until(Duration::from_secs(30), "hello through the VIP", || {
                knit_tests::answers(addr, "/").then_some(())
            })
            .unwrap_or_else(|e| panic!("{peer}'s VIP {vip}: {e}"));
        }
    }
    let replicas = if discovery { 4 } else { 3 };
    let records = || -> Vec<u32> {
        ["lab-1", "lab-2"]
            .iter()
            .flat_map(|p| knit_tests::replica_pids_in(&root.join(p)))
            .collect()
    };
    let (pids, _) = wait_until(Duration::from_secs(30), "every replica", || {
        let pids: Vec<u32> = records()
            .into_iter()
            .filter(|p| knit_tests::process_alive(*p))
            .collect();
        (pids.len() == replicas).then_some(pids)
    })
    .expect("the replicas run");

    // Ctrl-C.
    let status = Command::new("kill")
        .args(["-INT", &lab.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_until(Duration::from_secs(30), "the lab to exit", || {
        lab.0.try_wait().ok().flatten()
    })
    .expect("the lab exits on Ctrl-C");
    let mut said = String::new();
    if let Some(mut out) = lab.0.stdout.take() {
        let _ = out.read_to_string(&mut said);
    }
    assert!(
        said.contains(&format!("stopped {replicas} replicas")),
        "{said}"
    );
    let routes = run_bounded(
        Command::new("ip").args(["route", "show", "table", "local"]),
        Duration::from_secs(10),
    )
    .expect("ip route");
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    assert!(
        !routes.contains("10.212."),
        "the lab left a service range's route: {routes}"
    );
    let left: Vec<u32> = pids
        .into_iter()
        .filter(|p| knit_tests::process_alive(*p))
        .collect();
    assert!(left.is_empty(), "replicas left running: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
}
