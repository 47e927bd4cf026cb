//! The process driver against real child processes: stop signals, port claims, and what a
//! failed replica says. Each test has a records directory of its own, removed when it
//! ends, also when it panics, after its processes are stopped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::{Driver, PortSpec, Protocol};

use super::*;

/// A records directory of its own; stops what it still runs and removes itself on drop.
struct Scratch {
    dir: PathBuf,
    driver: ProcessDriver,
}

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("knit-process-{}-{n}", std::process::id()));
        let run_as = RunAs::choose(true, None).expect("a user for replicas");
        let driver = ProcessDriver::new(&dir, run_as, &crate::tasks::Tasks::new())
            .expect("a records directory");
        Self { dir, driver }
    }

    /// A folder replicas may write to: they run as another user when the test is root.
    fn shared(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let shared = self.dir.join("shared");
        std::fs::create_dir_all(&shared).expect("a shared folder");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777))
            .expect("a shared folder for replicas");
        shared
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for record in self.driver.records() {
            if let Ok(pid) = i32::try_from(record.pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn launch(name: &str, script: &str, stop_signal: Option<&str>) -> Launch {
    let spec = ServiceSpec {
        name: name.to_owned(),
        driver: Driver::Process,
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ports: vec![PortSpec {
            published: 8080,
            target: 8080,
            protocol: Protocol::Tcp,
            proxy_protocol: false,
        }],
        stop_signal: stop_signal.map(str::to_owned),
        version: 3,
        ..ServiceSpec::default()
    };
    Launch {
        secrets: None,
        configs: None,
        directory: Default::default(),
        registry: None,
        slot: SlotId::replica(name, 1),
        spec: Arc::new(spec),
        node: "test".into(),
    }
}

/// Polls until `done` holds for the replica; panics after 10 s.
async fn wait_for(
    scratch: &Scratch,
    runtime_id: &str,
    what: &str,
    done: impl Fn(&Replica) -> bool,
) {
    let started = Instant::now();
    loop {
        let list = scratch.driver.list().await.expect("list");
        if list.iter().any(|r| r.runtime_id == runtime_id && done(r)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replica_is_stopped_with_its_stop_signal() {
    let scratch = Scratch::new();
    let marker = scratch.shared().join("got");
    // The shell says which signal reached it; it ignores SIGTERM, so a SIGTERM could only
    // end it by the SIGKILL after the grace period, and the marker would stay "ready".
    // (SIGUSR1: a test run as a background job inherits SIGINT and SIGQUIT ignored, and a
    // shell cannot trap a signal ignored on entry; a peer resets those, see StopSignals.)
    let script = format!(
        "trap 'echo USR1 > {m}; exit 0' USR1; trap '' TERM; echo ready > {m}; while :; do sleep 0.05; done",
        m = marker.display()
    );
    let replica = scratch
        .driver
        .start(&launch("sig", &script, Some("SIGUSR1")))
        .await
        .expect("start");
    let ready = Instant::now();
    while std::fs::read_to_string(&marker).unwrap_or_default().trim() != "ready" {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "the shell never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    scratch
        .driver
        .stop(&replica.runtime_id, Duration::from_secs(5))
        .await
        .expect("stop");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "USR1");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stopped by the signal, not by SIGKILL after the grace period: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_real_time_stop_signal_is_refused_with_a_clear_error() {
    let scratch = Scratch::new();
    let error = scratch
        .driver
        .start(&launch("rt", "sleep 5", Some("40")))
        .await
        .expect_err("the process driver cannot send signal 40");
    assert!(error.to_string().contains("stop signal 40"), "{error}");
    assert!(scratch.driver.records().is_empty(), "nothing was started");
}

#[tokio::test]
async fn replicas_starting_together_get_distinct_ports() {
    // The replicas bind their ports only once they run (here: never), so only the claims
    // keep the kernel's free ports from being handed out twice.
    let scratch = Scratch::new();
    let mut ports = BTreeSet::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        let replica = scratch
            .driver
            .start(&launch(&format!("p{i}"), "sleep 30", None))
            .await
            .expect("start");
        let port = replica.host_ports[&8080];
        assert!(ports.insert(port), "port {port} handed out twice");
        ids.push(replica.runtime_id);
    }
    for id in ids {
        scratch
            .driver
            .stop(&id, Duration::from_secs(1))
            .await
            .expect("stop");
    }
}

#[test]
fn a_claimed_port_is_passed_over_until_its_claim_is_stale() {
    let dir = std::env::temp_dir().join(format!("knit-claims-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(claim(&dir, 40_001), "a first claim holds");
    assert!(!claim(&dir, 40_001), "a second one does not");
    let path = dir.join("40001");
    let old = std::time::SystemTime::now() - CLAIM_TTL - Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert!(claim(&dir, 40_001), "a stale claim is taken over");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_failed_replica_says_what_it_printed_last() {
    let scratch = Scratch::new();
    let replica = scratch
        .driver
        .start(&launch(
            "fail",
            "echo starting; echo 'bind: address already in use' >&2; exit 3",
            None,
        ))
        .await
        .expect("start");
    wait_for(&scratch, &replica.runtime_id, "the replica to fail", |r| {
        r.state == ReplicaState::Failed
    })
    .await;
    let list = scratch.driver.list().await.unwrap();
    let failed = list
        .iter()
        .find(|r| r.runtime_id == replica.runtime_id)
        .unwrap();
    assert_eq!(
        failed.error.as_deref(),
        Some("exit code 3: bind: address already in use")
    );
}

#[tokio::test]
async fn a_chatty_replica_s_log_stays_under_its_bound() {
    let mut scratch = Scratch::new();
    let bound = log::LogBound {
        file_max_bytes: 256 * 1024,
        files_max: 3,
    };
    scratch.driver.log_bound = bound;
    // About 3 MB a second, in lines of 16 KiB.
    let script = "line=$(head -c 16384 /dev/zero | tr '\\0' x); while :; do i=0; while [ $i -lt 20 ]; do echo \"$line\"; i=$((i+1)); done; sleep 0.1; done";
    let replica = scratch
        .driver
        .start(&launch("chatty", script, None))
        .await
        .expect("started");
    let path = scratch.driver.log_path(&replica.runtime_id);
    let mut peak = 0;
    let mut rotations = 0;
    let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
    let started = Instant::now();
    // At least 3 s and 3 rotations; a loaded machine writes (and lists) more slowly, so
    // the run may last up to 20 s.
    while started.elapsed() < Duration::from_secs(20)
        && (started.elapsed() < Duration::from_secs(3) || rotations < 3)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(log::total_bytes(&path, bound));
        let before = size();
        scratch.driver.list().await.expect("listed");
        if size() < before {
            rotations += 1;
        }
    }
    let tail = scratch
        .driver
        .logs(&replica.runtime_id, 2)
        .await
        .expect("logs");
    eprintln!("chatty replica: {rotations} rotations, at most {peak} bytes of logs on disk");
    assert!(
        rotations >= 3,
        "{rotations} rotations: the replica wrote well past the bound"
    );
    // Three files of the bound, plus what one round adds to the live one: ~330 kB in the
    // 100 ms between lists, more when a loaded machine stretches them (unbounded growth
    // would be tens of MB by now).
    assert!(
        peak <= 3 * bound.file_max_bytes + 1024 * 1024,
        "{peak} bytes"
    );
    assert!(
        tail.lines().all(|l| l.bytes().all(|b| b == b'x')),
        "whole lines, no holes"
    );
    scratch
        .driver
        .stop(&replica.runtime_id, Duration::from_secs(2))
        .await
        .expect("stopped");
    assert_eq!(
        log::total_bytes(&path, bound),
        0,
        "logs removed with the replica"
    );
}

#[tokio::test]
async fn logs_are_tailed_dated_and_followed_in_whole_lines() {
    let scratch = Scratch::new();
    // Each line is written in two halves, 50 ms apart: a read may land between them.
    let script = "i=0; while :; do i=$((i+1)); printf n-$i; sleep 0.05; echo; sleep 0.05; done";
    let replica = scratch
        .driver
        .start(&launch("ticker", script, None))
        .await
        .expect("started");
    let id = replica.runtime_id.clone();
    for _ in 0..12 {
        scratch.driver.list().await.expect("listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let query = |tail, since_ms, follow| crate::driver::output::LogQuery {
        tail,
        since_ms,
        follow,
    };
    let read = |q| {
        let driver = &scratch.driver;
        let id = id.clone();
        async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            driver.stream_logs(&id, q, &tx).await.expect("logs");
            drop(tx);
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                lines.push(line);
            }
            lines
        }
    };
    let tail = read(query(Some(2), None, false)).await;
    assert_eq!(tail.len(), 2, "{tail:?}");
    let now = crate::clock::now_ms();
    assert!(
        tail.iter().all(|l| l.time_ms.abs_diff(now) < 2_000),
        "{tail:?}"
    );
    let all = read(query(None, None, false)).await;
    let recent = read(query(None, Some(now.saturating_sub(300)), false)).await;
    assert!(
        !recent.is_empty() && recent.len() < all.len(),
        "since keeps the recent lines: {} of {}",
        recent.len(),
        all.len()
    );

    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let driver = &scratch.driver;
    let follow = driver.stream_logs(&id, query(Some(1), None, true), &tx);
    let collect = async {
        let mut numbers = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1500) {
            let line = tokio::time::timeout(Duration::from_secs(1), rx.recv())
                .await
                .expect("a followed line within 1 s")
                .expect("a line");
            let n: u64 = line
                .text
                .strip_prefix("n-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a broken line: {line:?}"));
            numbers.push(n);
        }
        drop(rx);
        numbers
    };
    let (ended, numbers) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), follow),
        collect
    );
    ended
        .expect("the follow ends when its reader goes")
        .expect("the follow");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "every line once, in order: {numbers:?}"
    );
    assert!(numbers.len() >= 8, "{numbers:?}");
}

#[tokio::test]
async fn a_replica_finds_every_service_address_in_its_environment() {
    let scratch = Scratch::new();
    let marker = scratch.shared().join("addr");
    let script = format!(
        "echo \"$KNIT_SERVICE_API_ADDR $KNIT_SERVICE_APP_DB_ADDR\" > {m}.tmp; mv {m}.tmp {m}; sleep 60",
        m = marker.display()
    );
    let mut launch = launch("probe", &script, None);
    let vips = std::collections::BTreeMap::from([
        ("api".to_owned(), std::net::Ipv4Addr::new(10, 213, 0, 7)),
        ("app_db".to_owned(), std::net::Ipv4Addr::new(10, 213, 0, 8)),
    ]);
    launch.directory = Arc::new(crate::discovery::Directory::new(
        None,
        &vips,
        &std::collections::BTreeMap::new(),
    ));
    scratch.driver.start(&launch).await.expect("start");
    let started = Instant::now();
    let seen = loop {
        if let Ok(text) = std::fs::read_to_string(&marker) {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never wrote its environment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen.trim(), "10.213.0.7 10.213.0.8");
}
