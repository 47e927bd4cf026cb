//! The fields a JSON request body may name, read from the API's own OpenAPI document: a
//! field that no schema of the body names at its place is unknown.
//!
//! This is the API's check only. The types stay lenient when they decode (a spec stored
//! by a newer peer, with fields this one does not know, still reads here): only what an
//! operator sends through the API must name nothing its schema does not.

use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Object, Schema, SchemaType, Type};
use utoipa::openapi::{Components, RefOr};

/// References followed in a row without going deeper into the value: past it the walk
/// stops (the derived schemas never loop, but a limit costs nothing).
const HOPS_MAX: usize = 16;
/// How deep below an unknown field the check looks for a known field of a close name.
const HINT_DEPTH_MAX: usize = 3;

/// A field of a request body that its schema does not name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    /// The field, as sent.
    pub(crate) field: String,
    /// Where it is, as `ports[0]` or `spec.health`; empty at the top.
    pub(crate) at: String,
    /// The fields the schema names there, in the order the type declares them.
    pub(crate) expected: Vec<String>,
    /// A known field of a close name, at this place or below it (`mode.replicated.replicas`).
    pub(crate) near: Option<String>,
}

impl Unknown {
    /// The field, where it is, a likely meaning, and what is known there: `unknown field
    /// "replica" in the service spec (did you mean ...?); expected one of: name, ...`.
    pub(crate) fn message(&self, what: &str) -> String {
        let mut text = format!("unknown field {:?} in {what}", self.field);
        if !self.at.is_empty() {
            text.push_str(&format!(" at {}", self.at));
        }
        if let Some(near) = &self.near {
            text.push_str(&format!(" (did you mean {}?)", nested(near)));
        }
        text.push_str(&format!("; expected one of: {}", self.expected.join(", ")));
        text
    }
}

/// `mode.replicated.replicas` as the JSON that sets it: `"mode": {"replicated": {"replicas":
/// ...}}`; a field of this level as its name: `"image"`.
fn nested(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() == 1 {
        return format!("{path:?}");
    }
    let mut text = String::new();
    for (i, part) in parts.iter().enumerate() {
        text.push_str(&format!("{part:?}: "));
        if i + 1 < parts.len() {
            text.push('{');
        }
    }
    text.push_str("...");
    text.push_str(&"}".repeat(parts.len() - 1));
    text
}

/// The schemas of a document, to check request bodies against.
pub(crate) struct Shapes<'a> {
    components: &'a Components,
}

impl<'a> Shapes<'a> {
    /// The shapes `components` describe.
    pub(crate) fn new(components: &'a Components) -> Self {
        Self { components }
    }

    /// The fields of `value` that the component schema `name` does not name, in the order
    /// met; empty when `name` is not a component (nothing to check against).
    pub(crate) fn unknown_fields(&self, name: &str, value: &Value) -> Vec<Unknown> {
        let mut found = Vec::new();
        if let Some(schema) = self.components.schemas.get(name) {
            self.check(schema, value, "", 0, &mut found);
        }
        found
    }

