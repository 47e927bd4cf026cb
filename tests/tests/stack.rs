//! Stacks, as an operator uses them: `knit stack deploy -c compose.yml app` on three
//! peers creates two services (`app_web`, `app_worker`), a secret and a config from
//! files; a second deploy with nothing changed changes nothing; a deploy with one change
//! (a variable from `.env`) updates exactly that service, which then runs it; `stack ls`
//! and `stack ps` show the stack; `stack rm` removes its services, secret and config.
//! With Docker (the locally built test image; nothing is pulled); skips with a message
//! when Docker is missing, unless `KNIT_REQUIRE_DOCKER=1`.

use std::path::Path;
use std::time::Duration;

use knit_tests::{Cluster, Peer, cluster_lock, images, remove_containers, wait_until};

/// Removes the peers' containers and their files on memory when the test ends.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.0 {
            remove_containers(&format!("knit.node={id}"));
            let _ = std::fs::remove_dir_all(Path::new("/dev/shm/knit").join(id));
            let _ = std::fs::remove_dir_all(Path::new("/dev/shm/knit/configs").join(id));
        }
    }
}

fn compose(image: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    deploy:
      replicas: 2
      update_config:
        monitor: 1s
    configs:
      - source: index
        target: /www/index.html
  worker:
    image: {image}
    command: ["/bin/sh", "-c", "echo greeting=$$GREETING; cat /run/secrets/token; exec sleep 600"]
    environment:
      GREETING: ${{GREETING:-hello}}
    secrets: [token]
    depends_on: [web]
    healthcheck:
      disable: true
    deploy:
      update_config:
        monitor: 1s
configs:
  index:
    file: ./index.html
secrets:
  token:
    file: ./token.txt
"#
    )
}

/// `stack deploy` through `peer`: its standard output and error.
fn deploy(peer: &Peer, file: &Path) -> (String, String) {
    let file = file.display().to_string();
    let out = peer
        .cli(&["stack", "deploy", "-c", &file, "app"])
        .expect("stack deploy runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stack deploy failed: {stderr}");
    (stdout, stderr)
}

/// Waits until every service of the stack runs all its replicas, current.
fn wait_converged(peer: &Peer, what: &str) {
    wait_until(Duration::from_secs(90), what, || {
        let tasks = peer
            .cli_ok(&["stack", "ps", "app", "--format", "json"])
            .ok()?;
        let rows: Vec<serde_json::Value> = tasks
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let running = rows
            .iter()
            .filter(|r| r["desired_state"] == "running")
            .filter(|r| r["state"] == "running" && r["current"] == true)
            .count();
        let leaving = rows.iter().any(|r| r["desired_state"] == "shutdown");
        (rows.len() == 3 && running == 3 && !leaving).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            peer.cli_ok(&["stack", "ps", "app"]).unwrap_or_default()
        )
    });
}

#[test]
fn a_stack_deploys_updates_one_service_and_goes() {
    let Some(image) = images::busybox_image().expect("the test image") else {
        return;
    };
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").expect("three peers");
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("alive");
    let _cleanup = Cleanup(
        cluster
            .peers
            .iter()
            .map(|p| p.node_id().expect("node id"))
            .collect(),
    );
    let dir = cluster.root().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "stacked\n").unwrap();
    std::fs::write(dir.join("token.txt"), "s3cret-token\n").unwrap();
    let file = dir.join("compose.yml");
    std::fs::write(&file, compose(&image)).unwrap();
    let p0 = &cluster.peers[0];

    let (out, err) = deploy(p0, &file);
    for line in [
        "created secret app_token",
        "created config app_index",
        "created service app_web",
        "created service app_worker",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }
    assert!(
        err.contains("warning: services.worker.depends_on:"),
        "the unsupported key is named: {err}"
    );
    wait_converged(p0, "the stack to run");
    let web = p0.spec("app_web").unwrap().expect("app_web");
    assert_eq!(web["labels"]["com.docker.stack.namespace"], "app");

    // Nothing changed: nothing is written.
    let (out, _) = deploy(&cluster.peers[1], &file);
    assert!(out.contains("unchanged service app_web"), "{out}");
    assert!(out.contains("unchanged service app_worker"), "{out}");
    assert!(!out.contains("created"), "{out}");
    let version = |name: &str| p0.spec(name).unwrap().expect("spec")["version"].clone();
    let (web_version, worker_version) = (version("app_web"), version("app_worker"));

    // One change, from the .env beside the file: exactly one service is updated.
    std::fs::write(dir.join(".env"), "GREETING=bonjour\n").unwrap();
    let (out, _) = deploy(p0, &file);
    assert!(out.contains("unchanged service app_web"), "{out}");
    assert!(out.contains("updated service app_worker"), "{out}");
    assert_eq!(version("app_web"), web_version, "web is untouched");
    assert_ne!(version("app_worker"), worker_version);
    wait_converged(p0, "the updated worker to run");
    wait_until(
        Duration::from_secs(30),
        "the worker to print the new greeting",
        || {
            let logs = p0.cli_ok(&["service", "logs", "app_worker"]).ok()?;
            (logs.contains("greeting=bonjour") && logs.contains("s3cret-token")).then_some(())
        },
    )
    .expect("the updated worker runs the new environment with its secret");

    let listed = p0.cli_ok(&["stack", "ls"]).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["app", "2"]),
        "{listed}"
    );
    let tasks = p0.cli_ok(&["stack", "ps", "app"]).unwrap();
    for slot in ["app_web.1", "app_web.2", "app_worker.1"] {
        assert!(tasks.contains(slot), "{slot} missing from:\n{tasks}");
    }
    let services = p0.cli_ok(&["stack", "services", "app", "-q"]).unwrap();
    assert_eq!(
        services.split_whitespace().collect::<Vec<_>>(),
        ["app_web", "app_worker"]
    );

    // Removal takes everything the stack made.
    let out = p0.cli_ok(&["stack", "rm", "app"]).expect("stack rm");
    for line in [
        "removed service app_web",
        "removed service app_worker",
        "removed secret app_token",
        "removed config app_index",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }
    assert!(
        p0.cli_ok(&["service", "ls", "-q"])
            .unwrap()
            .trim()
            .is_empty()
    );
    assert!(
        p0.cli_ok(&["secret", "ls", "-q"])
            .unwrap()
            .trim()
            .is_empty()
    );
    assert!(
        p0.cli_ok(&["config", "ls", "-q"])
            .unwrap()
            .trim()
            .is_empty()
    );
    assert!(p0.cli_ok(&["stack", "ls"]).unwrap().lines().count() <= 1);
    let gone = p0.cli(&["stack", "ps", "app"]).unwrap();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("nothing found in stack app"));
    wait_until(
        Duration::from_secs(60),
        "the stack's containers to stop",
        || {
            let out = knit_tests::run_bounded(
                std::process::Command::new("docker").args([
                    "ps",
                    "-q",
                    "--filter",
                    "label=com.docker.stack.namespace=app",
                ]),
                Duration::from_secs(20),
            )
            .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .is_empty()
                .then_some(())
        },
    )
    .expect("every container of the stack stops");
}
