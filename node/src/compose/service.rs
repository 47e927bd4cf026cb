//! One service of a Compose file as a knit service spec.

use std::collections::BTreeMap;

use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::{HealthCheck, Mount, MountKind, Probe, normalize_signal};
use serde_json::Value;

use super::fields;
use super::object::{Obj, Unread, invalid, strings};
use super::project::{Context, Declared};
use super::{ComposeError, NAMESPACE_LABEL};

/// Keys of a service that knit does not read: left out with a warning, or refused where
/// leaving them out would run the service with less protection than the file asks for.
const UNREAD: &[(&str, Unread)] = &[
    (
        "build",
        Unread::Warn(
            "knit does not build images: build it and make it available to every host (a registry, or `docker load` on each)",
        ),
    ),
    (
        "depends_on",
        Unread::Warn(
            "services start together; make each wait for what it needs (a retry loop, or a health check)",
        ),
    ),
    (
        "networks",
        Unread::Warn("knit has no networks: every replica reaches the others by service name"),
    ),
    (
        "container_name",
        Unread::Warn("knit names containers after their service and slot"),
    ),
    ("restart", Unread::Warn("use deploy.restart_policy")),
    ("scale", Unread::Warn("use deploy.replicas")),
    (
        "hostname",
        Unread::Warn("knit does not set a replica's host name"),
    ),
    ("links", Unread::Warn("services reach each other by name")),
    (
        "external_links",
        Unread::Warn("services reach each other by name"),
    ),
    (
        "network_mode",
        Unread::Warn("knit runs replicas on the engine's default network"),
    ),
    (
        "privileged",
        Unread::Warn("knit runs replicas unprivileged"),
    ),
    ("cap_add", Unread::Warn("knit adds no capabilities")),
    (
        "logging",
        Unread::Warn("knit keeps json-file logs (`knit service logs`)"),
    ),
    (
        "user",
        Unread::Refuse(
            "knit cannot run a replica as another user yet; set USER in the image, or remove `user` to run as the image's user",
        ),
    ),
    (
        "read_only",
        Unread::Refuse(
            "knit cannot make a replica's root file system read-only yet; remove `read_only` to run it writable",
        ),
    ),
    (
        "cap_drop",
        Unread::Refuse(
            "knit cannot drop capabilities yet; remove `cap_drop` to run with the engine's default set",
        ),
    ),
    (
        "security_opt",
        Unread::Refuse(
            "knit cannot set security options yet; remove `security_opt` to run with the engine's defaults",
        ),
    ),
    (
        "mem_limit",
        Unread::Refuse("give the limit as deploy.resources.limits.memory"),
    ),
    (
        "memswap_limit",
        Unread::Refuse("give a memory limit as deploy.resources.limits.memory"),
    ),
    (
        "cpus",
        Unread::Refuse("give the limit as deploy.resources.limits.cpus"),
    ),
    (
        "mem_reservation",
        Unread::Refuse("give the reservation as deploy.resources.reservations.memory"),
    ),
    (
        "pids_limit",
        Unread::Refuse("knit cannot limit a replica's processes yet; remove `pids_limit`"),
    ),
    (
        "ulimits",
        Unread::Refuse(
            "knit cannot set ulimits yet; remove `ulimits` to run with the engine's defaults",
        ),
    ),
    (
        "extends",
        Unread::Refuse("knit does not follow `extends`; merge files with several -c instead"),
    ),
];

/// Whether `name` is a valid service name (the scheduler's rule).
fn service_name_is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

