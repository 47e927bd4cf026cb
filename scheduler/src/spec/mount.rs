//! Mounts, as `docker service create --mount` writes them:
//! `type=bind|volume|tmpfs,source=...,target=/path[,readonly]`.
//!
//! A `volume` is a named local volume on the host that runs the replica: it does not follow
//! a replica to another host (pin a stateful service with a constraint). A `bind` mounts a
//! host path, which must exist on every host the service may run on. A `tmpfs` is memory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::limits::MOUNT_PATH_MAX_BYTES;
use crate::error::SpecError;

/// What is mounted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named (or, without a source, anonymous) local volume; Docker's default.
    #[default]
    Volume,
    /// Memory.
    Tmpfs,
}

impl fmt::Display for MountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bind => "bind",
            Self::Volume => "volume",
            Self::Tmpfs => "tmpfs",
        })
    }
}

/// One mount of a replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mount {
    /// Bind, volume or tmpfs.
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// The host path (bind) or the volume's name (volume; empty: anonymous); empty for tmpfs.
    #[serde(default)]
    pub source: String,
    /// Where it appears in the replica: an absolute path.
    pub target: String,
    /// Mounted read-only.
    #[serde(default)]
    pub readonly: bool,
}

impl Mount {
    /// What is wrong with this mount, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.source.len() > MOUNT_PATH_MAX_BYTES || self.target.len() > MOUNT_PATH_MAX_BYTES {
            return Some(format!("paths are at most {MOUNT_PATH_MAX_BYTES} bytes"));
        }
        if !is_clean_absolute(&self.target) || self.target == "/" {
            return Some(format!(
                "target {:?} must be an absolute path other than / without '..', e.g. /data",
                self.target
            ));
        }
        match self.kind {
            MountKind::Bind if !is_clean_absolute(&self.source) => Some(format!(
                "a bind mount's source {:?} must be an absolute host path without '..'",
                self.source
            )),
            MountKind::Volume if !self.source.is_empty() && !is_volume_name(&self.source) => {
                Some(format!(
                    "volume name {:?} must be letters, digits, '_', '.' or '-', starting with a letter or digit",
                    self.source
                ))
            }
            MountKind::Tmpfs if !self.source.is_empty() => {
                Some("a tmpfs mount has no source".to_owned())
            }
            _ => None,
        }
    }
}

fn is_clean_absolute(path: &str) -> bool {
    path.starts_with('/') && !path.contains('\0') && !path.split('/').any(|part| part == "..")
}

fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind)?;
        if !self.source.is_empty() {
            write!(f, ",source={}", self.source)?;
        }
        write!(f, ",target={}", self.target)?;
        if self.readonly {
            f.write_str(",readonly")?;
        }
        Ok(())
    }
}

impl FromStr for Mount {
    type Err = SpecError;

    /// Reads Docker's comma-separated `key=value` form: `type` (default `volume`),
    /// `source`/`src`, `target`/`destination`/`dst`, `readonly`/`ro` (alone, or `=true`,
    /// `=false`, `=1`, `=0`).
    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |why: String| SpecError::Mount {
            input: input.to_owned(),
            why,
        };
        let mut mount = Mount::default();
        let mut target = None;
        for field in input.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (field, None),
            };
            match (key, value) {
                ("type", Some(kind)) => {
                    mount.kind = match kind {
                        "bind" => MountKind::Bind,
                        "volume" => MountKind::Volume,
                        "tmpfs" => MountKind::Tmpfs,
                        other => {
                            return Err(err(format!(
                                "unknown type {other:?} (bind, volume or tmpfs)"
                            )));
                        }
                    }
                }
                ("source" | "src", Some(source)) => mount.source = source.to_owned(),
                ("target" | "destination" | "dst", Some(path)) => target = Some(path.to_owned()),
                ("readonly" | "ro", None | Some("true" | "1")) => mount.readonly = true,
                ("readonly" | "ro", Some("false" | "0")) => mount.readonly = false,
                ("readonly" | "ro", Some(other)) => {
                    return Err(err(format!("readonly={other}: give true or false")));
                }
                (key, None) => return Err(err(format!("{key:?} needs a value ({key}=...)"))),
                (key, Some(_)) => {
                    return Err(err(format!(
                        "unknown key {key:?} (type, source, target, readonly)"
                    )));
                }
            }
        }
        mount.target = target.ok_or_else(|| err("no target".to_owned()))?;
        match mount.problem() {
            Some(why) => Err(err(why)),
            None => Ok(mount),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dockers_forms() {
        let m: Mount = "type=bind,source=/srv/www,target=/www,readonly"
            .parse()
            .unwrap();
        assert_eq!(
            m,
            Mount {
                kind: MountKind::Bind,
                source: "/srv/www".into(),
                target: "/www".into(),
                readonly: true,
            }
        );
        assert_eq!(m.to_string().parse::<Mount>().unwrap(), m);
        let v: Mount = "src=db,dst=/var/lib/db".parse().unwrap();
        assert_eq!((v.kind, v.source.as_str()), (MountKind::Volume, "db"));
        let t: Mount = "type=tmpfs,target=/tmp,ro=false".parse().unwrap();
        assert_eq!((t.kind, t.readonly), (MountKind::Tmpfs, false));
        let anonymous: Mount = "target=/cache".parse().unwrap();
        assert!(anonymous.source.is_empty());
    }

    #[test]
    fn mounts_are_part_of_what_replicas_run_only_when_given() {
        let mut spec = crate::ServiceSpec::docker("db", "postgres:17");
        let before = spec.template_id();
        // Specs written before mounts existed keep their template ids: no replica is
        // replaced by an upgrade.
        let text = serde_json::to_string(&spec.template()).unwrap();
        assert!(!text.contains("mounts"), "{text}");
        spec.mounts = vec!["target=/data".parse().unwrap()];
        assert_ne!(spec.template_id(), before);
    }

    #[test]
    fn refuses_what_docker_would_not_mount() {
        for bad in [
            "type=bind,source=relative,target=/x",
            "type=bind,target=/x",
            "type=volume,source=/abs,target=/x",
            "type=tmpfs,source=x,target=/x",
            "type=nfs,target=/x",
            "source=db",
            "target=relative",
            "target=/",
            "target=/a/../etc",
            "type=bind,source=/a/../etc,target=/x",
            "target=/x,size=10",
            "target=/x,readonly=maybe",
            "type",
        ] {
            let e = bad.parse::<Mount>().expect_err(bad).to_string();
            assert!(e.contains("type=bind|volume|tmpfs"), "{bad}: {e}");
        }
    }
}
