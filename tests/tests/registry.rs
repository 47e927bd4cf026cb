//! Registry credentials, once for the whole cluster: `knit login` on one peer, and a
//! docker service placed on another peer pulls its image with them.
//!
//! No registry image is needed: the test runs a tiny fake registry on 127.0.0.1 (the
//! Docker engine pulls from loopback over plain HTTP, an insecure registry by default)
//! that answers `GET /v2/` and everything else with 401 and a Basic challenge unless the
//! request carries the expected `Authorization`, and then with "manifest unknown". It
//! records what the engine sent. The pull fails at the manifest, as it should: what
//! matters is that the engine of the other host sent alice's credentials, that
//! `service ps` says the pull failed, and that no peer's `state.bin` or log holds the
//! password.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knit_tests::{Cluster, clear_knit_env, cluster_lock, images, knit_bin, wait_until};

const USER: &str = "alice";
const PASSWORD: &str = "pw-7f3a-correct-horse";
/// The most bytes of one request's head the fake registry reads.
const HEAD_MAX_BYTES: usize = 16 * 1024;

/// What the fake registry saw: each request's line and its `Authorization`, if any.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A fake registry on 127.0.0.1, served by a thread until dropped.
struct FakeRegistry {
    port: u16,
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    fn start(expected: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("its address").port();
        let seen = Seen::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &expected, &seen2),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one connection: 401 with a Basic challenge without the expected credentials,
/// else 200 for `/v2/` and "manifest unknown" for the rest. A TLS hello (the engine tries
/// HTTPS first) is not HTTP: the connection is closed.
fn answer(mut stream: TcpStream, expected: &str, seen: &Seen) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_MAX_BYTES {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if !head.is_empty() && !head[0].is_ascii_uppercase() {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_owned();
    let auth = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    let authorized = auth.as_deref() == Some(expected);
    if let Ok(mut seen) = seen.lock() {
        seen.push((line.clone(), auth));
    }
    let path = line.split_whitespace().nth(1).unwrap_or_default();
    let response = if !authorized {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\n\
         Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
            .to_owned()
    } else if path == "/v2/" {
        "HTTP/1.1 200 OK\r\nDocker-Distribution-API-Version: registry/2.0\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{}"
            .to_owned()
    } else {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
             Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = stream.write_all(response.as_bytes());
}

/// Whether this host has a Docker engine; fails under `KNIT_REQUIRE_DOCKER=1` without one.
fn docker_here() -> bool {
    let ok = knit_tests::run_bounded(
        Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
        Duration::from_secs(20),
    )
    .is_ok_and(|out| out.status.success());
    if !ok {
        assert!(
            !images::docker_required(),
            "no Docker engine, and KNIT_REQUIRE_DOCKER=1"
        );
        eprintln!("skipping: no Docker engine (set KNIT_REQUIRE_DOCKER=1 to fail instead)");
    }
    ok
}

/// `knit login` against `api` with `stdin` as its standard input: status and output.
fn login(api: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut cmd = Command::new(knit_bin());
    clear_knit_env(&mut cmd)
        .arg("--api")
        .arg(api)
        .arg("login")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("knit login starts");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("knit login output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn contains(path: &std::path::Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or(false)
}

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[test]
fn basic_auth_is_encoded_as_docker_sends_it() {
    assert_eq!(basic("alice", "s3cret"), "Basic YWxpY2U6czNjcmV0");
    assert_eq!(basic("a", "b"), "Basic YTpi");
}

#[test]
fn a_login_on_one_peer_lets_another_pull() {
    if !docker_here() {
        return;
    }
    let _lock = cluster_lock();
    let registry = FakeRegistry::start(basic(USER, PASSWORD));
    let server = format!("127.0.0.1:{}", registry.port);
    let mut cluster = Cluster::start(2, "fast").expect("two peers");
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("alive");
    let ids: Vec<String> = cluster
        .peers
        .iter()
        .map(|p| p.node_id().expect("node id"))
        .collect();
    let (p0, p1) = (&cluster.peers[0], &cluster.peers[1]);

    // Nothing is prompted for: without the password, the error says how to give it.
    let (ok, said) = login(&p0.api, &[&server, "-u", USER], "");
    assert!(!ok, "{said}");
    assert!(said.contains("--password-stdin"), "{said}");

    let (ok, said) = login(
        &p0.api,
        &[&server, "-u", USER, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "knit login: {said}");
    assert!(said.contains("Login Succeeded"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");

    // Every peer lists it, with its user and never the password.
    for peer in [p0, p1] {
        let (listed, _) = wait_until(Duration::from_secs(20), "the login to spread", || {
            let text = peer.cli_ok(&["registry", "ls"]).ok()?;
            text.contains(&server).then_some(text)
        })
        .expect("registry ls shows the login");
        assert!(listed.contains(USER), "{listed}");
        assert!(!listed.contains(PASSWORD), "{listed}");
    }
    let json = p1
        .cli_ok(&["registry", "ls", "--format", "json"])
        .expect("registry ls json");
    assert!(!json.contains(PASSWORD), "{json}");

    // A docker service on the other peer: its engine pulls with alice's credentials.
    let image = format!("{server}/app:1");
    let constraint = format!("node.id=={}", ids[1]);
    let created = p0.cli_ok(&[
        "service",
        "create",
        "--detach",
        "--with-registry-auth",
        "--name",
        "private",
        "--constraint",
        &constraint,
        &image,
    ]);
    let pulled = created.and_then(|_| {
        wait_until(
            Duration::from_secs(90),
            "the engine to send alice's credentials",
            || {
                let expected = basic(USER, PASSWORD);
                registry
                    .seen()
                    .iter()
                    .any(|(line, auth)| {
                        line.contains("/v2/app/manifests/1") && auth.as_deref() == Some(&expected)
                    })
                    .then_some(())
            },
        )
    });
    let seen = registry.seen();
    pulled.unwrap_or_else(|e| panic!("{e:#}; the registry saw {seen:?}"));
    assert!(
        seen.iter()
            .filter_map(|(_, auth)| auth.as_deref())
            .all(|auth| auth == basic(USER, PASSWORD)),
        "only alice's credentials: {seen:?}"
    );

    // `service ps` says the pull failed, and what to do.
    let (failure, _) = wait_until(
        Duration::from_secs(60),
        "service ps to show the pull failure",
        || {
            let text = p0
                .cli_ok(&["service", "ps", "private", "--format", "json"])
                .ok()?;
            text.contains("cannot be pulled").then_some(text)
        },
    )
    .expect("service ps shows the pull failure");
    assert!(failure.contains(&image), "{failure}");
    assert!(
        failure.contains(&ids[1][..12]),
        "on the other peer: {failure}"
    );

    p0.cli_ok(&["service", "rm", "private"])
        .expect("service rm");
    for id in &ids {
        knit_tests::remove_containers(&format!("knit.node={id}"));
    }

    // Nowhere in clear text: the state files and the logs.
    for peer in &cluster.peers {
        let state = peer.data_dir.join("state.bin");
        wait_until(
            Duration::from_secs(20),
            "state.bin to hold the login",
            || contains(&state, &server).then_some(()),
        )
        .expect("the login is saved");
        assert!(
            !contains(&state, PASSWORD),
            "{} holds the password",
            state.display()
        );
        assert!(
            !peer.log().contains(PASSWORD),
            "{}'s log holds the password",
            peer.name
        );
    }

    // Logout removes it everywhere.
    let out = p1.cli_ok(&["logout", &server]).expect("logout");
    assert!(out.contains(&server), "{out}");
    wait_until(Duration::from_secs(20), "the logout to spread", || {
        let text = p0.cli_ok(&["registry", "ls", "-q"]).ok()?;
        (!text.contains(&server)).then_some(())
    })
    .expect("logged out on every peer");
    let again = p1.cli(&["logout", &server]).expect("logout again");
    assert!(!again.status.success());
}
