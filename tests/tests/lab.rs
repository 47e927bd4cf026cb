//! `knit lab`, as a newcomer runs it: peers come up, a service runs, and Ctrl-C leaves
//! nothing running behind.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use knit_tests::{cluster_lock, knit_bin, run_bounded, wait_until};

/// Kills the lab (and so its peers) if the test ends early.
struct Lab(std::process::Child);

impl Drop for Lab {
    fn drop(&mut self) {
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
    let records = || -> Vec<u32> {
        ["lab-1", "lab-2"]
            .iter()
            .flat_map(|p| knit_tests::replica_pids_in(&root.join(p)))
            .collect()
    };
    let (pids, _) = wait_until(Duration::from_secs(30), "3 replicas", || {
        let pids: Vec<u32> = records()
            .into_iter()
            .filter(|p| knit_tests::process_alive(*p))
            .collect();
        (pids.len() == 3).then_some(pids)
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
    assert!(said.contains("stopped 3 replicas"), "{said}");
    let left: Vec<u32> = pids
        .into_iter()
        .filter(|p| knit_tests::process_alive(*p))
        .collect();
    assert!(left.is_empty(), "replicas left running: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
}
