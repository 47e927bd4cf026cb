//! Secrets, as an operator uses them: `knit secret create` from a file, a service that
//! names it, the value in the replica's file and nowhere in clear text on disk (the peers'
//! `state.bin`, their logs, `secret inspect`), a secret in use that cannot be removed, and
//! a service naming a missing secret refused with what to do. With Docker, the file is
//! `/run/secrets/NAME` in the container, with its mode.
//!
//! Configs ride along on the same cluster: `knit config create`, a process replica that
//! reads its config under `KNIT_CONFIGS_DIR` at the target's path, a container that reads
//! it at its target, shown by `config inspect`, in use not removable, and sealed in
//! `state.bin` as secrets are.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knit_tests::{Cluster, cluster_lock, images, wait_until};

const VALUE: &str = "hunter2-correct-horse";
const CONFIG: &str = "listen=8080-config-text";

/// Removes the peers' secret files on memory when the test ends.
struct ShmFiles(Vec<PathBuf>);

impl Drop for ShmFiles {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or(false)
}

#[test]
fn a_secret_reaches_its_replicas_and_no_disk() {
    let _lock = cluster_lock();
    let mut cluster = Cluster::start(2, "fast").expect("two peers");
    cluster
        .wait_all_alive(Duration::from_secs(30))
        .expect("alive");
    let ids: Vec<String> = cluster
        .peers
        .iter()
        .map(|p| p.node_id().expect("node id"))
        .collect();
    let _shm = ShmFiles(
        ids.iter()
            .flat_map(|id| {
                [
                    Path::new("/dev/shm/knit").join(id),
                    Path::new("/dev/shm/knit/configs").join(id),
                ]
            })
            .collect(),
    );
    let p0 = &cluster.peers[0];
    let file = cluster.root().join("db_pass.txt");
    std::fs::write(&file, VALUE).expect("the secret's file");
    let file = file.display().to_string();
    assert_eq!(
        p0.cli_ok(&["secret", "create", "db_pass", &file])
            .expect("secret create")
            .trim(),
        "db_pass"
    );
    // Secrets do not change.
    let again = p0.cli(&["secret", "create", "db_pass", &file]).unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let config_file = cluster.root().join("app.conf");
    std::fs::write(&config_file, CONFIG).expect("the config's file");
    let config_file = config_file.display().to_string();
    assert_eq!(
        p0.cli_ok(&["config", "create", "app_conf", &config_file])
            .expect("config create")
            .trim(),
        "app_conf"
    );

    // A service naming a secret that does not exist is refused, with what to do.
    let missing = p0
        .cli(&[
            "service", "create", "--driver", "process", "--name", "nope", "--secret", "absent",
            "--", "sleep", "600",
        ])
        .unwrap();
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr).into_owned();
    assert!(said.contains("knit secret create absent"), "{said}");

    // Process replicas run as an unprivileged user: it may write its findings here.
    let out_dir = cluster.root().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "cat $KNIT_SECRETS_DIR/db_pass > {out}/$TASK_SLOT; cat $KNIT_SECRETS_DIR/pw > {out}/$TASK_SLOT.pw; cat $KNIT_CONFIGS_DIR/etc/app/app.conf > {out}/$TASK_SLOT.conf; stat -c %a $KNIT_SECRETS_DIR/pw > {out}/$TASK_SLOT.mode; exec sleep 600",
        out = out_dir.display()
    );
    p0.cli_ok(&[
        "service",
        "create",
        "--driver",
        "process",
        "--name",
        "api",
        "--replicas",
        "2",
        "--secret",
        "db_pass",
        "--secret",
        "source=db_pass,target=pw",
        "--config",
        "source=app_conf,target=/etc/app/app.conf",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .expect("service create");
    for slot in ["api.1", "api.2"] {
        // The mode is written last.
        let last = out_dir.join(format!("{slot}.mode"));
        wait_until(
            Duration::from_secs(30),
            "the replica to read its secrets",
            || contains(&last, "\n").then_some(()),
        )
        .expect("the secrets reach the replica");
        assert!(contains(&out_dir.join(slot), VALUE));
        assert!(contains(&out_dir.join(format!("{slot}.pw")), VALUE));
        assert!(
            contains(&out_dir.join(format!("{slot}.conf")), CONFIG),
            "a process reads its config at the target's path under KNIT_CONFIGS_DIR"
        );
        let mode =
            std::fs::read_to_string(out_dir.join(format!("{slot}.mode"))).unwrap_or_default();
        assert_eq!(mode.trim(), "400", "a process gets an owner-only file");
    }

    // In use: not removable; listed with its service; never shown.
    let rm = p0.cli(&["secret", "rm", "db_pass"]).unwrap();
    assert!(!rm.status.success());
    let said = String::from_utf8_lossy(&rm.stderr).into_owned();
    assert!(said.contains("in use by api"), "{said}");
    let inspect = p0.cli_ok(&["secret", "inspect", "db_pass"]).unwrap();
    assert!(inspect.contains("\"api\""), "{inspect}");
    assert!(!inspect.contains(VALUE));
    let listed = p0.cli_ok(&["secret", "ls"]).unwrap();
    assert!(
        listed.contains("db_pass") && listed.contains("api"),
        "{listed}"
    );

    // A config is shown (it is not secret), and in use not removable either.
    let inspect = p0.cli_ok(&["config", "inspect", "app_conf"]).unwrap();
    assert!(
        inspect.contains(CONFIG) && inspect.contains("\"api\""),
        "{inspect}"
    );
    let rm = p0.cli(&["config", "rm", "app_conf"]).unwrap();
    assert!(!rm.status.success());
    let said = String::from_utf8_lossy(&rm.stderr).into_owned();
    assert!(said.contains("in use by api"), "{said}");
    let listed = p0.cli_ok(&["config", "ls"]).unwrap();
    assert!(
        listed.contains("app_conf") && listed.contains("api"),
        "{listed}"
    );

    // Docker: /run/secrets/NAME with its mode, through a bind mount to read it back.
    if let Some(image) = images::busybox_image().expect("the test image") {
        let dout = cluster.root().join("dout");
        std::fs::create_dir_all(&dout).unwrap();
        let mount = format!("type=bind,source={},target=/out", dout.display());
        p0.cli_ok(&[
            "service",
            "create",
            "--name",
            "web",
            "--secret",
            "source=db_pass,target=password,mode=0440",
            "--config",
            "source=app_conf,target=/etc/app.conf",
            "--mount",
            &mount,
            &image,
            "/bin/sh",
            "-c",
            "cat /run/secrets/password > /out/value; cat /etc/app.conf > /out/conf; stat -c %a /etc/app.conf > /out/conf.mode; stat -c %a /run/secrets/password > /out/mode; exec sleep 600",
        ])
        .expect("docker service create");
        wait_until(
            Duration::from_secs(60),
            "the container to read its secret",
            || contains(&dout.join("mode"), "\n").then_some(()),
        )
        .expect("the secret reaches the container");
        assert!(contains(&dout.join("value"), VALUE));
        let mode = std::fs::read_to_string(dout.join("mode")).unwrap_or_default();
        assert_eq!(mode.trim(), "440");
        assert!(
            contains(&dout.join("conf"), CONFIG),
            "a container reads its config at its target"
        );
        let mode = std::fs::read_to_string(dout.join("conf.mode")).unwrap_or_default();
        assert_eq!(mode.trim(), "444", "Docker's default mode of a config");
        p0.cli_ok(&["service", "rm", "web"])
            .expect("service rm web");
        for id in &ids {
            knit_tests::remove_containers(&format!("knit.node={id}"));
        }
    }

    // Nowhere in clear text on disk: the state files and the logs.
    for peer in &cluster.peers {
        let state = peer.data_dir.join("state.bin");
        assert!(state.exists());
        assert!(
            !contains(&state, VALUE),
            "{} holds the secret",
            state.display()
        );
        assert!(
            !contains(&state, CONFIG),
            "{} holds the config in clear text",
            state.display()
        );
        assert!(
            !peer.log().contains(VALUE),
            "{}'s log holds the secret",
            peer.name
        );
    }

    // Once no service names it, it goes.
    p0.cli_ok(&["service", "rm", "api"]).expect("service rm");
    p0.cli_ok(&["secret", "rm", "db_pass"]).expect("secret rm");
    p0.cli_ok(&["config", "rm", "app_conf"]).expect("config rm");
    let left = p0.cli_ok(&["config", "ls", "-q"]).unwrap();
    assert!(left.trim().is_empty(), "{left}");
    let left = p0.cli_ok(&["secret", "ls", "-q"]).unwrap();
    assert!(left.trim().is_empty(), "{left}");
}
