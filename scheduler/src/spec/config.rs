//! A service's configs, as `docker service create --config` names them:
//! `NAME` or `source=NAME,target=/path,uid=0,gid=0,mode=0444`.
//!
//! The spec names a config only; its content lives sealed in the cluster's state (see the
//! node's `config` commands) and reaches a replica as a read-only file at its target (a
//! container), or under the folder `KNIT_CONFIGS_DIR` names, at the same path (a process).
//! Unlike a secret's, a config's target is an absolute path anywhere in the replica.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::limits::MOUNT_PATH_MAX_BYTES;
use super::secret::secret_name_is_valid;
use crate::error::SpecError;

/// Docker's default mode of a config's file.
pub const CONFIG_MODE_DEFAULT: u32 = 0o444;

/// One config a replica gets, and how its file looks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigRef {
    /// The config's name.
    pub source: String,
    /// Where the file appears in the replica: an absolute path (`/NAME` when not given).
    pub target: String,
    /// The file's owner (numeric, as Docker's).
    #[serde(default)]
    pub uid: u32,
    /// The file's group.
    #[serde(default)]
    pub gid: u32,
    /// The file's permission bits.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    CONFIG_MODE_DEFAULT
}

/// Whether `name` may name a config: the rule of secrets' names (Docker's).
pub fn config_name_is_valid(name: &str) -> bool {
    secret_name_is_valid(name)
}

impl ConfigRef {
    /// A reference to `source` with Docker's defaults: at `/source`, root's, 0444.
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            target: format!("/{source}"),
            uid: 0,
            gid: 0,
            mode: CONFIG_MODE_DEFAULT,
        }
    }

    /// The target as a path relative to the replica's root (`etc/app.conf`): where the
    /// file is under the folder of a replica's configs.
    pub fn relative_target(&self) -> &str {
        self.target.trim_start_matches('/')
    }

    /// What is wrong with this reference, if anything.
    pub fn problem(&self) -> Option<String> {
        if !config_name_is_valid(&self.source) {
            return Some(format!(
                "config name {:?} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
                self.source
            ));
        }
        let target_ok = self.target.starts_with('/')
            && self.target.len() <= MOUNT_PATH_MAX_BYTES
            && !self.target.contains('\0')
            && !self.target.ends_with('/')
            && self
                .relative_target()
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !target_ok {
            return Some(format!(
                "target {:?} must be an absolute file path without '.', '..' or '//', e.g. /etc/app.conf",
                self.target
            ));
        }
        if self.mode > 0o777 {
            return Some(format!("mode {:o} must be at most 0777", self.mode));
        }
        None
    }
}

impl fmt::Display for ConfigRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source={},target={}", self.source, self.target)?;
        if self.uid != 0 || self.gid != 0 {
            write!(f, ",uid={},gid={}", self.uid, self.gid)?;
        }
        if self.mode != CONFIG_MODE_DEFAULT {
            write!(f, ",mode={:04o}", self.mode)?;
        }
        Ok(())
    }
}

impl FromStr for ConfigRef {
    type Err = SpecError;

    /// Reads `NAME`, or Docker's `source=NAME[,target=/PATH][,uid=N][,gid=N][,mode=0440]`.
    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |why: String| SpecError::Config {
            input: input.to_owned(),
            why,
        };
        let fields = super::file_ref::parse(input).map_err(err)?;
        let mut config = ConfigRef::new(&fields.source);
        if let Some(target) = fields.target {
            config.target = target;
        }
        config.uid = fields.uid;
        config.gid = fields.gid;
        config.mode = fields.mode.unwrap_or(CONFIG_MODE_DEFAULT);
        match config.problem() {
            Some(why) => Err(err(why)),
            None => Ok(config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dockers_forms() {
        let plain: ConfigRef = "nginx_conf".parse().unwrap();
        assert_eq!(
            (plain.source.as_str(), plain.target.as_str(), plain.mode),
            ("nginx_conf", "/nginx_conf", 0o444)
        );
        let full: ConfigRef =
            "source=nginx_conf,target=/etc/nginx/nginx.conf,uid=101,gid=101,mode=0440"
                .parse()
                .unwrap();
        assert_eq!((full.uid, full.gid, full.mode), (101, 101, 0o440));
        assert_eq!(full.relative_target(), "etc/nginx/nginx.conf");
        assert_eq!(full.to_string().parse::<ConfigRef>().unwrap(), full);
    }

    #[test]
    fn refuses_bad_names_targets_and_keys() {
        for bad in [
            "",
            "-x",
            "source=a,target=relative",
            "source=a,target=/",
            "source=a,target=/etc/../passwd",
            "source=a,target=/etc//x",
            "source=a,target=/etc/",
            "source=a,mode=999",
            "source=a,uid=-1",
            "source=a,size=1",
            "target=/x",
        ] {
            let e = bad.parse::<ConfigRef>().expect_err(bad).to_string();
            assert!(e.contains("--config"), "{bad}: {e}");
        }
    }

    #[test]
    fn configs_are_part_of_what_replicas_run_only_when_given() {
        let mut spec = crate::ServiceSpec::docker("web", "nginx:1.27");
        let before = spec.template_id();
        let text = serde_json::to_string(&spec.template()).unwrap();
        assert!(!text.contains("configs"), "{text}");
        spec.configs = vec!["nginx_conf".parse().unwrap()];
        assert_ne!(spec.template_id(), before);
    }

    #[test]
    fn targets_are_distinct_and_not_nested() {
        let limits = crate::spec::Limits::default();
        let mut spec = crate::ServiceSpec::docker("web", "nginx:1.27");
        spec.configs = vec![
            "source=a,target=/etc/app".parse().unwrap(),
            "source=b,target=/etc/app".parse().unwrap(),
        ];
        let e = spec.validate(&limits).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
        spec.configs[1] = "source=b,target=/etc/app/x.conf".parse().unwrap();
        let e = spec.validate(&limits).unwrap_err().to_string();
        assert!(e.contains("inside /etc/app"), "{e}");
        spec.configs[1] = "source=a,target=/etc/app.conf".parse().unwrap();
        spec.validate(&limits).unwrap();
    }
}
