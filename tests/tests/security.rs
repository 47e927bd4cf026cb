//! Trust boundaries, end to end: only the operator commands the cluster (a root-only
//! socket, or mutual TLS on TCP), requests for another host name are refused, replicas
//! get nothing of the peer's, and joins take the current token only.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, is_root, knit_bin, run_bounded, wait_until};

/// Runs `program args` as the user `nobody` (uid and gid 65534, no other groups).
fn as_nobody(program: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ])
    .args(args);
    knit_tests::clear_knit_env(&mut cmd);
    run_bounded(&mut cmd, Duration::from_secs(20)).expect("setpriv runs")
}

/// The status `curl` printed for `args`.
fn curl_status(args: &[&str]) -> String {
    knit_tests::curl_status(args).expect("curl runs")
}

#[test]
fn only_root_commands_the_cluster_through_its_socket() {
    if !is_root() {
        eprintln!("SKIPPED: switching to another user needs root");
        return;
    }
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").expect("a peer");
    let peer = &cluster.peers[0];
    let socket = peer.api.to_str().expect("a UTF-8 path");
    let knit = knit_bin();
    let knit = knit.to_str().expect("a UTF-8 path");

    // Another user gets nothing: neither the token, nor a service, nor the token file.
    let out = as_nobody(knit, &["--api", socket, "token"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody read the token");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("knit"), "{err}");
    let out = as_nobody(
        knit,
        &[
            "--api", socket, "service", "create", "--name", "x", "--driver", "process", "--", "id",
        ],
    );
    assert!(!out.status.success(), "nobody created a service");
    let token_file = peer.data_dir.join("join-token");
    let out = as_nobody("cat", &[token_file.to_str().expect("a UTF-8 path")]);
    assert!(
        !out.status.success(),
        "nobody read {}",
        token_file.display()
    );
    assert!(peer.services().expect("service ls").is_empty());
    let mode = std::fs::metadata(&peer.data_dir)
        .expect("the data dir")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o007,
        0,
        "the data dir is closed to others: {mode:o}"
    );

    // Root does, through the socket; the token is not in the peer's output.
    let token = peer.cli_ok(&["token"]).expect("knit token");
    assert!(token.trim().starts_with("KNIT-1-"), "{token}");
    assert!(
        !peer.log().contains(token.trim()),
        "the token is in the log"
    );

    // A request for another host's name is refused (DNS rebinding), on both listeners.
    let evil = ["-H", "Host: evil.example"];
    let on_socket = |extra: &[&str], path: &str| {
        let url = format!("http://localhost{path}");
        let mut args = vec!["--unix-socket", socket];
        args.extend_from_slice(extra);
        args.push(&url);
        curl_status(&args)
    };
    assert_eq!(on_socket(&[], "/v1/nodes"), "200");
    assert_eq!(on_socket(&evil, "/v1/nodes"), "403");
    assert_eq!(on_socket(&evil, "/v1/token"), "403");
    let metrics = format!("http://{}", peer.metrics);
    assert_eq!(curl_status(&[&format!("{metrics}/metrics")]), "200");
    assert_eq!(curl_status(&[&format!("{metrics}/healthz")]), "200");
    assert_eq!(
        curl_status(&[evil[0], evil[1], &format!("{metrics}/metrics")]),
        "403"
    );
    // Each listener serves its own routes only.
    assert_eq!(curl_status(&[&format!("{metrics}/v1/token")]), "404");
    assert_eq!(on_socket(&[], "/metrics"), "404");
}

#[test]
fn a_tcp_api_takes_only_client_certificates_from_the_cluster() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::new("fast").expect("a cluster layout");
    cluster.add_unstarted();
    let ip = cluster.peers[0].listen.ip();
    let tcp = format!("{ip}:7949");
    cluster.peers[0]
        .start_with(None, None, &["--api", &format!("tcp://{tcp}")])
        .expect("a peer with a TCP API");
    cluster.wait_all_alive(Duration::from_secs(30)).expect("up");
    let peer = &cluster.peers[0];
    let alice = cluster.root().join("alice");
    let alice_dir = alice.to_str().expect("a UTF-8 path");
    let said = peer
        .cli_ok(&["client-cert", "--name", "alice", "--out", alice_dir])
        .expect("client-cert");
    assert!(said.contains("--tls-dir"), "{said}");
    let key_mode = std::fs::metadata(alice.join("key.pem"))
        .expect("key.pem")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let remote = |args: &[&str]| {
        let mut cmd = Command::new(knit_bin());
        knit_tests::clear_knit_env(&mut cmd)
            .args(["--api", &tcp])
            .args(args);
        run_bounded(&mut cmd, Duration::from_secs(20)).expect("knit runs")
    };
    // With the certificate: the API answers over TCP.
    let out = remote(&["--tls-dir", alice_dir, "node", "ls", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One object per line.
    let rows: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("json");
    assert_eq!(rows.len(), 1);
    // Plain HTTP to the TLS port gets nothing.
    let out = remote(&["--api-insecure", "node", "ls"]);
    assert!(!out.status.success(), "plain HTTP was served");

    // Without a client certificate the TLS handshake fails; with it, it works; a
    // certificate from another CA fails too.
    let ca = alice.join("ca.pem");
    let resolve = format!("node.knit:7949:{ip}");
    let url = "https://node.knit:7949/v1/nodes";
    let base = [
        "--cacert",
        ca.to_str().expect("path"),
        "--resolve",
        &resolve,
    ];
    assert_eq!(curl_status(&[&base[..], &[url]].concat()), "000");
    let (cert, key) = (alice.join("cert.pem"), alice.join("key.pem"));
    let with_cert = [
        "--cert",
        cert.to_str().expect("path"),
        "--key",
        key.to_str().expect("path"),
    ];
    assert_eq!(
        curl_status(&[&base[..], &with_cert, &[url]].concat()),
        "200"
    );
    assert_eq!(
        curl_status(&[&base[..], &with_cert, &["-H", "Host: evil.example", url]].concat()),
        "403"
    );
    let stranger = cluster.root().join("stranger");
    std::fs::create_dir_all(&stranger).expect("a folder");
    let made = run_bounded(
        Command::new("openssl")
            .current_dir(&stranger)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1",
            ])
            .args(["-subj", "/CN=stranger"]),
        Duration::from_secs(20),
    )
    .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert, key) = (stranger.join("cert.pem"), stranger.join("key.pem"));
    let stranger_cert = [
        "--cert",
        cert.to_str().expect("path"),
        "--key",
        key.to_str().expect("path"),
    ];
    assert_eq!(
        curl_status(&[&base[..], &stranger_cert, &[url]].concat()),
        "000"
    );
}

