//! The docker driver's tests: the label, state and time mappings always; the driver against
//! the local engine when there is one. Engine tests skip with a message when Docker (or the
//! static busybox the test image is built from) is missing, and fail instead when
//! `KNIT_REQUIRE_DOCKER=1`. Each labels its containers with its own node name and removes
//! them all when it ends, also when it panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::{PortSpec, Protocol};

use super::*;

/// The one builder of the test image, shared with the end-to-end tests.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../tests/src/images.rs"]
mod images;

/// A node name of its own for one test; removes the node's containers on drop.
struct TestNode(String);

impl TestNode {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(format!("knit-test-{}-{n}", std::process::id()))
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let filter = format!("label={}={}", labels::NODE, self.0);
        let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// The driver, or `None` (after saying why) when this host has no engine.
async fn driver() -> Option<DockerDriver> {
    match DockerDriver::connect(
        std::net::IpAddr::from([127, 0, 0, 1]),
        &crate::tasks::Tasks::new(),
    )
    .await
    {
        Ok(driver) => Some(driver),
        Err(e) if !images::docker_required() => {
            eprintln!("skipping: {e} (set KNIT_REQUIRE_DOCKER=1 to fail instead)");
            None
        }
        Err(e) => panic!("{e}, and KNIT_REQUIRE_DOCKER=1"),
    }
}

/// The driver and the test image, or `None` when this host cannot have them.
async fn driver_and_image() -> Option<(DockerDriver, String)> {
    let driver = driver().await?;
    let image = tokio::task::spawn_blocking(images::busybox_image)
        .await
        .expect("the image builder panicked")
        .expect("the test image");
    Some((driver, image?))
}

fn launch(node: &str, slot: SlotId, image: &str, command: &[&str]) -> Launch {
    let mut spec = ServiceSpec::docker(&slot.service, image);
    spec.version = 7;
    spec.command = command.iter().map(|s| (*s).to_owned()).collect();
    spec.ports = vec![PortSpec {
        published: 80,
        target: images::BUSYBOX_HTTP_PORT,
        protocol: Protocol::Tcp,
        proxy_protocol: false,
    }];
    Launch {
        secrets: None,
        configs: None,
        directory: Default::default(),
        registry: None,
        slot,
        spec: Arc::new(spec),
        node: node.to_owned(),
    }
}

/// Polls `list` until `done` holds for what it returns; panics after `limit`.
async fn wait_list(
    driver: &DockerDriver,
    node: &TestNode,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Replica]) -> bool,
) -> Vec<Replica> {
    let started = Instant::now();
    loop {
        let replicas = driver.list(&node.0).await.expect("list");
        if done(&replicas) {
            return replicas;
        }
        assert!(
            started.elapsed() < limit,
            "no {what} within {limit:?}: {replicas:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status line of `GET /` on `127.0.0.1:port`, over plain HTTP/1.0.
fn http_status(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut head = [0_u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_replica_serves_turns_healthy_and_stops() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let slot = SlotId::replica("web", 3);
    let started = driver
        .start(&launch(&node.0, slot.clone(), &image, &[]))
        .await;
    let replica = started.expect("start");
    assert_eq!(replica.state, ReplicaState::Running);
    let host_port = replica.host_ports[&images::BUSYBOX_HTTP_PORT];
    let listed = driver.list(&node.0).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].runtime_id, replica.runtime_id);
    assert_eq!((&listed[0].slot, listed[0].spec_version), (&slot, 7));
    assert_eq!(listed[0].state, ReplicaState::Running);
    assert_eq!(listed[0].host_ports, BTreeMap::from([(8080, host_port)]));
    assert!(listed[0].started_at_ms > 1_600_000_000_000);

    let t0 = Instant::now();
    while http_status(host_port).is_none_or(|s| !s.contains(" 200 ")) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no HTTP 200 on {host_port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_list(
        &driver,
        &node,
        Duration::from_secs(10),
        "healthy replica",
        |r| r.len() == 1 && r[0].driver_health == Some(Health::Healthy),
    )
    .await;

    let id = &replica.runtime_id;
    let probe = |cmd: &[&str], limit| {
        let cmd: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        let driver = &driver;
        async move { driver.exec_probe(id, &cmd, limit).await.expect("exec") }
    };
    let second = Duration::from_secs(5);
    assert!(
        probe(
            &["/bin/wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
            second
        )
        .await
    );
    assert!(!probe(&["/bin/false"], second).await);
    assert!(!probe(&["/bin/sleep", "5"], Duration::from_millis(300)).await);

    driver.stop(id, Duration::from_secs(2)).await.expect("stop");
    assert_eq!(driver.list(&node.0).await.expect("list"), Vec::new());
    driver
        .stop(id, Duration::from_secs(2))
        .await
        .expect("a second stop");
}

#[tokio::test]
async fn a_missing_image_is_an_image_error() {
    let Some(driver) = driver().await else {
        return;
    };
    let node = TestNode::new();
    let launch = launch(
        &node.0,
        SlotId::replica("ghost", 1),
        "knit-test/absent:never",
        &[],
    );
    match driver.start(&launch).await {
        Err(DriverError::Image { image, detail }) => {
            assert_eq!(image, "knit-test/absent:never");
            assert!(
                detail.contains("not found locally and cannot be pulled"),
                "{detail}"
            );
            assert!(detail.contains("docker load"), "{detail}");
        }
        other => panic!("expected an image error, got {other:?}"),
    }
    assert_eq!(driver.list(&node.0).await.expect("list"), Vec::new());
}

#[tokio::test]
async fn exits_and_kills_show_in_list() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let global = SlotId::global("g", NodeId::new("0af3").expect("node id"));
    let runs = [
        (
            SlotId::replica("a", 1),
            "echo out-$PORT; echo err >&2; exec sleep 600",
        ),
        (SlotId::replica("a", 2), "exit 0"),
        (SlotId::replica("a", 3), "exit 3"),
        (global.clone(), "exec sleep 600"),
    ];
    let mut ids = Vec::new();
    for (slot, script) in &runs {
        let launch = launch(&node.0, slot.clone(), &image, &["/bin/sh", "-c", script]);
        ids.push(driver.start(&launch).await.expect("start").runtime_id);
    }
    let broken = launch(
        &node.0,
        SlotId::replica("a", 4),
        &image,
        &["/no/such/program"],
    );
    match driver.start(&broken).await {
        Err(DriverError::Failed(why)) => assert!(why.contains("no/such/program"), "{why}"),
        other => panic!("expected a start failure, got {other:?}"),
    }
    let logs_ready = || async { driver.logs(&ids[0], 10).await.expect("logs") };
    let t0 = Instant::now();
    while !logs_ready().await.contains("err") {
        assert!(t0.elapsed() < Duration::from_secs(5), "no logs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logs_ready().await.contains("out-8080"), "PORT is set");
    driver
        .docker
        .kill_container(&ids[0], None)
        .await
        .expect("kill");

    let settled = |r: &[Replica]| {
        r.len() == 4
            && r.iter()
                .filter(|r| r.state == ReplicaState::Running)
                .count()
                == 1
    };
    let listed = wait_list(&driver, &node, Duration::from_secs(10), "exits", settled).await;
    let by_slot: BTreeMap<String, &Replica> =
        listed.iter().map(|r| (r.slot.to_string(), r)).collect();
    let a1 = by_slot["a.1"];
    assert_eq!((a1.state, a1.exit_code), (ReplicaState::Failed, Some(137)));
    assert_eq!(a1.error.as_deref(), Some("exit code 137"));
    let a2 = by_slot["a.2"];
    assert_eq!(
        (a2.state, a2.exit_code, &a2.error),
        (ReplicaState::Exited, Some(0), &None)
    );
    let a3 = by_slot["a.3"];
    assert_eq!(
        (a3.state, a3.error.as_deref()),
        (ReplicaState::Failed, Some("exit code 3"))
    );
    let g = by_slot["g.0af3"];
    assert_eq!((&g.slot, g.state), (&global, ReplicaState::Running));
}

#[test]
fn slots_read_back_from_labels() {
    let tags = |service: &str, slot: &str| {
        HashMap::from([
            (labels::SERVICE.to_owned(), service.to_owned()),
            (labels::SLOT.to_owned(), slot.to_owned()),
        ])
    };
    assert_eq!(
        slot_from(&tags("blog", "blog.3")),
        Ok(SlotId::replica("blog", 3))
    );
    let node = NodeId::new("0af3").expect("node id");
    assert_eq!(
        slot_from(&tags("a.b", "a.b.0af3")),
        Ok(SlotId::global("a.b", node))
    );
    assert!(slot_from(&tags("blog", "web.3")).is_err());
    assert!(slot_from(&tags("blog", "blog.")).is_err());
    assert!(slot_from(&HashMap::new()).is_err());
}

#[test]
fn docker_times_read_as_epoch_ms() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
    assert_eq!(
        rfc3339_ms("2024-05-07T21:09:36.123456789Z"),
        Some(1_715_116_176_123)
    );
    assert_eq!(rfc3339_ms("2024-05-07T21:09:36Z"), Some(1_715_116_176_000));
    assert_eq!(rfc3339_ms("0001-01-01T00:00:00Z"), None);
    assert_eq!(rfc3339_ms("yesterday"), None);
}

#[test]
fn container_states_map_to_replica_states() {
    use ContainerStateStatusEnum as S;
    let state = |status, code, oom, error: &str| ContainerState {
        status: Some(status),
        exit_code: Some(code),
        oom_killed: Some(oom),
        error: Some(error.to_owned()),
        ..Default::default()
    };
    let run = state_of(&state(S::RUNNING, 0, false, ""));
    assert_eq!(run, (ReplicaState::Running, None, None));
    assert_eq!(
        state_of(&state(S::CREATED, 0, false, "")).0,
        ReplicaState::Starting
    );
    assert_eq!(
        state_of(&state(S::RESTARTING, 0, false, "")).0,
        ReplicaState::Starting
    );
    let not_found = state_of(&state(S::CREATED, 127, false, "exec: \"x\": not found"));
    assert_eq!(not_found.0, ReplicaState::Failed);
    assert_eq!(
        state_of(&state(S::EXITED, 0, false, "")),
        (ReplicaState::Exited, Some(0), None)
    );
    let oom = state_of(&state(S::EXITED, 137, true, ""));
    assert_eq!((oom.0, oom.1), (ReplicaState::Failed, Some(137)));
    assert!(oom.2.is_some_and(|e| e.contains("OOM")));
    assert_eq!(
        state_of(&state(S::DEAD, 1, false, "")).0,
        ReplicaState::Failed
    );
}

#[test]
fn entrypoints_secrets_and_configs_reach_the_container_body() {
    let mut launch = launch("n1", SlotId::replica("web", 1), "img", &["-c", "run"]);
    let spec = Arc::make_mut(&mut launch.spec);
    spec.entrypoint = vec!["/bin/sh".into()];
    spec.configs = vec![
        "source=site,target=/etc/app/app.conf".parse().unwrap(),
        "index".parse().unwrap(),
    ];
    launch.secrets = Some("/dev/shm/knit/n1/web.1@1".into());
    launch.configs = Some("/dev/shm/knit/configs/n1/web.1@1".into());
    let body = container_body(&launch, "img", std::net::IpAddr::from([127, 0, 0, 7]));
    assert_eq!(body.entrypoint, Some(vec!["/bin/sh".to_owned()]));
    assert_eq!(body.cmd, Some(vec!["-c".to_owned(), "run".to_owned()]));
    let mounts: Vec<(String, String, bool)> = body
        .host_config
        .and_then(|h| h.mounts)
        .expect("mounts")
        .into_iter()
        .map(|m| {
            (
                m.source.unwrap_or_default(),
                m.target.unwrap_or_default(),
                m.read_only == Some(true),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            (
                "/dev/shm/knit/n1/web.1@1".to_owned(),
                "/run/secrets".to_owned(),
                true
            ),
            (
                "/dev/shm/knit/configs/n1/web.1@1/etc/app/app.conf".to_owned(),
                "/etc/app/app.conf".to_owned(),
                true
            ),
            (
                "/dev/shm/knit/configs/n1/web.1@1/index".to_owned(),
                "/index".to_owned(),
                true
            ),
        ]
    );
}

#[test]
fn the_container_body_has_labels_ports_env_and_limits() {
    let mut launch = launch("n1", SlotId::replica("web", 2), "img", &["/bin/app"]);
    let spec = Arc::make_mut(&mut launch.spec);
    spec.args = vec!["--fast".into()];
    spec.limits.cpu_millis = 500;
    spec.limits.memory_bytes = 64 << 20;
    spec.stop_signal = Some("SIGQUIT".into());
    spec.no_healthcheck = true;
    let body = container_body(&launch, "img", std::net::IpAddr::from([127, 0, 0, 7]));
    assert_eq!(body.stop_signal.as_deref(), Some("SIGQUIT"));
    let check = body.healthcheck.as_ref().and_then(|h| h.test.clone());
    assert_eq!(
        check,
        Some(vec!["NONE".to_owned()]),
        "the image's HEALTHCHECK is off"
    );
    let tags = body.labels.expect("labels");
    assert_eq!(tags[labels::SLOT], "web.2");
    assert_eq!(
        (
            tags[labels::SPEC_VERSION].as_str(),
            tags[labels::NODE].as_str()
        ),
        ("7", "n1")
    );
    assert_eq!(
        body.cmd,
        Some(vec!["/bin/app".to_owned(), "--fast".to_owned()])
    );
    assert!(body.env.expect("env").contains(&"PORT=8080".to_owned()));
    assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_owned()]));
    let host = body.host_config.expect("host config");
    assert_eq!(
        (host.nano_cpus, host.memory),
        (Some(500_000_000), Some(64 << 20))
    );
    let restart = host.restart_policy.and_then(|p| p.name);
    assert_eq!(restart, Some(RestartPolicyNameEnum::NO));
    // Published on the peer's own address only, never on every interface.
    let bindings = host.port_bindings.expect("port bindings");
    let ips: Vec<Option<String>> = bindings
        .values()
        .flatten()
        .flatten()
        .map(|b| b.host_ip.clone())
        .collect();
    assert_eq!(ips, vec![Some("127.0.0.7".to_owned())]);
    let logs = host.log_config.expect("log config");
    assert_eq!(logs.typ.as_deref(), Some("json-file"));
    let logs = logs.config.expect("log options");
    assert_eq!(
        (logs["max-size"].as_str(), logs["max-file"].as_str()),
        ("10240k", "3")
    );
    assert_eq!(
        (host.dns, host.dns_search),
        (None, None),
        "with discovery off, the host's resolvers"
    );
    assert_eq!(image_reference("busybox"), "busybox:latest");
    assert_eq!(
        image_reference("localhost:5000/app"),
        "localhost:5000/app:latest"
    );
    assert_eq!(image_reference("app:v2"), "app:v2");
}

#[test]
fn containers_resolve_through_the_peer_and_a_stack_searches_its_own_domain() {
    let mut launch = launch("n1", SlotId::replica("app_api", 1), "img", &[]);
    let vips = std::collections::BTreeMap::from([(
        "app_api".to_owned(),
        std::net::Ipv4Addr::new(10, 213, 0, 9),
    )]);
    let specs = std::collections::BTreeMap::new();
    let dns = std::net::Ipv4Addr::new(10, 213, 0, 1);
    launch.directory = Arc::new(crate::discovery::Directory::new(Some(dns), &vips, &specs));
    let body = container_body(&launch, "img", std::net::IpAddr::from([127, 0, 0, 7]));
    let host = body.host_config.expect("host config");
    assert_eq!(host.dns, Some(vec!["10.213.0.1".to_owned()]));
    assert_eq!(host.dns_search, None, "not a stack's");
    Arc::make_mut(&mut launch.spec).labels.insert(
        crate::discovery::directory::STACK_LABEL.to_owned(),
        "app".to_owned(),
    );
    let body = container_body(&launch, "img", std::net::IpAddr::from([127, 0, 0, 7]));
    let host = body.host_config.expect("host config");
    assert_eq!(host.dns_search, Some(vec!["app.knit".to_owned()]));
}

#[tokio::test]
async fn the_event_stream_wakes_the_agent_and_spares_the_engine() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let mut ids = Vec::new();
    for i in 1..=4 {
        let slot = SlotId::replica("ev", i);
        let launch = launch(&node.0, slot, &image, &["/bin/sh", "-c", "exec sleep 600"]);
        ids.push(driver.start(&launch).await.expect("start").runtime_id);
    }
    // Once the stream is up and the starts' events are drained, a list inspects nothing.
    let t0 = Instant::now();
    loop {
        let before = driver.inspects();
        let listed = driver.list(&node.0).await.expect("list");
        if listed.len() == 4 && driver.inspects() == before {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "every list still inspects: is the event stream up?"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = driver.inspects();
    for _ in 0..10 {
        assert_eq!(driver.list(&node.0).await.expect("list").len(), 4);
    }
    let spent = driver.inspects() - before;
    assert!(
        spent <= 4,
        "10 quiet lists inspected {spent} containers (at most one full list of 4 allowed)"
    );
    // A container killed behind the driver's back wakes the agent, and the next list
    // shows it, whatever the resync interval.
    let changed = driver.changed();
    let _ = tokio::time::timeout(Duration::from_millis(50), changed.notified()).await;
    driver
        .docker
        .kill_container(&ids[0], None)
        .await
        .expect("kill");
    tokio::time::timeout(Duration::from_secs(5), changed.notified())
        .await
        .expect("an event about the killed container within 5 s");
    let t1 = Instant::now();
    loop {
        let listed = driver.list(&node.0).await.expect("list");
        let killed = listed
            .iter()
            .find(|r| r.runtime_id == ids[0])
            .expect("listed");
        if killed.state == ReplicaState::Failed {
            assert_eq!(killed.exit_code, Some(137));
            break;
        }
        // The "die" event may trail the "kill" one by a moment.
        assert!(
            t1.elapsed() < watch::RESYNC,
            "the killed container still shows {:?}",
            killed.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids {
        driver.stop(id, Duration::from_secs(1)).await.expect("stop");
    }
    assert!(driver.list(&node.0).await.expect("list").is_empty());
}

#[test]
fn cpu_time_reads_from_cgroups_v1_and_v2() {
    let root = std::env::temp_dir().join(format!("knit-cgroup-{}", std::process::id()));
    let id = "0123abcd";
    let v1 = root.join("v1/cpuacct/docker").join(id);
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::write(v1.join("cpuacct.usage"), "123456789\n").unwrap();
    assert_eq!(cgroup_cpu_ns(&root.join("v1"), id), Some(123_456_789));
    let v2 = root
        .join("v2/system.slice")
        .join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("cpu.stat"), "usage_usec 42\nuser_usec 40\n").unwrap();
    assert_eq!(cgroup_cpu_ns(&root.join("v2"), id), Some(42_000));
    assert_eq!(
        cgroup_cpu_ns(&root.join("v2"), "feed"),
        None,
        "another container"
    );
    assert_eq!(cgroup_cpu_ns(&root.join("v2"), "../x"), None, "not an id");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_busy_container_s_cpu_time_grows_whichever_way_it_is_read() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let slot = SlotId::replica("busy", 1);
    let busy = launch(
        &node.0,
        slot,
        &image,
        &["/bin/sh", "-c", "while :; do :; done"],
    );
    let id = driver.start(&busy).await.expect("start").runtime_id;
    let first = driver.cpu_time_ns(&id).await.expect("a CPU time");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = driver.cpu_time_ns(&id).await.expect("a CPU time");
    assert!(second > first, "{first} then {second}");
    if let Some(from_cgroup) = cgroup_cpu_ns(Path::new(CGROUP_ROOT), &id) {
        assert!(from_cgroup >= second, "the counter only grows");
    } else {
        eprintln!("no cgroup of the container on this host: the engine's stats were used");
    }
    driver
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("stop");
}

#[test]
fn docker_host_names_the_engine_socket_as_the_docker_cli_reads_it() {
    use super::engine_socket;
    assert_eq!(engine_socket(None).unwrap(), "/var/run/docker.sock");
    assert_eq!(engine_socket(Some("")).unwrap(), "/var/run/docker.sock");
    assert_eq!(
        engine_socket(Some("unix:///run/user/1000/docker.sock")).unwrap(),
        "/run/user/1000/docker.sock"
    );
    for unsupported in ["tcp://10.0.0.1:2375", "ssh://me@host", "unix://"] {
        let e = engine_socket(Some(unsupported)).unwrap_err().to_string();
        assert!(e.contains("Unix socket only"), "{unsupported}: {e}");
    }
}

/// Removes a named volume when the test ends (after its containers, dropped first).
struct TestVolume(String);

impl Drop for TestVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test]
async fn mounts_reach_the_container_as_asked() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let volume = TestVolume(format!("knit-test-vol-{}", std::process::id()));
    let node = TestNode::new();
    let host = std::env::temp_dir().join(format!("knit-mounts-{}", std::process::id()));
    let (input, output) = (host.join("in"), host.join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(input.join("greeting"), "hello from the host").unwrap();
    let script = "cat /in/greeting > /out/copied; \
        (touch /in/nope 2>/dev/null && echo writable || echo readonly) > /out/in; \
        grep ' /scratch ' /proc/mounts | cut -d' ' -f3 > /out/scratch; \
        echo kept > /data/v && cat /data/v > /out/volume; sleep 600";
    let mut launch = launch(
        &node.0,
        SlotId::replica("m", 1),
        &image,
        &["/bin/sh", "-c", script],
    );
    let spec = Arc::make_mut(&mut launch.spec);
    spec.mounts = [
        format!("type=bind,source={},target=/in,readonly", input.display()),
        format!("type=bind,source={},target=/out", output.display()),
        format!("type=volume,source={},target=/data", volume.0),
        "type=tmpfs,target=/scratch".to_owned(),
    ]
    .iter()
    .map(|m| m.parse().expect("a mount"))
    .collect();
    driver.start(&launch).await.expect("start");
    let started = Instant::now();
    // The shell creates the file before `cat` fills it: wait for its line.
    while !std::fs::read_to_string(output.join("volume")).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replica wrote nothing to its bind mount"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read = |name: &str| {
        std::fs::read_to_string(output.join(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(read("copied"), "hello from the host");
    assert_eq!(read("in"), "readonly");
    assert_eq!(read("scratch"), "tmpfs");
    assert_eq!(read("volume"), "kept");
    assert!(!input.join("nope").exists());
    let labels = std::process::Command::new("docker")
        .args([
            "volume",
            "inspect",
            "--format",
            "{{index .Labels \"knit.service\"}}",
            &volume.0,
        ])
        .output()
        .expect("docker volume inspect");
    assert_eq!(String::from_utf8_lossy(&labels.stdout).trim(), "m");
    drop(node);
    let _ = std::fs::remove_dir_all(&host);
}

#[tokio::test]
async fn logs_are_read_with_tail_and_followed_until_the_reader_goes() {
    let Some((driver, image)) = driver_and_image().await else {
        return;
    };
    let node = TestNode::new();
    let script = "i=0; while :; do i=$((i+1)); echo n-$i; sleep 0.1; done";
    let launch = launch(
        &node.0,
        SlotId::replica("chatty", 1),
        &image,
        &["/bin/sh", "-c", script],
    );
    let id = driver.start(&launch).await.expect("start").runtime_id;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let query = |tail, follow| crate::driver::output::LogQuery {
        tail,
        since_ms: None,
        follow,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    driver
        .stream_logs(&id, query(Some(2), false), &tx)
        .await
        .expect("logs");
    drop(tx);
    let mut tail = Vec::new();
    while let Some(line) = rx.recv().await {
        tail.push(line);
    }
    assert_eq!(tail.len(), 2, "{tail:?}");
    assert!(tail.iter().all(|l| l.text.starts_with("n-")), "{tail:?}");
    let now = crate::clock::now_ms();
    assert!(
        tail.iter().all(|l| l.time_ms.abs_diff(now) < 5_000),
        "{tail:?}"
    );

    // Following: a new line within a second, and the read ends once the reader goes.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let follow = tokio::spawn({
        let driver = DockerDriver::connect(
            std::net::IpAddr::from([127, 0, 0, 1]),
            &crate::tasks::Tasks::new(),
        )
        .await
        .expect("a second client");
        let id = id.clone();
        async move { driver.stream_logs(&id, query(Some(0), true), &tx).await }
    });
    let first = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("a followed line within 1 s")
        .expect("a line");
    assert!(first.text.starts_with("n-"), "{first:?}");
    drop(rx);
    tokio::time::timeout(Duration::from_secs(2), follow)
        .await
        .expect("the follow ends when its reader goes")
        .expect("the follow task")
        .expect("the follow");
}

#[path = "prepared_tests.rs"]
mod prepared_tests;
