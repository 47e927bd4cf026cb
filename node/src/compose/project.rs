//! The top level of a Compose file: `services`, and the `volumes`, `secrets` and `configs`
//! they name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::object::{Obj, Unread, invalid};
use super::{Bundled, ComposeError, Files, Stack, Variables};

/// What every part of the reading needs.
pub(super) struct Context<'a> {
    /// The stack's name, the prefix of what it creates.
    pub(super) stack: String,
    /// The first Compose file's folder: relative paths start there.
    pub(super) base: PathBuf,
    pub(super) vars: &'a Variables,
    pub(super) files: &'a dyn Files,
}

impl Context<'_> {
    /// `path` from the Compose file: relative to its folder, `~` the home folder.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        if let Some(rest) = path.strip_prefix("~/").or((path == "~").then_some("")) {
            let home = self.vars.env.get("HOME").map_or("/", String::as_str);
            return Path::new(home).join(rest);
        }
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        let joined = self.base.join(path);
        // `./x` and `../x` read as they are written, without `.` parts.
        let mut clean = PathBuf::new();
        for part in joined.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir if clean.parent().is_some() => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        clean
    }

    /// A name of this stack: `STACK_NAME`.
    pub(super) fn scoped(&self, name: &str) -> String {
        format!("{}_{name}", self.stack)
    }
}

/// The names in the cluster of what the file declares at the top, by the file's keys.
#[derive(Debug, Default)]
pub(super) struct Declared {
    pub(super) volumes: BTreeMap<String, String>,
    pub(super) secrets: BTreeMap<String, String>,
    pub(super) configs: BTreeMap<String, String>,
}

/// Reads the whole (merged) file.
pub(super) fn read(root: &Value, cx: &Context<'_>) -> Result<Stack, ComposeError> {
    let top = Obj::new(root, "")?;
    let mut stack = Stack::default();
    let _obsolete = top.get("version");
    if top.get("name").is_some() {
        stack.warnings.push(format!(
            "name: the stack is named by `knit stack deploy ... {}`; ignored",
            cx.stack
        ));
    }
    let mut declared = Declared::default();
    if let Some(volumes) = top.obj("volumes")? {
        declared.volumes = read_volumes(&volumes, cx, &mut stack.warnings)?;
    }
    if let Some(secrets) = top.obj("secrets")? {
        let (names, bundled) = read_sealed(&secrets, cx, false, &mut stack.warnings)?;
        declared.secrets = names;
        stack.secrets = bundled;
    }
    if let Some(configs) = top.obj("configs")? {
        let (names, bundled) = read_sealed(&configs, cx, true, &mut stack.warnings)?;
        declared.configs = names;
        stack.configs = bundled;
    }
    let services = top
        .obj("services")?
        .ok_or_else(|| invalid("services", "the file names no services; add `services:`"))?;
    for (name, value) in services.entries() {
        let spec = super::service::read(name, value, &declared, cx, &mut stack.warnings)?;
        stack.services.push(spec);
    }
    if stack.services.is_empty() {
        return Err(invalid("services", "the file names no services"));
    }
    top.unread(
        &mut stack.warnings,
        &[(
            "networks",
            Unread::Warn("knit has no networks: every replica reaches the others by service name"),
        )],
    )?;
    Ok(stack)
}

/// Top-level `volumes`: their names in the cluster (`STACK_NAME`, or `name:`, or the key
/// itself when `external`).
fn read_volumes(
    volumes: &Obj<'_>,
    cx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut names = BTreeMap::new();
    for (key, value) in volumes.entries() {
        let volume = Obj::new(value, &volumes.at_key(key))?;
        let name = volume.text("name")?;
        let external = external(&volume)?;
        match volume.text("driver")?.as_deref() {
            None | Some("local") => {}
            Some(other) => {
                return Err(invalid(
                    &volume.at_key("driver"),
                    format!(
                        "knit makes local volumes only, not {other:?}; create the volume on each host yourself and declare it `external: true`"
                    ),
                ));
            }
        }
        volume.unread(
            warnings,
            &[
                (
                    "driver_opts",
                    Unread::Refuse(
                        "knit makes plain local volumes; create the volume with its options on each host yourself and declare it `external: true`",
                    ),
                ),
                ("labels", Unread::Warn("knit labels volumes with their service")),
            ],
        )?;
        let actual = match (name, external) {
            (Some(name), _) => name,
            (None, true) => key.clone(),
            (None, false) => cx.scoped(key),
        };
        names.insert(key.clone(), actual);
    }
    Ok(names)
}

/// `external: true` (or the old `external: {name: ...}` form's presence).
fn external(obj: &Obj<'_>) -> Result<bool, ComposeError> {
    match obj.get("external") {
        Some(Value::Object(_)) => Ok(true),
        Some(_) => Ok(obj.flag("external")?.unwrap_or(false)),
        None => Ok(false),
    }
}

/// Top-level `secrets` (or `configs`, when `configs`): the names services use, and the
/// values the stack brings from files, variables or inline content.
fn read_sealed(
    declared: &Obj<'_>,
    cx: &Context<'_>,
    configs: bool,
    warnings: &mut Vec<String>,
) -> Result<(BTreeMap<String, String>, Vec<Bundled>), ComposeError> {
    let what = if configs { "config" } else { "secret" };
    let mut names = BTreeMap::new();
    let mut bundled = Vec::new();
    for (key, value) in declared.entries() {
        let item = Obj::new(value, &declared.at_key(key))?;
        let external_name = match item.get("external") {
            Some(Value::Object(old)) => old.get("name").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let is_external = external(&item)?;
        let name = item.text("name")?;
        let file = item.text("file")?;
        let variable = item.text("environment")?;
        let content = if configs { item.text("content")? } else { None };
        let actual = name.clone().or(external_name).unwrap_or_else(|| {
            if is_external {
                key.clone()
            } else {
                cx.scoped(key)
            }
        });
        if !knit_scheduler::spec::secret_name_is_valid(&actual) {
            return Err(invalid(
                item.at(),
                format!(
                    "{what} name {actual:?} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
                ),
            ));
        }
        let value = match (is_external, file, variable, content) {
            (true, None, None, None) => None,
            (false, Some(file), None, None) => Some(cx.files.read(&cx.resolve(&file))?),
            (false, None, Some(var), None) => Some(
                cx.vars
                    .env
                    .get(&var)
                    .ok_or_else(|| {
                        invalid(
                            &item.at_key("environment"),
                            format!("the variable {var} is not set in the environment"),
                        )
                    })?
                    .clone()
                    .into_bytes(),
            ),
            (false, None, None, Some(content)) => Some(content.into_bytes()),
            _ => {
                let sources = if configs {
                    "file:, environment:, content: or external: true"
                } else {
                    "file:, environment: or external: true"
                };
                return Err(invalid(item.at(), format!("give exactly one of {sources}")));
            }
        };
        item.unread(
            warnings,
            &[
                (
                    "driver",
                    Unread::Refuse("knit keeps secrets and configs itself, sealed in the cluster's state; remove the driver"),
                ),
                (
                    "template_driver",
                    Unread::Refuse("knit does not render templates; give the final content"),
                ),
                ("labels", Unread::Warn("knit labels them with their stack only")),
            ],
        )?;
        if let Some(value) = value {
            bundled.push(Bundled {
                name: actual.clone(),
                value,
                origin: item.at().to_owned(),
            });
        }
        names.insert(key.clone(), actual);
    }
    Ok((names, bundled))
}
