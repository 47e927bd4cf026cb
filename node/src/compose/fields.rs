//! A service's fields that Compose writes in more than one form: commands (a string or a
//! list), environments and labels (a mapping or a `KEY=VALUE` list), ports and volumes
//! (short and long syntax), and the secrets and configs a service names.

use std::collections::BTreeMap;

use knit_scheduler::spec::{ConfigRef, Mount, MountKind, PortSpec, Protocol, SecretRef};
use serde_json::Value;

use super::ComposeError;
use super::object::{Obj, Unread, invalid, scalar, strings, whole};
use super::project::{Context, Declared};

/// A command as words: a list as it is, a string split as a shell would (quotes and
/// backslashes, no expansion), as Compose does.
pub(super) fn words(value: &Value, at: &str) -> Result<Vec<String>, ComposeError> {
    match value {
        Value::String(text) => {
            split_words(text).ok_or_else(|| invalid(at, format!("{text:?} has an unclosed quote")))
        }
        other => strings(other, at),
    }
}

/// `text` split into words as `sh` would without expanding anything; `None` on an unclosed
/// quote.
pub(super) fn split_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => w.push(c),
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// A mapping or a `KEY=VALUE` list as pairs; a key without a value (`KEY`, or `KEY:` in a
/// mapping) is `None`.
pub(super) fn pairs(
    value: &Value,
    at: &str,
) -> Result<BTreeMap<String, Option<String>>, ComposeError> {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Null => None,
                    v => Some(scalar(v, &format!("{at}.{k}"))?),
                };
                Ok((k.clone(), v))
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = scalar(item, &format!("{at}[{i}]"))?;
                Ok(match text.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (text, None),
                })
            })
            .collect(),
        _ => Err(invalid(at, "expected a mapping or a list of KEY=VALUE")),
    }
}

/// The `env_file` entries of a service, in order: a path, a list of paths, or a list of
/// `{path, required}`.
pub(super) fn env_files(
    value: &Value,
    at: &str,
    cx: &Context<'_>,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut env = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{at}[{i}]");
        let (path, required) = match item {
            Value::Object(_) => {
                let entry = Obj::new(item, &at)?;
                let path = entry
                    .text("path")?
                    .ok_or_else(|| invalid(&at, "an env_file entry needs a path"))?;
                let required = entry.flag("required")?.unwrap_or(true);
                entry.unread(&mut Vec::new(), &[("format", Unread::Refuse("knit reads env files in the plain KEY=VALUE format only; remove format"))])?;
                (path, required)
            }
            other => (scalar(other, &at)?, true),
        };
        let file = cx.resolve(&path);
        let text = match cx.files.read(&file) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| invalid(&at, format!("{} is not UTF-8 text", file.display())))?,
            Err(_) if !required => continue,
            Err(e) => return Err(e),
        };
        env.extend(super::read_env_file(
            &text,
            &file.display().to_string(),
            &cx.vars.env,
        )?);
    }
    Ok(env)
}

/// A service's `ports`, short (`"80:8080"`, `"127.0.0.1:80:8080/udp"`, `8080`) and long
/// (`{target, published, protocol, mode}`) syntax. A port with a target only is an
/// internal port (`published: 0`): reached by the service's name, not published on the
/// ingress (Swarm would publish it on a random port; a stack's services meet by name).
pub(super) fn ports(
    items: &[Value],
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<PortSpec>, ComposeError> {
    let mut ports = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let (published, target, protocol) = match item {
            Value::Object(_) => long_port(item, &at, warnings)?,
            other => short_port(&scalar(other, &at)?, &at)?,
        };
        let pairs = match published {
            Some(published) => expand_range(&published, &target, &at)?,
            None => expand_range(&target, &target, &at)?
                .into_iter()
                .map(|(_, target)| (0, target))
                .collect(),
        };
        for (published, target) in pairs {
            ports.push(PortSpec {
                published,
                target,
                protocol,
                proxy_protocol: false,
            });
        }
    }
    Ok(ports)
}

/// A service's `expose` (`"8080"`, `"9000-9001/tcp"`): internal ports, reached by the
/// service's name only.
pub(super) fn expose(items: &[Value], at: &str) -> Result<Vec<PortSpec>, ComposeError> {
    let mut ports = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let text = scalar(item, &at)?;
        let (target, protocol) = match text.rsplit_once('/') {
            Some((target, proto)) => (target.to_owned(), protocol(proto, &at)?),
            None => (text.clone(), Protocol::Tcp),
        };
        for (_, target) in expand_range(&target, &target, &at)? {
            ports.push(PortSpec {
                published: 0,
                target,
                protocol,
                proxy_protocol: false,
            });
        }
    }
    Ok(ports)
}