#[test]
fn process_replicas_run_unprivileged_and_see_nothing_of_the_peer() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::new("fast").expect("a cluster layout");
    cluster.add_unstarted();
    cluster.peers[0].env = vec![
        ("KNIT_REGISTRY_PASSWORD".into(), "hunter2-secret".into()),
        ("KNIT_LABELS".into(), "zone=a".into()),
    ];
    cluster.start_peer(0).expect("p0");
    cluster.add_unstarted();
    cluster.peers[1].process_driver = false;
    cluster.start_peer(1).expect("p1");
    cluster.wait_all_alive(Duration::from_secs(30)).expect("up");

    let out = cluster.root().join("env");
    let script = format!(
        "{{ env; echo uid=$(id -u); }} > {}/$TASK_SLOT.tmp && mv {}/$TASK_SLOT.tmp {}/$TASK_SLOT; exec sleep 600",
        out.display(),
        out.display(),
        out.display()
    );
    std::fs::create_dir_all(&out).expect("a folder");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    cluster.peers[1]
        .cli_ok(&[
            "service",
            "create",
            "--name",
            "probe",
            "--driver",
            "process",
            "--replicas",
            "2",
            "-e",
            "GREETING=hi",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .expect("create through the peer without the driver: p0 runs it");
    let (files, _) = wait_until(
        Duration::from_secs(30),
        "both replicas' environments",
        || {
            let files: Vec<String> = ["probe.1", "probe.2"]
                .iter()
                .filter_map(|slot| std::fs::read_to_string(out.join(slot)).ok())
                .collect();
            (files.len() == 2).then_some(files)
        },
    )
    .expect("replicas ran");
    for env in &files {
        // knit's own variables for replicas (services' addresses) are not the peer's.
        let foreign: Vec<&str> = env
            .lines()
            .filter(|l| l.contains("KNIT_"))
            .filter(|l| {
                let name = l.split('=').next().unwrap_or_default();
                !(name.starts_with("KNIT_SERVICE_") && name.ends_with("_ADDR"))
            })
            .collect();
        assert!(
            foreign.is_empty(),
            "a KNIT_ variable of the peer reached a replica:\n{env}"
        );
        assert!(
            !env.contains("hunter2"),
            "the peer's secret reached a replica:\n{env}"
        );
        assert!(env.contains("GREETING=hi"), "{env}");
        assert!(env.contains("TASK_SLOT=probe."), "{env}");
        if is_root() {
            assert!(env.contains("uid=65534"), "not run as nobody:\n{env}");
        }
    }
    // Both ran on p0: p1 has no process driver.
    let p0 = cluster.peers[0].node_id().expect("id");
    let tasks: Vec<serde_json::Value> = cluster.peers[0]
        .cli_json(&["service", "ps", "probe"])
        .expect("ps");
    assert!(
        tasks.iter().all(|t| t["node_id"] == p0.as_str()),
        "{tasks:?}"
    );

    // With the driver off everywhere, a process service is refused at create, naming the flag.
    cluster.peers[0].kill9();
    cluster.peers[0].kill_replicas();
    wait_until(Duration::from_secs(30), "p0 down on p1", || {
        cluster.peers[1]
            .nodes()
            .ok()
            .filter(|rows| rows.iter().any(|r| r.id == p0 && r.state == "down"))
    })
    .expect("p0 seen down");
    let out = cluster.peers[1]
        .cli(&[
            "service", "create", "--name", "x", "--driver", "process", "--", "true",
        ])
        .expect("knit runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a process service was accepted");
    assert!(err.contains("--enable-process-driver"), "{err}");
}

#[test]
fn joins_get_a_fresh_identity_and_only_the_current_token() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(2, "fast").expect("2 peers");
    let old = cluster.token().expect("a token").to_owned();
    let p0 = cluster.peers[0].node_id().expect("id");

    // A joiner whose data dir carries a live member's node id is still given a fresh one.
    let i = cluster.add_unstarted();
    std::fs::create_dir_all(&cluster.peers[i].data_dir).expect("a data dir");
    std::fs::write(cluster.peers[i].data_dir.join("node-id"), format!("{p0}\n")).expect("write");
    cluster.start_peer(i).expect("p2 joins");
    // The node-id file holds p0's id until the join writes the one the seed chose.
    let (p2, _) = wait_until(Duration::from_secs(30), "p2's own node id", || {
        let id = cluster.peers[i].node_id().ok()?;
        (id != p0 && cluster.peers[i].data_dir.join("credentials.json").exists()).then_some(id)
    })
    .expect("p2 was admitted with an id of its own");
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("3 alive");
    assert_ne!(p2, p0, "a join took a live member's id");
    assert_eq!(cluster.peers[1].nodes().expect("node ls").len(), 3);

    // Rotate through p0; p1 refuses the old token within seconds, and admits the new one.
    let new = cluster.peers[0]
        .cli_ok(&["token", "rotate"])
        .expect("rotate");
    let new = new.trim().to_owned();
    assert!(new.starts_with("KNIT-1-") && new != old, "{new}");
    wait_until(Duration::from_secs(20), "the new token on p1", || {
        let on_p1 = cluster.peers[1].cli_ok(&["token"]).ok()?;
        (on_p1.trim() == new).then_some(())
    })
    .expect("rotation spread");
    let seed = cluster.peers[1].listen;
    let stale = cluster.add_unstarted();
    cluster.peers[stale]
        .start(Some(seed), Some(&old))
        .expect("start");
    wait_until(Duration::from_secs(20), "the old token refused", || {
        (!cluster.peers[stale].is_running()).then_some(())
    })
    .expect("a joiner with the old token gives up");
    cluster.peers[stale].kill9();
    let log = cluster.peers[stale].log();
    assert!(log.contains("wrong join token"), "{log}");
    cluster.peers[stale]
        .start(Some(seed), Some(&new))
        .expect("start");
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("4 alive");
    // The token file follows the rotation on every member.
    for peer in &cluster.peers[..2] {
        let file = std::fs::read_to_string(peer.data_dir.join("join-token")).expect("token file");
        assert_eq!(file.trim(), new, "{}", peer.name);
    }
}

