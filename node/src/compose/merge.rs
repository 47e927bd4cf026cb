//! Several Compose files merged into one (`-c a.yml -c b.yml`), later over earlier, as
//! Docker merges them: mappings key by key; `environment` and `labels` by variable or
//! label, whichever form each file writes; `ports`, `expose`, `env_file` and placement
//! constraints joined without repeats; a service's `volumes` by target, `secrets` and
//! `configs` by source; any other list or value replaced.

use serde_json::{Map, Value};

/// How a list at some place merges.
enum Lists {
    /// The later file's list replaces the earlier's.
    Replace,
    /// Both, without repeats.
    Join,
    /// Both, the later's entries replacing the earlier's with the same key.
    ByKey(fn(&Value) -> Option<String>),
}

/// Merges `over` into `base`.
pub(super) fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, &mut Vec::new());
}

fn merge_at(base: &mut Value, over: Value, path: &mut Vec<String>) {
    if is_keyed_map(path) {
        let (Some(into), Some(from)) = (as_map(base), as_map(&over)) else {
            *base = over;
            return;
        };
        let mut into = into;
        into.extend(from);
        *base = Value::Object(into);
        return;
    }
    match (base, over) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                path.push(key.clone());
                match into.get_mut(&key) {
                    Some(existing) if !existing.is_null() => merge_at(existing, value, path),
                    _ => {
                        into.insert(key, value);
                    }
                }
                path.pop();
            }
        }
        (Value::Array(into), Value::Array(from)) => match lists(path) {
            Lists::Replace => *into = from,
            Lists::Join => {
                for item in from {
                    if !into.contains(&item) {
                        into.push(item);
                    }
                }
            }
            Lists::ByKey(key) => {
                for item in from {
                    let k = key(&item);
                    match into.iter().position(|old| k.is_some() && key(old) == k) {
                        Some(i) => into[i] = item,
                        None => into.push(item),
                    }
                }
            }
        },
        (base, over) => *base = over,
    }
}

/// Whether `path` is a map that may also be written as a `KEY=VALUE` list.
fn is_keyed_map(path: &[String]) -> bool {
    matches!(
        path_str(path).as_slice(),
        ["services", _, "environment" | "labels"] | ["services", _, "deploy", "labels"]
    )
}

fn path_str(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

fn lists(path: &[String]) -> Lists {
    match path_str(path).as_slice() {
        ["services", _, "ports" | "expose" | "env_file" | "dns"]
        | ["services", _, "deploy", "placement", "constraints"] => Lists::Join,
        ["services", _, "volumes"] => Lists::ByKey(volume_target),
        ["services", _, "secrets" | "configs"] => Lists::ByKey(source),
        _ => Lists::Replace,
    }
}

/// A map, or a `KEY=VALUE` (or `KEY`) list as one.
fn as_map(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map.clone()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let text = item.as_str()?;
                Some(match text.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Value::String(v.to_owned())),
                    None => (text.to_owned(), Value::Null),
                })
            })
            .collect(),
        _ => None,
    }
}

fn volume_target(item: &Value) -> Option<String> {
    match item {
        Value::String(short) => {
            let mut parts = short.split(':');
            let first = parts.next()?;
            Some(parts.next().unwrap_or(first).to_owned())
        }
        Value::Object(long) => long.get("target")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn source(item: &Value) -> Option<String> {
    match item {
        Value::String(short) => Some(short.clone()),
        Value::Object(long) => long.get("source")?.as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn later_files_win_and_lists_merge_as_dockers() {
        let mut base = json!({"services": {"web": {
            "image": "nginx:1",
            "command": ["a"],
            "environment": ["A=1", "B=2"],
            "ports": ["80:80"],
            "volumes": ["data:/data", "./conf:/etc/conf:ro"],
            "secrets": ["one", {"source": "two", "target": "t"}],
            "deploy": {"replicas": 1, "labels": {"x": "1"}},
        }}});
        merge(
            &mut base,
            json!({"services": {
                "web": {
                    "image": "nginx:2",
                    "command": ["b"],
                    "environment": {"B": "3", "C": "4"},
                    "ports": ["80:80", "443:443"],
                    "volumes": [{"type": "volume", "source": "other", "target": "/data"}],
                    "secrets": [{"source": "two", "target": "u"}],
                    "deploy": {"replicas": 3, "labels": ["y=2"]},
                },
                "db": {"image": "redis"},
            }}),
        );
        let web = &base["services"]["web"];
        assert_eq!(web["image"], "nginx:2");
        assert_eq!(web["command"], json!(["b"]));
        assert_eq!(web["environment"], json!({"A": "1", "B": "3", "C": "4"}));
        assert_eq!(web["ports"], json!(["80:80", "443:443"]));
        assert_eq!(
            web["volumes"],
            json!([
                {"type": "volume", "source": "other", "target": "/data"},
                "./conf:/etc/conf:ro"
            ])
        );
        assert_eq!(
            web["secrets"],
            json!(["one", {"source": "two", "target": "u"}])
        );
        assert_eq!(
            web["deploy"],
            json!({"replicas": 3, "labels": {"x": "1", "y": "2"}})
        );
        assert_eq!(base["services"]["db"]["image"], "redis");
    }
}