/// `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]` as (published, target, protocol).
fn short_port(text: &str, at: &str) -> Result<(Option<String>, String, Protocol), ComposeError> {
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((ports, proto)) => (ports, protocol(proto, at)?),
        None => (text, Protocol::Tcp),
    };
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    match parts.as_slice() {
        [target] => Ok((None, (*target).to_owned(), protocol)),
        [target, published] => Ok((
            Some((*published).to_owned()),
            (*target).to_owned(),
            protocol,
        )),
        [_, _, host] => Err(host_ip(host, at)),
        _ => Err(invalid(at, format!("{text:?} is not a port"))),
    }
}

fn host_ip(host: &str, at: &str) -> ComposeError {
    invalid(
        at,
        format!(
            "knit publishes ports on every host's ingress address and cannot bind them to {host} only; remove the address (and firewall the port if it must stay private)"
        ),
    )
}

fn protocol(text: &str, at: &str) -> Result<Protocol, ComposeError> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(invalid(
            at,
            format!("protocol {other:?}: knit publishes tcp or udp"),
        )),
    }
}

fn long_port(
    item: &Value,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<(Option<String>, String, Protocol), ComposeError> {
    let port = Obj::new(item, at)?;
    let target = port
        .text("target")?
        .ok_or_else(|| invalid(at, "a port needs a target"))?;
    let published = port.text("published")?;
    let protocol = match port.text("protocol")? {
        Some(p) => protocol(&p, at)?,
        None => Protocol::Tcp,
    };
    if let Some(host) = port.text("host_ip")? {
        return Err(host_ip(&host, at));
    }
    if port.text("mode")?.as_deref() == Some("host") {
        warnings.push(format!(
            "{at}.mode: host: knit publishes through the ingress of every host (mode ingress); the port is the same"
        ));
    }
    port.unread(
        warnings,
        &[
            ("name", Unread::Warn("ports have no names in knit")),
            (
                "app_protocol",
                Unread::Warn("knit forwards TCP and UDP bytes as they are"),
            ),
        ],
    )?;
    Ok((published, target, protocol))
}

/// `8000-8002` and `9000-9002` as three pairs; single ports as one.
fn expand_range(published: &str, target: &str, at: &str) -> Result<Vec<(u16, u16)>, ComposeError> {
    let range = |text: &str| -> Result<(u16, u16), ComposeError> {
        let number = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(at, format!("port {t:?} is not a number from 1 to 65535")))
        };
        match text.split_once('-') {
            Some((a, b)) => Ok((number(a)?, number(b)?)),
            None => number(text).map(|n| (n, n)),
        }
    };
    let (p0, p1) = range(published)?;
    let (t0, t1) = range(target)?;
    if p1 < p0 || t1 < t0 || p1 - p0 != t1 - t0 {
        return Err(invalid(
            at,
            format!("ranges {published} and {target} must be of the same length"),
        ));
    }
    Ok((0..=p1 - p0).map(|i| (p0 + i, t0 + i)).collect())
}

/// A service's `volumes`, short (`data:/var/lib/data:ro`, `./site:/www`, `/cache`) and
/// long syntax; named volumes become `STACK_NAME` (as declared at the top), binds are
/// relative to the Compose file's folder.
pub(super) fn volumes(
    items: &[Value],
    at: &str,
    declared: &Declared,
    cx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Mount>, ComposeError> {
    let mut mounts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let mount = match item {
            Value::Object(_) => long_volume(item, &at, declared, cx, warnings)?,
            other => short_volume(&scalar(other, &at)?, &at, declared, cx, warnings)?,
        };
        if let Some(why) = mount.problem() {
            return Err(invalid(&at, why));
        }
        mounts.push(mount);
    }
    Ok(mounts)
}

/// Whether a volume's source is a host path rather than a volume's name.
fn is_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

fn named_volume(source: &str, at: &str, declared: &Declared) -> Result<String, ComposeError> {
    declared.volumes.get(source).cloned().ok_or_else(|| {
        invalid(
            at,
            format!(
                "volume {source:?} is not declared: add it under the top-level `volumes:` (or write a path, ./{source}, for a host folder)"
            ),
        )
    })
}

fn short_volume(
    text: &str,
    at: &str,
    declared: &Declared,
    cx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<Mount, ComposeError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(invalid(at, format!("{text:?}: write SOURCE:TARGET[:ro]"))),
    };
    let mut readonly = false;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" => warnings.push(format!(
                "{at}: option {option} is not applied by knit; ignored"
            )),
            other => {
                return Err(invalid(
                    at,
                    format!("unknown volume option {other:?} (ro, rw)"),
                ));
            }
        }
    }
    let (kind, source) = match source {
        "" => (MountKind::Volume, String::new()),
        s if is_path(s) => (MountKind::Bind, cx.resolve(s).display().to_string()),
        s => (MountKind::Volume, named_volume(s, at, declared)?),
    };
    Ok(Mount {
        kind,
        source,
        target: target.to_owned(),
        readonly,
    })
}

