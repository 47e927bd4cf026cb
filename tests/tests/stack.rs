//! Stacks, as an operator uses them: `knit stack deploy -c compose.yml app` on three
//! peers creates two services (`app_web`, `app_worker`), a secret and a config from
//! files; a second deploy with nothing changed changes nothing; a deploy with one change
//! (a variable from `.env`) updates exactly that service, which then runs it; `stack ls`
//! and `stack ps` show the stack; `stack rm` removes its services, secret and config.
//! With Docker (the locally built test image; nothing is pulled); skips with a message
//! when Docker is missing, unless `KNIT_REQUIRE_DOCKER=1`.

use std::net::SocketAddr;
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

/// The front end's CGI: asks `api` by name and passes the query on.
const FRONT: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
a=$(nslookup api 2>/dev/null | sed -n 's/^Address: \([0-9.]*\)$/\1/p' | head -n 1)
echo "front -> $(timeout 5 wget -q -O- "http://$a:8080/cgi-bin/api?$QUERY_STRING")"
"#;

/// The API's CGI: asks `store` by name and passes the query on.
const API: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
a=$(nslookup store 2>/dev/null | sed -n 's/^Address: \([0-9.]*\)$/\1/p' | head -n 1)
echo "api -> $(timeout 5 wget -q -O- "http://$a:7000/cgi-bin/kv?$QUERY_STRING")"
"#;

/// The store's CGI: `?set=VALUE` writes the value to its data folder; every call says
/// what is there.
const STORE: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
case "$QUERY_STRING" in
  set=*) echo "${QUERY_STRING#set=}" > /data/value ;;
esac
echo "store has $(cat /data/value 2>/dev/null)"
"#;

/// A three-tier stack: `web` (published), `api` and `store` (internal ports only), each
/// a busybox httpd whose CGI script comes as a config (and whose health check reads its
/// own `/`); `store` keeps its data in a bind mount. `api` runs on p1 only, `web` and `store` anywhere else: every hop crosses hosts.
fn three_tiers(image: &str, data: &Path, published: u16) -> String {
    let serve = |script: &str, port: u16| {
        format!(
            r#"["sh", "-c", "mkdir -p /www/cgi-bin && echo ok > /www/index.html && cp /cfg/{script} /www/cgi-bin/{script} && chmod 555 /www/cgi-bin/{script} && exec httpd -f -p {port} -h /www"]
    healthcheck:
      test: ["CMD", "/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"]
      interval: 1s
      timeout: 1s
      retries: 3"#
        )
    };
    format!(
        r#"services:
  web:
    image: {image}
    command: {web}
    ports: ["{published}:8000"]
    configs: [{{source: front, target: /cfg/front}}]
    deploy:
      placement: {{constraints: [node.name != p1]}}
  api:
    image: {image}
    command: {api}
    expose: ["8080"]
    configs: [{{source: api, target: /cfg/api}}]
    deploy:
      placement: {{constraints: [node.name == p1]}}
  store:
    image: {image}
    command: {store}
    ports: ["7000"]
    volumes: ["{data}:/data"]
    configs: [{{source: kv, target: /cfg/kv}}]
    deploy:
      placement: {{constraints: [node.name != p1]}}
configs:
  front: {{file: ./front.sh}}
  api: {{file: ./api.sh}}
  kv: {{file: ./kv.sh}}
"#,
        web = serve("front", 8000),
        api = serve("api", 8080),
        store = serve("kv", 7000),
        data = data.display(),
    )
}

/// The node id each service of the stack runs on, from `stack ps`.
fn nodes_of(peer: &Peer) -> std::collections::BTreeMap<String, String> {
    let rows = peer
        .cli_ok(&["stack", "ps", "app", "--format", "json"])
        .unwrap_or_default();
    rows.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["desired_state"] == "running" && r["state"] == "running")
        .filter_map(|r| {
            let slot = r["slot"].as_str()?;
            let service = slot.rsplit_once('.').map_or(slot, |(s, _)| s);
            Some((service.to_owned(), r["node_id"].as_str()?.to_owned()))
        })
        .collect()
}