    /// The schema a reference points at (a component), or the schema itself.
    fn resolve(&self, schema: &'a RefOr<Schema>) -> Option<&'a Schema> {
        match schema {
            RefOr::T(schema) => Some(schema),
            RefOr::Ref(r) => {
                let name = r.ref_location.strip_prefix("#/components/schemas/")?;
                match self.components.schemas.get(name)? {
                    RefOr::T(schema) => Some(schema),
                    RefOr::Ref(_) => None,
                }
            }
        }
    }

    /// Every object and array schema `schema` allows, through references, `allOf`, `oneOf`
    /// and `anyOf`.
    fn alternatives(&self, schema: &'a RefOr<Schema>, hops: usize, out: &mut Vec<&'a Schema>) {
        if hops > HOPS_MAX {
            return;
        }
        let Some(resolved) = self.resolve(schema) else {
            return;
        };
        match resolved {
            Schema::AllOf(all) => all
                .items
                .iter()
                .for_each(|s| self.alternatives(s, hops + 1, out)),
            Schema::OneOf(one) => one
                .items
                .iter()
                .for_each(|s| self.alternatives(s, hops + 1, out)),
            Schema::AnyOf(any) => any
                .items
                .iter()
                .for_each(|s| self.alternatives(s, hops + 1, out)),
            other => out.push(other),
        }
    }

    /// The object schemas among `schema`'s alternatives.
    fn objects(&self, schema: &'a RefOr<Schema>) -> Vec<&'a Object> {
        let mut all = Vec::new();
        self.alternatives(schema, 0, &mut all);
        all.into_iter()
            .filter_map(|s| match s {
                Schema::Object(o) if object_like(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    fn check(
        &self,
        schema: &'a RefOr<Schema>,
        value: &Value,
        at: &str,
        hops: usize,
        found: &mut Vec<Unknown>,
    ) {
        match value {
            Value::Object(map) => self.check_object(schema, map, at, found),
            Value::Array(items) => {
                let mut all = Vec::new();
                self.alternatives(schema, hops, &mut all);
                let element = all.into_iter().find_map(|s| match s {
                    Schema::Array(array) => match &array.items {
                        ArrayItems::RefOrSchema(items) => Some(&**items),
                        ArrayItems::False => None,
                    },
                    _ => None,
                });
                if let Some(element) = element {
                    for (i, item) in items.iter().enumerate() {
                        self.check(element, item, &format!("{at}[{i}]"), 0, found);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &'a RefOr<Schema>,
        map: &serde_json::Map<String, Value>,
        at: &str,
        found: &mut Vec<Unknown>,
    ) {
        // No object schema here: a wrong type, which decoding reports.
        let shapes = self.objects(schema);
        if shapes.is_empty() {
            return;
        }
        let open = shapes.iter().any(|o| open(o));
        for (key, item) in map {
            let inner = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            let mut candidates: Vec<&RefOr<Schema>> = shapes
                .iter()
                .filter_map(|o| o.properties.get(key.as_str()))
                .collect();
            if candidates.is_empty() && open {
                candidates.extend(shapes.iter().filter_map(|o| {
                    match o.additional_properties.as_deref() {
                        Some(AdditionalProperties::RefOr(values)) => Some(values),
                        _ => None,
                    }
                }));
                if candidates.is_empty() {
                    continue;
                }
            }
            if candidates.is_empty() {
                let expected = expected(&shapes);
                found.push(Unknown {
                    near: self.near(&shapes, key),
                    field: key.clone(),
                    at: at.to_owned(),
                    expected,
                });
                continue;
            }
            // Any schema that takes the field as sent will do; else what the first says.
            let mut first = None;
            for candidate in candidates {
                let mut here = Vec::new();
                self.check(candidate, item, &inner, 0, &mut here);
                if here.is_empty() {
                    first = None;
                    break;
                }
                first.get_or_insert(here);
            }
            found.extend(first.unwrap_or_default());
        }
    }

    /// A field of the shapes, or of the objects below them, whose name is close to `key`:
    /// its path from here. A misspelling anywhere is a better guess than a prefix.
    fn near(&self, shapes: &[&'a Object], key: &str) -> Option<String> {
        self.near_by(shapes, |name| misspelled(name, key))
            .or_else(|| self.near_by(shapes, |name| prefixed(name, key)))
    }

    fn near_by(&self, shapes: &[&'a Object], close: impl Fn(&str) -> bool) -> Option<String> {
        let mut level: Vec<(String, &'a Object)> =
            shapes.iter().map(|o| (String::new(), *o)).collect();
        for _ in 0..HINT_DEPTH_MAX {
            let mut next = Vec::new();
            for (path, object) in &level {
                for (name, schema) in &object.properties {
                    let full = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    if close(name) {
                        return Some(full);
                    }
                    next.extend(self.objects(schema).into_iter().map(|o| (full.clone(), o)));
                }
            }
            level = next;
        }
        None
    }
}

/// The field names of `shapes`, each once, in the order declared.
fn expected(shapes: &[&Object]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in shapes.iter().flat_map(|o| o.properties.keys()) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Whether `o` describes a JSON object (rather than a string or a number).
fn object_like(o: &Object) -> bool {
    let typed = match &o.schema_type {
        SchemaType::Type(t) => *t == Type::Object,
        SchemaType::Array(types) => types.contains(&Type::Object),
        SchemaType::AnyValue => true,
    };
    typed || !o.properties.is_empty() || o.additional_properties.is_some()
}

/// Whether `o` takes fields it does not name: a map, or any object at all.
fn open(o: &Object) -> bool {
    match o.additional_properties.as_deref() {
        Some(AdditionalProperties::FreeForm(free)) => *free,
        Some(AdditionalProperties::RefOr(_)) => true,
        None => o.properties.is_empty(),
    }
}

fn fold(name: &str) -> String {
    name.to_lowercase().replace('-', "_")
}

/// Whether `name` is `key` misspelled: the same but for case, `_` and `-`, or at most two
/// edits apart (one for names of four letters or fewer).
fn misspelled(name: &str, key: &str) -> bool {
    let (a, b) = (fold(name), fold(key));
    let allowed = if a.len() <= 4 { 1 } else { 2 };
    a == b || edits(&a, &b) <= allowed
}

/// Whether one of `name` and `key` starts the other (`proxy`, `proxy_protocol`), four
/// letters at least.
fn prefixed(name: &str, key: &str) -> bool {
    let (a, b) = (fold(name), fold(key));
    a.len().min(b.len()) >= 4 && (a.starts_with(&b) || b.starts_with(&a))
}

/// The edit distance of two short strings (field names), a swap of two neighbours counting
/// as one edit (optimal string alignment).
fn edits(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let width = b.len() + 1;
    let mut d = vec![0_usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edits("replica", "replicas"), 1);
        assert_eq!(edits("image", "imgae"), 1);
        assert_eq!(edits("path", "paht"), 1);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("", "abc"), 3);
        assert!(misspelled("stop_grace_ms", "stop-grace-ms"));
        assert!(!misspelled("env", "args"));
        assert!(!misspelled("name", "mode"));
        assert!(prefixed("proxy_protocol", "proxy"));
        assert!(!prefixed("env", "e"));
    }

    #[test]
    fn hints_read_as_json() {
        assert_eq!(
            nested("mode.replicated.replicas"),
            r#""mode": {"replicated": {"replicas": ...}}"#
        );
        assert_eq!(nested("image"), r#""image""#);
    }
}
