//! Compose files, read as `docker stack deploy` reads them, turned into what knit's API
//! takes: service specs, and the secrets and configs a stack brings. Nothing here talks
//! to a peer; `client/stack.rs` does, as Docker's CLI does the same work client-side.
//!
//! A stack `app` from a file naming services `web` and `db` gives services `app_web` and
//! `app_db`, labelled `com.docker.stack.namespace=app` (Docker's own key and naming, which
//! service discovery relies on); named volumes, and secrets and configs made from files,
//! are named `app_NAME` too. Every key of the Compose Specification that knit reads is
//! honoured; a key knit does not read is named in a warning, never silently dropped; a
//! key that cannot be left out safely (a user to run as, a limit) is an error that says
//! what to do.
//!
//! The steps: YAML (`serde-saphyr`, YAML 1.2 booleans as Compose) into JSON values; the
//! files merged (`merge.rs`); variables replaced (`interpolate.rs`); then the top level
//! (`project.rs`), each service (`service.rs`) and its `deploy` key (`deploy.rs`), walked
//! through `object.rs`, which tells which keys were not read.

mod deploy;
mod fields;
mod interpolate;
mod merge;
mod object;
mod project;
mod service;

use std::path::{Path, PathBuf};

use knit_scheduler::ServiceSpec;

pub(crate) use interpolate::{Variables, read_env_file};

/// The label that names a service's, secret's or config's stack (Docker's).
pub(crate) const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The largest Compose file, `.env`, `env_file`, secret or config file read.
pub(crate) const FILE_MAX_BYTES: u64 = 1024 * 1024;

/// A Compose file could not be read or turned into services. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ComposeError {
    /// A file could not be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// A file is not YAML.
    #[error("{path} is not valid YAML: {why}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's words, with the line and column.
        why: String,
    },
    /// A value is wrong, or a key cannot be honoured; `at` is its path in the file
    /// (`services.web.ports[0]`).
    #[error("{at}: {why}")]
    Invalid {
        /// Where.
        at: String,
        /// What is wrong and what to do.
        why: String,
    },
}

/// One Compose file as given: where it is (relative paths in it are relative to the first
/// file's folder) and what it says.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

/// How the files a Compose file names are read (`env_file`, secrets' and configs' files):
/// from the disk, or from memory in tests.
pub(crate) trait Files {
    /// The bytes of `path` (already resolved against the Compose file's folder).
    fn read(&self, path: &Path) -> Result<Vec<u8>, ComposeError>;
}

/// Files from the disk, each at most [`FILE_MAX_BYTES`].
pub(crate) struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<Vec<u8>, ComposeError> {
        use std::io::Read;
        let fail = |why: String| ComposeError::Read {
            path: path.display().to_string(),
            why,
        };
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(FILE_MAX_BYTES + 1).read_to_end(&mut data))
            .map_err(|e| fail(e.to_string()))?;
        if data.len() as u64 > FILE_MAX_BYTES {
            return Err(fail(format!("it is larger than {FILE_MAX_BYTES} bytes")));
        }
        Ok(data)
    }
}

/// A secret or config the stack brings from a file (or a variable, or inline content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bundled {
    /// Its name in the cluster (`app_db_pass`).
    pub(crate) name: String,
    /// Its value.
    pub(crate) value: Vec<u8>,
    /// Where it came from, for messages (`secrets.db_pass`).
    pub(crate) origin: String,
}

/// What a stack's Compose files describe, ready for the API.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stack {
    /// The stack's services, named `STACK_SERVICE`, each labelled with the stack.
    pub(crate) services: Vec<ServiceSpec>,
    /// Secrets to create (or find unchanged).
    pub(crate) secrets: Vec<Bundled>,
    /// Configs to create (or find unchanged).
    pub(crate) configs: Vec<Bundled>,
    /// What the files ask for that knit does not do, to print on stderr.
    pub(crate) warnings: Vec<String>,
}

/// Whether `name` may name a stack: its services are `NAME_SERVICE`, so it follows the
/// rule of service names (lower case, digits, `_`, `.`, `-`), within 40 characters.
pub(crate) fn stack_name_is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 40
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

/// Reads the stack `name` from `inputs` (merged in order), with variables from `vars`
/// and the files they name through `files`.
pub(crate) fn load(
    name: &str,
    inputs: &[Input],
    vars: &Variables,
    files: &dyn Files,
) -> Result<Stack, ComposeError> {
    if !stack_name_is_valid(name) {
        return Err(ComposeError::Invalid {
            at: "stack name".to_owned(),
            why: format!(
                "{name:?} must be 1-40 characters of a-z, 0-9, '_', '.' or '-', starting with a letter or digit"
            ),
        });
    }
    let Some(first) = inputs.first() else {
        return Err(ComposeError::Invalid {
            at: "stack deploy".to_owned(),
            why: "no Compose file: give one with -c compose.yml".to_owned(),
        });
    };
    let base = first
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut merged = serde_json::Value::Object(serde_json::Map::new());
    for input in inputs {
        let value = parse_yaml(input)?;
        merge::merge(&mut merged, value);
    }
    interpolate::interpolate(&mut merged, "", vars)?;
    let context = project::Context {
        stack: name.to_owned(),
        base,
        vars,
        files,
    };
    project::read(&merged, &context)
}

/// One file's YAML as a JSON value (YAML 1.2 booleans, as Compose: `yes` is a string).
fn parse_yaml(input: &Input) -> Result<serde_json::Value, ComposeError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let value: serde_json::Value = serde_saphyr::from_str_with_options(&input.text, options)
        .map_err(|e| ComposeError::Yaml {
            path: input.path.display().to_string(),
            why: e.to_string(),
        })?;
    match value {
        serde_json::Value::Object(_) => Ok(value),
        serde_json::Value::Null => Ok(serde_json::Value::Object(serde_json::Map::new())),
        _ => Err(ComposeError::Yaml {
            path: input.path.display().to_string(),
            why: "the top level must be a mapping with `services:`".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
