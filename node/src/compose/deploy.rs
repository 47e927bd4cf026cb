//! A service's `deploy` key: mode, replicas, placement, resources, restart, update and
//! rollback policies, labels.

use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::{
    Constraint, Mode, Resources, UpdateConfig, parse_cpu_millis, parse_memory_bytes,
};
use serde::de::DeserializeOwned;

use super::ComposeError;
use super::fields;
use super::object::{Obj, Unread, invalid};

/// Applies `deploy` to `spec`.
pub(super) fn apply(
    deploy: &Obj<'_>,
    spec: &mut ServiceSpec,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    let replicas = deploy.count("replicas")?;
    spec.mode = match (deploy.text("mode")?.as_deref(), replicas) {
        (None | Some("replicated"), replicas) => Mode::Replicated {
            replicas: replicas.unwrap_or(1),
        },
        (Some("global"), None) => Mode::Global,
        (Some("global"), Some(_)) => {
            return Err(invalid(
                &deploy.at_key("replicas"),
                "a global service runs one replica per node; remove replicas or use mode: replicated",
            ));
        }
        (Some(other), _) => {
            return Err(invalid(
                &deploy.at_key("mode"),
                format!("knit runs replicated and global services, not {other:?}"),
            ));
        }
    };
    if let Some(placement) = deploy.obj("placement")? {
        for (i, text) in placement
            .strings("constraints")?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            spec.constraints.push(constraint(
                text,
                &format!("{}[{i}]", placement.at_key("constraints")),
            )?);
        }
        if let Some(max) = placement.count("max_replicas_per_node")? {
            spec.replicas_max_per_node = max;
        }
        placement.unread(
            warnings,
            &[(
                "preferences",
                Unread::Warn("knit spreads replicas one per node before any node gets two"),
            )],
        )?;
    }
    if let Some(resources) = deploy.obj("resources")? {
        if let Some(limits) = resources.obj("limits")? {
            spec.limits = amounts(&limits, warnings)?;
        }
        if let Some(reservations) = resources.obj("reservations")? {
            spec.reservations = amounts(&reservations, warnings)?;
        }
        resources.unread(warnings, &[])?;
    }
    if let Some(restart) = deploy.obj("restart_policy")? {
        if let Some(v) = restart.text("condition")? {
            spec.restart.condition =
                choice(&v, &restart.at_key("condition"), "none, on-failure or any")?;
        }
        if let Some(v) = restart.duration_ms("delay")? {
            spec.restart.delay_ms = v;
        }
        if let Some(v) = restart.count("max_attempts")? {
            // Compose's 0 is "unlimited", as Docker's.
            spec.restart.max_attempts = (v > 0).then_some(v);
        }
        if let Some(v) = restart.duration_ms("window")? {
            spec.restart.window_ms = v;
        }
        restart.unread(warnings, &[])?;
    }
    if let Some(update) = deploy.obj("update_config")? {
        rollout(&update, &mut spec.update, warnings)?;
    }
    if let Some(rollback) = deploy.obj("rollback_config")? {
        rollout(&rollback, &mut spec.rollback, warnings)?;
    }
    if let Some(labels) = deploy.get("labels") {
        for (k, v) in fields::pairs(labels, &deploy.at_key("labels"))? {
            spec.labels.insert(k, v.unwrap_or_default());
        }
    }
    if deploy.text("endpoint_mode")?.as_deref() == Some("dnsrr") {
        warnings.push(format!(
            "{}: dnsrr: knit gives every service one address; ignored",
            deploy.at_key("endpoint_mode")
        ));
    }
    deploy.unread(warnings, &[])
}

/// A constraint as knit reads it, with Swarm's node roles explained.
fn constraint(text: &str, at: &str) -> Result<Constraint, ComposeError> {
    if text.replace(' ', "").starts_with("node.role") {
        return Err(invalid(
            at,
            format!(
                "{text:?}: knit has no manager or worker nodes, every peer is equal; remove it, or label the nodes (`knit node update --label-add KEY=VALUE`) and use node.labels.KEY==VALUE"
            ),
        ));
    }
    text.parse()
        .map_err(|e: knit_scheduler::SpecError| invalid(at, e.to_string()))
}

/// `cpus` and `memory` of limits or reservations.
fn amounts(obj: &Obj<'_>, warnings: &mut Vec<String>) -> Result<Resources, ComposeError> {
    let mut resources = Resources::default();
    if let Some(cpus) = obj.text("cpus")? {
        resources.cpu_millis =
            parse_cpu_millis(&cpus).map_err(|e| invalid(&obj.at_key("cpus"), e.to_string()))?;
    }
    if let Some(memory) = obj.text("memory")? {
        resources.memory_bytes = parse_memory_bytes(&memory)
            .map_err(|e| invalid(&obj.at_key("memory"), e.to_string()))?;
    }
    obj.unread(
        warnings,
        &[
            (
                "pids",
                Unread::Refuse("knit cannot limit a replica's processes yet; remove pids"),
            ),
            (
                "devices",
                Unread::Refuse("knit cannot give replicas devices yet; remove devices"),
            ),
            (
                "generic_resources",
                Unread::Refuse("knit places by CPU and memory only; remove generic_resources"),
            ),
        ],
    )?;
    Ok(resources)
}

/// `update_config` or `rollback_config`.
fn rollout(
    obj: &Obj<'_>,
    config: &mut UpdateConfig,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    if let Some(v) = obj.count("parallelism")? {
        config.parallelism = v;
    }
    if let Some(v) = obj.duration_ms("delay")? {
        config.delay_ms = v;
    }
    if let Some(v) = obj.duration_ms("monitor")? {
        config.monitor_ms = v;
    }
    if let Some(v) = obj.text("failure_action")? {
        config.failure_action = choice(
            &v,
            &obj.at_key("failure_action"),
            "pause, continue or rollback",
        )?;
    }
    if let Some(v) = obj.decimal("max_failure_ratio")? {
        config.max_failure_ratio = v;
    }
    if let Some(v) = obj.text("order")? {
        config.order = choice(&v, &obj.at_key("order"), "stop-first or start-first")?;
    }
    obj.unread(warnings, &[])
}

/// One of a spec enum's values, in Compose's words (`on-failure`, `start-first`).
fn choice<T: DeserializeOwned>(value: &str, at: &str, valid: &str) -> Result<T, ComposeError> {
    serde_json::from_value(serde_json::Value::String(value.replace('-', "_")))
        .map_err(|_| invalid(at, format!("{value:?} is not valid: use {valid}")))
}
