//! Durable writes: a peer whose data dir's disk fills up keeps running, tells the client
//! why its change is not on disk, keeps the previous `state.bin`, and saves again once
//! there is room.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, is_root, run_bounded, wait_until};

/// A small tmpfs mounted at a folder, unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).expect("a mount point");
        let out = run_bounded(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at),
            Duration::from_secs(10),
        )
        .expect("mount runs");
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("umount").arg("-l").arg(&self.0),
            Duration::from_secs(10),
        );
    }
}

/// `service create` of an empty process service `name`.
fn create(name: &str) -> Vec<&str> {
    vec![
        "service",
        "create",
        "--driver",
        "process",
        "--name",
        name,
        "--replicas",
        "0",
        "--",
        "true",
    ]
}

/// Fills the file system of `dir` with a file `name`, leaving at most a few KiB free.
fn fill(dir: &Path, name: &str) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join(name)).expect("a filler file");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = vec![0u8; 1024];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
}

#[test]
fn a_full_disk_leaves_the_peer_running_and_the_client_told_why() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let _lock = cluster_lock();
    let mut cluster = Cluster::new("fast").expect("a cluster layout");
    let i = cluster.add_unstarted();
    let data_dir = cluster.peers[i].data_dir.clone();
    // Dropped before the cluster, while the peer may still hold files: a lazy unmount.
    let _disk = Tmpfs::mount(&data_dir, "16m");
    cluster.start_peer(i).expect("a peer");
    cluster.wait_all_alive(Duration::from_secs(30)).expect("up");
    let peer = &cluster.peers[0];
    peer.cli_ok(&create("before"))
        .expect("a service while there is room");
    let state = data_dir.join("state.bin");
    let saved_before = std::fs::read(&state).expect("state.bin");

    fill(&data_dir, "filler");
    let out = peer.cli(&create("after")).expect("knit runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the write was acknowledged with no room to save it"
    );
    assert!(err.contains("disk is full"), "{err}");
    assert!(err.contains(&data_dir.display().to_string()), "{err}");
    // The peer runs on and answers; the previous state file is whole, no temporary left.
    assert!(peer.nodes().is_ok(), "the peer stopped answering");
    assert_eq!(std::fs::read(&state).expect("state.bin"), saved_before);
    let leftovers: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("the data dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Room again: the peer saves on its own, and takes changes again.
    std::fs::remove_file(data_dir.join("filler")).expect("free the disk");
    wait_until(Duration::from_secs(20), "the state saved again", || {
        (std::fs::read(&state).ok()? != saved_before).then_some(())
    })
    .expect("saved once there was room");
    peer.cli_ok(&create("after"))
        .expect("a service once there is room again");
    let saved = std::fs::read(&state).expect("state.bin");
    assert!(
        saved.windows(9).any(|w| w == b"svc/after"),
        "the new service is on disk"
    );
}