#[test]
fn a_three_tier_stack_finds_its_services_by_name_across_hosts_and_keeps_its_data() {
    if !knit_tests::is_root() {
        eprintln!("skipping: service discovery adds a local route, which needs root");
        return;
    }
    let Some(image) = images::busybox_image().expect("the test image") else {
        return;
    };
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").expect("three peers");
    let ids: Vec<String> = cluster
        .peers
        .iter()
        .map(|p| p.node_id().expect("node id"))
        .collect();
    let _cleanup = Cleanup(ids.clone());
    let dir = cluster.root().join("app");
    let data = cluster.root().join("store-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, script) in [("front.sh", FRONT), ("api.sh", API), ("kv.sh", STORE)] {
        std::fs::write(dir.join(name), script).unwrap();
    }
    let published = 18_000 + u16::try_from(std::process::id() % 1_000).unwrap();
    let file = dir.join("compose.yml");
    std::fs::write(&file, three_tiers(&image, &data, published)).unwrap();
    let (out, _) = deploy(&cluster.peers[0], &file);
    assert!(out.contains("created service app_store"), "{out}");

    // Every hop crosses hosts: api on p1, web and store elsewhere.
    let (placed, _) = wait_until(Duration::from_secs(90), "the three tiers to run", || {
        let nodes = nodes_of(&cluster.peers[1]);
        (nodes.len() == 3).then_some(nodes)
    })
    .expect("web, api and store run");
    assert_eq!(placed["app_api"], ids[1]);
    assert_ne!(placed["app_web"], ids[1]);
    assert_ne!(placed["app_store"], ids[1]);

    // The front end, through the ingress of p1, reaches api by name, which reaches store
    // by name, which writes.
    let ingress: Vec<SocketAddr> = cluster
        .peers
        .iter()
        .map(|p| SocketAddr::new(p.listen.ip(), published))
        .collect();
    let ask = |i: usize, query: &str| {
        knit_tests::http_get(
            ingress[i],
            &format!("/cgi-bin/front?{query}"),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| format!("error: {e:#}"))
    };
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        Duration::from_secs(60),
        "a write through the three tiers",
        || {
            let answer = ask(1, "set=kept-across-hosts");
            let done = answer.contains("front -> api -> store has kept-across-hosts");
            *last.borrow_mut() = answer;
            done.then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("front end -> api -> store by name: {e}; last answer: {last:?}"));

    // The store's host is lost (its peer and its containers): the store comes back on the
    // other host it may run on, with the data written before.
    let store_host = ids
        .iter()
        .position(|id| *id == placed["app_store"])
        .expect("the store's host is a peer");
    cluster.peers[store_host].lose_host();
    remove_containers(&format!("knit.node={}", ids[store_host]));
    let survivor = 3 - 1 - store_host; // the other of p0 and p2
    let (answer, took) = wait_until(
        Duration::from_secs(120),
        "the store to run again elsewhere, with its data",
        || {
            let nodes = nodes_of(&cluster.peers[1]);
            if nodes.get("app_store") != Some(&ids[survivor]) {
                return None;
            }
            let answer = ask(1, "");
            answer
                .contains("store has kept-across-hosts")
                .then_some(answer)
        },
    )
    .expect("the store heals on the surviving host and keeps its data");
    eprintln!(
        "store back on {} in {:.1} s: {answer}",
        cluster.peers[survivor].name,
        took.as_secs_f64()
    );
    assert_eq!(
        std::fs::read_to_string(data.join("value")).unwrap().trim(),
        "kept-across-hosts"
    );
    cluster.peers[1]
        .cli_ok(&["stack", "rm", "app"])
        .expect("stack rm");
}