#[test]
fn a_forged_record_reaches_no_other_member_and_is_counted() {
    use knit_mesh::store::{Delta, Stamp, Store, owned_key};

    let _lock = cluster_lock();
    let mut cluster = Cluster::start(3, "fast").expect("3 peers");
    let p0: knit_mesh::NodeId = cluster.peers[0].node_id().expect("id").parse().expect("id");
    cluster.peers[0]
        .cli_ok(&[
            "service",
            "create",
            "--driver",
            "process",
            "--name",
            "real",
            "--replicas",
            "0",
            "--",
            "true",
        ])
        .expect("a real service");
    wait_until(Duration::from_secs(20), "the spec on p2", || {
        cluster.peers[2].spec("real").ok().flatten()
    })
    .expect("spread");

    // p2 turns rogue: its persisted state gets records that claim p0 wrote them.
    cluster.peers[2]
        .terminate(Duration::from_secs(10))
        .expect("p2 stops");
    let state = cluster.peers[2].data_dir.join("state.bin");
    let mut store = Store::decode(&std::fs::read(&state).expect("state.bin")).expect("decodes");
    let info_key = owned_key(&p0, "info");
    let mut info: serde_json::Value =
        serde_json::from_slice(store.get(&info_key).expect("p0's info")).expect("json");
    info["name"] = serde_json::json!("forged");
    let spec: serde_json::Value = serde_json::from_str(
        &cluster.peers[0]
            .api_get("/v1/services/real", Duration::from_secs(5))
            .expect("spec"),
    )
    .expect("json");
    let mut evil = spec.clone();
    evil["name"] = serde_json::json!("evil");
    let now = knit_tests::wall_ms();
    for (key, value) in [
        (info_key.clone(), info.to_string()),
        ("svc/evil".to_owned(), evil.to_string()),
    ] {
        let forged = Delta {
            key,
            stamp: Stamp {
                clock: now << 16,
                writer: p0,
            },
            value: Some(value.into_bytes()),
            sig: vec![7; 64],
        };
        store
            .merge(forged, now, 60_000)
            .expect("a plain store takes it");
    }
    std::fs::write(&state, store.encode().expect("encodes")).expect("write state.bin");
    cluster.peers[2].start(None, None).expect("p2 restarts");
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("3 alive");

    // The others refuse them, count them, and never show them.
    let refused = |i: usize| {
        let text = cluster.peers[i].metrics_text(Duration::from_secs(5)).ok()?;
        text.lines()
            .find(|l| l.starts_with("knit_state_deltas_refused_total{reason=\"signature\"}"))?
            .rsplit(' ')
            .next()?
            .parse::<f64>()
            .ok()
    };
    wait_until(
        Duration::from_secs(30),
        "refusals counted on p0 and p1",
        || (refused(0)? >= 1.0 && refused(1)? >= 1.0).then_some(()),
    )
    .expect("the forged records were refused");
    for i in 0..2 {
        let peer = &cluster.peers[i];
        assert!(
            peer.spec("evil").expect("inspect").is_none(),
            "{} took svc/evil",
            peer.name
        );
        let rows = peer.nodes().expect("node ls");
        assert!(
            rows.iter().all(|r| r.name != "forged"),
            "{} took the forged info",
            peer.name
        );
    }
}
