//! The talk's demo, typed as in the talk, on `knit lab` with Docker and a local image:
//! `node ls`, `service create -p`, `service ls`, `service ps -f`, a host killed with
//! SIGKILL and its replica back on the others, `scale`, `update --update-delay
//! --update-parallelism --image` followed to "verify: Service converged", and Ctrl-C
//! leaving no container behind.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use knit_tests::{answers, cluster_lock, images, knit_bin, run_bounded, wait_until};

/// The published port, as in the talk.
const PUBLISHED: u16 = 8090;

/// Kills the lab (and so its peers) and removes what it ran if the test ends early.
struct Lab {
    child: std::process::Child,
    root: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for id in node_ids(&self.root) {
            knit_tests::remove_containers(&format!("knit.node={id}"));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The lab peers' node ids, from their data dirs.
fn node_ids(root: &Path) -> Vec<String> {
    (1..=3)
        .filter_map(|i| std::fs::read_to_string(root.join(format!("lab-{i}/node-id"))).ok())
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect()
}

/// The pid of the lab peer whose data dir is `data_dir`, from `/proc`.
fn peer_pid(data_dir: &Path) -> Option<u32> {
    let wanted = format!("--data-dir\0{}\0", data_dir.display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&wanted)
                .then_some(pid)
        })
}

/// The lab's containers still running, by id.
fn running_containers(ids: &[String]) -> Vec<String> {
    ids.iter()
        .flat_map(|id| {
            let out = run_bounded(
                Command::new("docker").args([
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=knit.node={id}"),
                ]),
                Duration::from_secs(20),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
            out.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_talks_demo_runs_as_typed() {
    let Some(image) = images::busybox_image().expect("the test image") else {
        return;
    };
    let _lock = cluster_lock();
    let next_image = "knit-test/busybox:2";
    let tagged = run_bounded(
        Command::new("docker").args(["tag", &image, next_image]),
        Duration::from_secs(30),
    )
    .expect("docker tag runs");
    assert!(tagged.status.success(), "{}", text(&tagged));

    let root = std::env::temp_dir().join(format!("knit-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut cmd = Command::new(knit_bin());
    knit_tests::clear_knit_env(&mut cmd)
        .args(["lab", "--nodes", "3", "--data-dir"])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut lab = Lab {
        child: cmd.spawn().expect("knit lab starts"),
        root: root.clone(),
    };
    let socket = root.join("lab-1").join("knit.sock");
    // As typed, with KNIT_API pointing at the first peer (the lab's "Try:" lines).
    let knit = |args: &[&str], limit_s: u64| -> Output {
        let mut cmd = Command::new(knit_bin());
        knit_tests::clear_knit_env(&mut cmd)
            .env("KNIT_API", &socket)
            .args(args);
        run_bounded(&mut cmd, Duration::from_secs(limit_s)).expect("knit runs")
    };

    // knit node ls
    wait_until(Duration::from_secs(60), "three lab peers alive", || {
        let out = knit(&["node", "ls"], 20);
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let alive = listing
            .lines()
            .filter(|l| l.contains("lab-") && l.contains("alive"))
            .count();
        (out.status.success() && alive == 3).then_some(())
    })
    .expect("the lab came up");

    // knit service create -p 8090:8080 --replicas 3 --name blog knit-test/busybox:1
    let published = format!("{PUBLISHED}:{}", images::BUSYBOX_HTTP_PORT);
    let out = knit(
        &[
            "service",
            "create",
            "-p",
            &published,
            "--replicas",
            "3",
            "--name",
            "blog",
            &image,
        ],
        60,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("blog")
    );

    // knit service ls: 3/3.
    wait_until(Duration::from_secs(90), "blog at 3/3 in service ls", || {
        let out = knit(&["service", "ls"], 20);
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        listing
            .lines()
            .any(|l| l.contains("blog") && l.contains("3/3"))
            .then_some(())
    })
    .expect("the replicas run");

    // knit service ps blog -f desired-state=Running
    let running = |format: &str| -> Vec<serde_json::Value> {
        let out = knit(
            &[
                "service",
                "ps",
                "blog",
                "-f",
                "desired-state=Running",
                "--format",
                format,
            ],
            20,
        );
        knit_tests::json_rows(&String::from_utf8_lossy(&out.stdout))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let out = knit(
        &["service", "ps", "blog", "-f", "desired-state=Running"],
        20,
    );
    assert!(out.status.success(), "{}", text(&out));
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("blog."))
        .count();
    assert_eq!(rows, 3, "{}", text(&out));

    // The ingress answers on every host.
    let front: SocketAddr = ([127, 0, 0, 11], PUBLISHED).into();
    wait_until(Duration::from_secs(30), "the ingress to answer", || {
        answers(front, "/").then_some(())
    })
    .expect("the published port answers");

    // kill -9 a host that runs a replica (not the one the CLI talks to).
    let tasks = running("json");
    let victim = tasks
        .iter()
        .filter_map(|t| t["node"].as_str())
        .find(|n| *n != "lab-1")
        .expect("a replica on lab-2 or lab-3")
        .to_owned();
    let pid = peer_pid(&root.join(&victim)).expect("the victim's pid");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    wait_until(
        Duration::from_secs(60),
        "the lost replica back on the others",
        || {
            let tasks = running("json");
            let healed = tasks.len() == 3
                && tasks.iter().all(|t| {
                    t["node"].as_str() != Some(victim.as_str())
                        && t["state"] == "running"
                        && t["health"] == "healthy"
                });
            healed.then_some(())
        },
    )
    .expect("the mesh heals");

    // knit service scale blog=5
    let out = knit(&["service", "scale", "blog=5"], 60);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(Duration::from_secs(90), "5 healthy replicas", || {
        let tasks = running("json");
        (tasks.len() == 5
            && tasks
                .iter()
                .all(|t| t["state"] == "running" && t["health"] == "healthy"))
        .then_some(())
    })
    .expect("the service scales");

    // knit service update --update-delay 2s --update-parallelism 2 --image ... blog
    let out = knit(
        &[
            "service",
            "update",
            "--update-delay",
            "2s",
            "--update-parallelism",
            "2",
            "--image",
            next_image,
            "blog",
        ],
        240,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("verify: Service converged"), "{said}");
    let spec = knit(&["service", "inspect", "blog"], 20);
    let spec: serde_json::Value =
        serde_json::from_slice(&spec.stdout).expect("inspect prints JSON");
    assert_eq!(spec[0]["image"], next_image);
    let version = spec[0]["version"].as_u64().expect("a version");
    let tasks = running("json");
    assert_eq!(tasks.len(), 5);
    assert!(
        tasks
            .iter()
            .all(|t| t["spec_version"].as_u64() == Some(version) && t["state"] == "running"),
        "{tasks:?}"
    );
    assert!(answers(front, "/"), "the ingress answers after the update");

    // Ctrl-C: nothing left running, the killed host's container included.
    let ids = node_ids(&root);
    assert_eq!(ids.len(), 3);
    let status = Command::new("kill")
        .args(["-INT", &lab.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_until(Duration::from_secs(60), "the lab to exit", || {
        lab.child.try_wait().ok().flatten()
    })
    .expect("the lab exits on Ctrl-C");
    let mut told = String::new();
    if let Some(mut out) = lab.child.stdout.take() {
        let _ = out.read_to_string(&mut told);
    }
    assert!(told.contains("stopped"), "{told}");
    let left = running_containers(&ids);
    assert!(left.is_empty(), "containers left running: {left:?}\n{told}");
}