/// The service `key` of the file.
pub(super) fn read(
    key: &str,
    value: &Value,
    declared: &Declared,
    cx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<ServiceSpec, ComposeError> {
    let service = Obj::new(value, &format!("services.{key}"))?;
    let name = cx.scoped(key);
    if !service_name_is_valid(&name) {
        return Err(invalid(
            service.at(),
            format!(
                "the service's name would be {name:?}: service names are at most 63 characters of a-z, 0-9, '_', '.' or '-'; rename it in the file"
            ),
        ));
    }
    let mut spec = ServiceSpec {
        name,
        ..ServiceSpec::default()
    };
    spec.image = Some(service.text("image")?.ok_or_else(|| {
        let why = if service.get("build").is_some() {
            "knit does not build images: build it, make it available to every host, and give `image:`"
        } else {
            "a service needs an image"
        };
        invalid(service.at(), why)
    })?);
    if let Some(command) = service.get("command") {
        spec.command = fields::words(command, &service.at_key("command"))?;
    }
    if let Some(entrypoint) = service.get("entrypoint") {
        spec.entrypoint = fields::words(entrypoint, &service.at_key("entrypoint"))?;
    }
    spec.env = environment(&service, cx)?;
    spec.ports = fields::ports(service.list("ports")?, &service.at_key("ports"), warnings)?;
    for port in fields::expose(service.list("expose")?, &service.at_key("expose"))? {
        // A port already given in `ports` (published or not) is reachable by name too.
        if !spec
            .ports
            .iter()
            .any(|p| p.target == port.target && p.protocol == port.protocol)
        {
            spec.ports.push(port);
        }
    }
    spec.mounts = fields::volumes(
        service.list("volumes")?,
        &service.at_key("volumes"),
        declared,
        cx,
        warnings,
    )?;
    if let Some(tmpfs) = service.strings("tmpfs")? {
        spec.mounts.extend(tmpfs.into_iter().map(|target| Mount {
            kind: MountKind::Tmpfs,
            source: String::new(),
            // `/run:size=64k`: the options are the engine's.
            target: target.split(':').next().unwrap_or_default().to_owned(),
            readonly: false,
        }));
    }
    (spec.secrets, _) = fields::refs(
        service.list("secrets")?,
        &service.at_key("secrets"),
        &declared.secrets,
        false,
    )?;
    (_, spec.configs) = fields::refs(
        service.list("configs")?,
        &service.at_key("configs"),
        &declared.configs,
        true,
    )?;
    if let Some(labels) = service.get("labels") {
        spec.labels = defined(fields::pairs(labels, &service.at_key("labels"))?);
    }
    if let Some(health) = service.obj("healthcheck")? {
        healthcheck(&health, &mut spec, warnings)?;
    }
    if let Some(v) = service.duration_ms("stop_grace_period")? {
        spec.stop_grace_ms = v;
    }
    if let Some(v) = service.text("stop_signal")? {
        spec.stop_signal = Some(normalize_signal(&v).ok_or_else(|| {
            invalid(
                &service.at_key("stop_signal"),
                format!("{v:?} is not a signal, e.g. SIGTERM"),
            )
        })?);
    }
    if let Some(deploy) = service.obj("deploy")? {
        super::deploy::apply(&deploy, &mut spec, warnings)?;
    }
    spec.labels
        .insert(NAMESPACE_LABEL.to_owned(), cx.stack.clone());
    service.unread(warnings, UNREAD)?;
    Ok(spec)
}

/// Pairs with a value (a label written `KEY` alone is empty).
fn defined(pairs: BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect()
}

/// `env_file` first, then `environment` over it; a variable written without a value takes
/// the client's, or is left out when the client has none (as Compose does).
fn environment(
    service: &Obj<'_>,
    cx: &Context<'_>,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut env = match service.get("env_file") {
        Some(files) => fields::env_files(files, &service.at_key("env_file"), cx)?,
        None => BTreeMap::new(),
    };
    if let Some(value) = service.get("environment") {
        for (key, value) in fields::pairs(value, &service.at_key("environment"))? {
            match value.or_else(|| cx.vars.env.get(&key).cloned()) {
                Some(value) => env.insert(key, value),
                None => env.remove(&key),
            };
        }
    }
    Ok(env)
}

/// `healthcheck`: `test` as `["CMD", ...]`, `["CMD-SHELL", "..."]`, a string (a shell
/// command) or `["NONE"]`; `disable: true`; the timings.
fn healthcheck(
    health: &Obj<'_>,
    spec: &mut ServiceSpec,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    let disabled = health.flag("disable")?.unwrap_or(false);
    let test = match health.get("test") {
        Some(Value::String(shell)) => Some(vec!["CMD-SHELL".to_owned(), shell.clone()]),
        Some(other) => Some(strings(other, &health.at_key("test"))?),
        None => None,
    };
    let probe = match test.as_deref() {
        _ if disabled => None,
        Some([first, rest @ ..]) if first == "CMD" && !rest.is_empty() => {
            Some(Probe::Command(rest.to_vec()))
        }
        Some([first, shell]) if first == "CMD-SHELL" => Some(Probe::Command(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            shell.clone(),
        ])),
        Some([first]) if first == "NONE" => None,
        None => None,
        Some(_) => {
            return Err(invalid(
                &health.at_key("test"),
                "write [\"CMD\", \"program\", \"arg\"], [\"CMD-SHELL\", \"command\"], a command string, or [\"NONE\"]",
            ));
        }
    };
    let none = disabled || test.as_deref().is_some_and(|t| t == ["NONE"]);
    if none {
        spec.health = None;
        spec.no_healthcheck = true;
    }
    let mut check = match probe {
        Some(probe) => HealthCheck::new(probe),
        None if none => {
            health.unread(&mut Vec::new(), &[])?;
            return Ok(());
        }
        None => {
            // Timings alone change the image's HEALTHCHECK in Docker; knit probes itself.
            return Err(invalid(
                health.at(),
                "knit runs the health checks itself and needs the test: add `test:` (the image's own HEALTHCHECK is used when the whole healthcheck is left out)",
            ));
        }
    };
    if let Some(v) = health.duration_ms("interval")? {
        check.interval_ms = v;
    }
    if let Some(v) = health.duration_ms("timeout")? {
        check.timeout_ms = v;
    }
    if let Some(v) = health.count("retries")? {
        check.retries = v;
    }
    if let Some(v) = health.duration_ms("start_period")? {
        check.start_period_ms = v;
    }
    health.unread(
        warnings,
        &[(
            "start_interval",
            Unread::Warn("knit probes at the interval from the start"),
        )],
    )?;
    spec.health = Some(check);
    Ok(())
}
