//! Who a process replica runs as, and what it sees of the peer: never root when the peer is
//! root (`nobody` by default), and never the peer's environment (its `KNIT_*` settings, a
//! registry password): only a plain `PATH`, its `HOME`, the spec's variables, `PORT`, and
//! its own service name and slot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// The `PATH` a replica gets unless its spec sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The user process replicas run as when the peer is root and no other was named.
pub(crate) const DEFAULT_USER: &str = "nobody";

/// The user process replicas run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// The user's name, for errors and the log.
    pub(crate) name: String,
    /// The ids to switch to; `None` when the peer runs as that user already.
    pub(crate) ids: Option<(u32, u32)>,
    /// The user's home directory, as `HOME`.
    pub(crate) home: PathBuf,
}

impl RunAs {
    /// The user for `--process-user` (`user`), when `--enable-process-driver` (`enabled`);
    /// `None` when the process driver is off.
    pub(crate) fn choose(enabled: bool, user: Option<&str>) -> Result<Option<Self>> {
        if !enabled {
            if let Some(user) = user {
                bail!(
                    "--process-user {user} needs --enable-process-driver: the process driver is off by default"
                );
            }
            return Ok(None);
        }
        let me = nix::unistd::geteuid();
        let own = nix::unistd::User::from_uid(me).ok().flatten();
        if !me.is_root() {
            let own_name = own.as_ref().map(|u| u.name.clone()).unwrap_or_default();
            if let Some(user) = user.filter(|u| *u != own_name) {
                bail!(
                    "--process-user {user}: this peer runs as {own_name}, not root, so its process replicas can only run as {own_name}"
                );
            }
            return Ok(Some(Self {
                name: own_name,
                ids: None,
                home: own.map(|u| u.dir).unwrap_or_else(|| PathBuf::from("/")),
            }));
        }
        let name = user.unwrap_or(DEFAULT_USER);
        let Some(found) = nix::unistd::User::from_name(name).ok().flatten() else {
            bail!(
                "--process-user {name}: no such user on this host; create it, or name another (process replicas never run as root unless you say --process-user root)"
            );
        };
        if found.uid.is_root() {
            tracing::warn!(
                "process replicas run as root (--process-user root): a service can do anything on this host"
            );
        }
        Ok(Some(Self {
            name: found.name,
            ids: Some((found.uid.as_raw(), found.gid.as_raw())),
            home: found.dir,
        }))
    }

    /// The whole environment of a replica: `spec_env` over a plain `PATH` and `HOME`, then
    /// what knit gives every replica.
    pub(crate) fn environment(
        &self,
        spec_env: &BTreeMap<String, String>,
        port: Option<u16>,
        service: &str,
        slot: &str,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), self.home.display().to_string()),
        ]);
        env.extend(spec_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(port) = port {
            env.insert("PORT".into(), port.to_string());
        }
        env.insert("SERVICE_NAME".into(), service.to_owned());
        env.insert("TASK_SLOT".into(), slot.to_owned());
        env
    }

    /// Sets up `cmd` to run as this user, with `env` only, in `/`.
    pub(crate) fn apply(&self, cmd: &mut tokio::process::Command, env: &BTreeMap<String, String>) {
        cmd.env_clear().envs(env).current_dir("/");
        if let Some((uid, gid)) = self.ids {
            // As root, std drops the supplementary groups before switching.
            cmd.uid(uid).gid(gid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_off_unless_enabled() {
        assert_eq!(RunAs::choose(false, None).unwrap(), None);
        let e = RunAs::choose(false, Some("nobody"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--enable-process-driver"), "{e}");
    }

    #[test]
    fn a_root_peer_runs_replicas_as_nobody_and_a_user_peer_as_itself() {
        let run_as = RunAs::choose(true, None).unwrap().unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(run_as.name, DEFAULT_USER);
            assert!(run_as.ids.is_some_and(|(uid, _)| uid != 0));
            let e = RunAs::choose(true, Some("no-such-user-knit"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("no such user"), "{e}");
        } else {
            assert_eq!(run_as.ids, None);
            assert!(RunAs::choose(true, Some("root")).is_err());
        }
    }

    #[test]
    fn replicas_see_nothing_of_the_peers_environment() {
        let run_as = RunAs {
            name: "nobody".into(),
            ids: None,
            home: PathBuf::from("/nonexistent"),
        };
        let spec = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
        let env = run_as.environment(&spec, Some(8080), "web", "web.2");
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "GREETING",
                "HOME",
                "PATH",
                "PORT",
                "SERVICE_NAME",
                "TASK_SLOT"
            ]
        );
        assert!(env.keys().all(|k| !k.starts_with("KNIT_")));
        assert_eq!(env["TASK_SLOT"], "web.2");
        let custom = BTreeMap::from([("PATH".to_owned(), "/opt/bin".to_owned())]);
        assert_eq!(
            run_as.environment(&custom, None, "w", "w.1")["PATH"],
            "/opt/bin"
        );
    }
}