fn long_volume(
    item: &Value,
    at: &str,
    declared: &Declared,
    cx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<Mount, ComposeError> {
    let volume = Obj::new(item, at)?;
    let target = volume
        .text("target")?
        .ok_or_else(|| invalid(at, "a volume needs a target"))?;
    let source = volume.text("source")?.unwrap_or_default();
    let readonly = volume.flag("read_only")?.unwrap_or(false);
    let kind = volume.text("type")?.unwrap_or_else(|| "volume".to_owned());
    let (kind, source) = match kind.as_str() {
        "volume" if source.is_empty() => (MountKind::Volume, source),
        "volume" => (MountKind::Volume, named_volume(&source, at, declared)?),
        "bind" => (MountKind::Bind, cx.resolve(&source).display().to_string()),
        "tmpfs" => (MountKind::Tmpfs, String::new()),
        other => {
            return Err(invalid(
                &volume.at_key("type"),
                format!("knit mounts volume, bind and tmpfs, not {other:?}"),
            ));
        }
    };
    if let Some(bind) = volume.obj("bind")? {
        bind.unread(warnings, &[])?;
    }
    if let Some(options) = volume.obj("volume")? {
        options.unread(
            warnings,
            &[(
                "subpath",
                Unread::Refuse(
                    "knit mounts whole volumes; mount it whole and use the folder in it",
                ),
            )],
        )?;
    }
    if let Some(tmpfs) = volume.obj("tmpfs")? {
        tmpfs.unread(
            warnings,
            &[(
                "size",
                Unread::Warn("knit's tmpfs mounts take the engine's default size"),
            )],
        )?;
    }
    volume.unread(warnings, &[])?;
    Ok(Mount {
        kind,
        source,
        target,
        readonly,
    })
}

/// A service's `secrets` (`configs` when `configs`), short (`NAME`) and long
/// (`{source, target, uid, gid, mode}`) syntax, each naming a top-level one.
pub(super) fn refs(
    items: &[Value],
    at: &str,
    declared: &BTreeMap<String, String>,
    configs: bool,
) -> Result<(Vec<SecretRef>, Vec<ConfigRef>), ComposeError> {
    let what = if configs { "config" } else { "secret" };
    let (mut secrets, mut config_refs) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let (key, target, uid, gid, mode) = match item {
            Value::Object(_) => {
                let r = Obj::new(item, &at)?;
                let key = r
                    .text("source")?
                    .ok_or_else(|| invalid(&at, format!("a {what} needs a source")))?;
                let uid = r
                    .get("uid")
                    .map(|v| whole(v, &r.at_key("uid")))
                    .transpose()?;
                let gid = r
                    .get("gid")
                    .map(|v| whole(v, &r.at_key("gid")))
                    .transpose()?;
                let mode = r
                    .get("mode")
                    .map(|v| mode(v, &r.at_key("mode")))
                    .transpose()?;
                let target = r.text("target")?;
                r.unread(&mut Vec::new(), &[])?;
                (key, target, uid, gid, mode)
            }
            other => (scalar(other, &at)?, None, None, None, None),
        };
        let source = declared.get(&key).cloned().ok_or_else(|| {
            invalid(
                &at,
                format!("{what} {key:?} is not declared: add it under the top-level `{what}s:`"),
            )
        })?;
        let id = |n: Option<u64>, which: &str| {
            u32::try_from(n.unwrap_or(0)).map_err(|_| invalid(&at, format!("{which} is too large")))
        };
        let (uid, gid) = (id(uid, "uid")?, id(gid, "gid")?);
        if configs {
            let target = target.unwrap_or_else(|| format!("/{key}"));
            let config = ConfigRef {
                source,
                target,
                uid,
                gid,
                mode: mode.unwrap_or(knit_scheduler::spec::CONFIG_MODE_DEFAULT),
            };
            if let Some(why) = config.problem() {
                return Err(invalid(&at, why));
            }
            config_refs.push(config);
        } else {
            // A secret's file is under /run/secrets; an absolute target names it there.
            let target = target.unwrap_or_else(|| key.clone());
            let target = target
                .strip_prefix("/run/secrets/")
                .unwrap_or(&target)
                .to_owned();
            let secret = SecretRef {
                source,
                target,
                uid,
                gid,
                mode: mode.unwrap_or(knit_scheduler::spec::SECRET_MODE_DEFAULT),
            };
            if let Some(why) = secret.problem() {
                return Err(invalid(&at, why));
            }
            secrets.push(secret);
        }
    }
    Ok((secrets, config_refs))
}

/// A file mode as Compose files write it: octal digits (`0440`, `440`, `"0440"`), or
/// YAML's `0o440`.
fn mode(value: &Value, at: &str) -> Result<u32, ComposeError> {
    let text = scalar(value, at)?;
    let digits = text.trim().trim_start_matches("0o");
    let octal = u32::from_str_radix(digits, 8).ok();
    let parsed = match (value, octal) {
        // `0o440` reads as the number 288: its decimal digits are not octal.
        (Value::Number(n), None) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        (_, octal) => octal,
    };
    parsed.filter(|m| *m <= 0o777).ok_or_else(|| {
        invalid(
            at,
            format!("mode {text:?} must be octal digits up to 0777, e.g. 0440"),
        )
    })
}
