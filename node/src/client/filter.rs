//! `-f/--filter KEY=VALUE` on listings, as Docker's: filters on one key match if any of
//! their values does; filters on different keys must all match.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::wire::{NodeSummary, ServiceSummary, TaskRow};

/// Parsed filters: key -> the values given for it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Reads `KEY=VALUE` filters, accepting only `keys` (for the message: `what` lists).
    pub(crate) fn parse(given: &[String], keys: &[&str]) -> Result<Self> {
        let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for filter in given {
            let Some((key, value)) = filter.split_once('=') else {
                bail!(
                    "invalid filter {filter:?}: write it as KEY=VALUE, e.g. -f {}=…",
                    keys[0]
                );
            };
            let key = key.trim().to_ascii_lowercase();
            if !keys.contains(&key.as_str()) {
                bail!(
                    "invalid filter {key:?}: this listing filters on {}",
                    keys.join(", ")
                );
            }
            filters
                .entry(key)
                .or_default()
                .push(value.trim().to_owned());
        }
        Ok(Self(filters))
    }

    /// Whether every key's test passes for one of its values.
    fn all(&self, test: impl Fn(&str, &str) -> bool) -> bool {
        self.0
            .iter()
            .all(|(key, values)| values.iter().any(|v| test(key, v)))
    }

    /// Tasks of `service ps` (and `node ps`): `desired-state`, `node` (name or id prefix),
    /// `name` (slot, e.g. web.1), `id` (replica id prefix).
    pub(crate) fn task(&self, t: &TaskRow) -> bool {
        self.all(|key, v| match key {
            "desired-state" => t.desired_state.eq_ignore_ascii_case(v),
            "node" => t.node == v || (!v.is_empty() && t.node_id.starts_with(v)),
            "name" => t.slot.trim_start_matches("\\_ ").starts_with(v),
            "id" => !v.is_empty() && t.id.starts_with(v),
            _ => false,
        })
    }

    /// Services of `service ls`: `name` (prefix), `mode`.
    pub(crate) fn service(&self, s: &ServiceSummary) -> bool {
        self.all(|key, v| match key {
            "name" => s.name.starts_with(v),
            "mode" => s.mode == v,
            _ => false,
        })
    }

    /// Nodes of `node ls`: `id` (prefix), `name`, `label` (KEY or KEY=VALUE), `state`,
    /// `availability`.
    pub(crate) fn node(&self, n: &NodeSummary) -> bool {
        self.all(|key, v| match key {
            "id" => !v.is_empty() && n.id.starts_with(v),
            "name" => n.name == v,
            "label" => match v.split_once('=') {
                Some((k, want)) => n.labels.get(k).is_some_and(|have| have == want),
                None => n.labels.contains_key(v),
            },
            "state" => crate::wire::word(&n.state) == v,
            "availability" => crate::wire::word(&n.availability) == v,
            _ => false,
        })
    }
}

/// The filter keys of each listing.
pub(crate) const TASK_KEYS: &[&str] = &["desired-state", "node", "name", "id"];
pub(crate) const SERVICE_KEYS: &[&str] = &["name", "mode"];
pub(crate) const NODE_KEYS: &[&str] = &["id", "name", "label", "state", "availability"];

#[cfg(test)]
mod tests {
    use super::*;

    fn task(slot: &str, node: &str, desired: &str) -> TaskRow {
        TaskRow {
            slot: slot.into(),
            id: format!("{slot}-abc"),
            node: node.into(),
            node_id: format!("{node}0000"),
            desired_state: desired.into(),
            state: "running".into(),
            health: "none".into(),
            spec_version: 1,
            current: true,
            host_port: None,
            error: None,
            cpu_millis: None,
        }
    }

    #[test]
    fn filters_match_as_dockers_do() {
        let f = |given: &[&str]| {
            let given: Vec<String> = given.iter().map(|s| (*s).to_owned()).collect();
            Filters::parse(&given, TASK_KEYS).unwrap()
        };
        let running = task("web.1", "n1", "running");
        let leaving = task("web.2", "n2", "shutdown");
        let desired = f(&["desired-state=Running"]);
        assert!(desired.task(&running) && !desired.task(&leaving));
        // Two values of one key: either; two keys: both.
        let either = f(&["node=n1", "node=n2"]);
        assert!(either.task(&running) && either.task(&leaving));
        let both = f(&["node=n1", "desired-state=shutdown"]);
        assert!(!both.task(&running) && !both.task(&leaving));
        assert!(f(&["name=web.2"]).task(&leaving));
        assert!(f(&["id=web.1-a"]).task(&running));
        assert!(f(&["node=n10"]).task(&running), "a node id prefix");
        assert!(f(&[]).task(&running));
        let e = Filters::parse(&["colour=red".into()], TASK_KEYS).unwrap_err();
        assert!(e.to_string().contains("desired-state"), "{e}");
        assert!(Filters::parse(&["node".into()], TASK_KEYS).is_err());
    }
}
