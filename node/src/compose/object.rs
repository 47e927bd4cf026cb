//! Walking a Compose mapping: each read marks its key, typed readers accept what Compose
//! accepts (a number written as a string after `${VAR}`, `"0.5"` or `0.5`), and
//! [`Obj::unread`] turns every key nobody read into a warning, or an error where leaving it
//! out would not be safe.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::ComposeError;
use super::interpolate::join;

/// A mapping of the file, at a path (`services.web.deploy`).
pub(super) struct Obj<'a> {
    at: String,
    map: Option<&'a Map<String, Value>>,
    read: RefCell<BTreeSet<String>>,
}

/// What a key that knit does not read means.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unread {
    /// Left out, with a warning that says this.
    Warn(&'static str),
    /// Refused: what to do instead.
    Refuse(&'static str),
}

pub(super) fn invalid(at: &str, why: impl Into<String>) -> ComposeError {
    ComposeError::Invalid {
        at: at.to_owned(),
        why: why.into(),
    }
}

/// A scalar as text: a string, a number (whole numbers without a fraction) or a boolean.
pub(super) fn scalar(value: &Value, at: &str) -> Result<String, ComposeError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            _ => n.to_string(),
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => Err(invalid(
            at,
            "expected a single value (a string or a number)",
        )),
    }
}

/// A whole number from 0 up, written as a number or as a string.
pub(super) fn whole(value: &Value, at: &str) -> Result<u64, ComposeError> {
    let text = scalar(value, at)?;
    text.trim()
        .parse::<u64>()
        .map_err(|_| invalid(at, format!("{text:?} is not a whole number from 0 up")))
}

/// A list of strings, or one string as a list of one.
pub(super) fn strings(value: &Value, at: &str) -> Result<Vec<String>, ComposeError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| scalar(item, &format!("{at}[{i}]")))
            .collect(),
        other => Ok(vec![scalar(other, at)?]),
    }
}

impl<'a> Obj<'a> {
    /// `value` as a mapping (null is an empty one).
    pub(super) fn new(value: &'a Value, at: &str) -> Result<Self, ComposeError> {
        let map = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => return Err(invalid(at, "expected a mapping (key: value lines)")),
        };
        Ok(Self {
            at: at.to_owned(),
            map,
            read: RefCell::new(BTreeSet::new()),
        })
    }

    /// Where this mapping is.
    pub(super) fn at(&self) -> &str {
        &self.at
    }

    /// Where `key` of this mapping is.
    pub(super) fn at_key(&self, key: &str) -> String {
        join(&self.at, key)
    }

    /// Every key and value, marking each read.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        let map = self.map;
        if let Some(map) = map {
            self.read.borrow_mut().extend(map.keys().cloned());
        }
        map.into_iter().flat_map(|m| m.iter())
    }

    /// The value of `key` (a null one counts as absent), marking it read.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.read.borrow_mut().insert(key.to_owned());
        self.map?.get(key).filter(|v| !v.is_null())
    }

    /// The mapping under `key`.
    pub(super) fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, ComposeError> {
        self.get(key)
            .map(|v| Obj::new(v, &self.at_key(key)))
            .transpose()
    }

    /// The text of `key`.
    pub(super) fn text(&self, key: &str) -> Result<Option<String>, ComposeError> {
        self.get(key)
            .map(|v| scalar(v, &self.at_key(key)))
            .transpose()
    }

    /// The whole number of `key`.
    pub(super) fn whole(&self, key: &str) -> Result<Option<u64>, ComposeError> {
        self.get(key)
            .map(|v| whole(v, &self.at_key(key)))
            .transpose()
    }

    /// The whole number of `key`, within `u32`.
    pub(super) fn count(&self, key: &str) -> Result<Option<u32>, ComposeError> {
        self.whole(key)?
            .map(|n| {
                u32::try_from(n)
                    .map_err(|_| invalid(&self.at_key(key), format!("{n} is too large")))
            })
            .transpose()
    }

    /// The decimal number of `key`.
    pub(super) fn decimal(&self, key: &str) -> Result<Option<f64>, ComposeError> {
        self.text(key)?
            .map(|text| {
                text.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| invalid(&self.at_key(key), format!("{text:?} is not a number")))
            })
            .transpose()
    }

    /// The boolean of `key` (`true`/`false`, also as strings).
    pub(super) fn flag(&self, key: &str) -> Result<Option<bool>, ComposeError> {
        self.text(key)?
            .map(|text| match text.trim() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                other => Err(invalid(
                    &self.at_key(key),
                    format!("{other:?} is not true or false"),
                )),
            })
            .transpose()
    }

    /// The duration of `key` (`10s`, `1m30s`), in milliseconds.
    pub(super) fn duration_ms(&self, key: &str) -> Result<Option<u64>, ComposeError> {
        self.text(key)?
            .map(|text| {
                knit_scheduler::spec::parse_duration_ms(&text)
                    .map_err(|e| invalid(&self.at_key(key), e.to_string()))
            })
            .transpose()
    }

    /// The list of strings (or the one string) of `key`.
    pub(super) fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ComposeError> {
        self.get(key)
            .map(|v| strings(v, &self.at_key(key)))
            .transpose()
    }

    /// The list under `key` (a single value is refused: Compose wants a list there).
    pub(super) fn list(&self, key: &str) -> Result<&'a [Value], ComposeError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(invalid(
                &self.at_key(key),
                "expected a list (lines starting with -)",
            )),
        }
    }

    /// Reports the keys nobody read: a key in `rules` as it says, an extension (`x-...`)
    /// not at all, and any other with a warning that knit does not read it.
    pub(super) fn unread(
        &self,
        warnings: &mut Vec<String>,
        rules: &[(&str, Unread)],
    ) -> Result<(), ComposeError> {
        let read = self.read.borrow();
        let keys = self.map.into_iter().flat_map(|m| m.keys());
        for key in keys.filter(|k| !read.contains(*k) && !k.starts_with("x-")) {
            let at = self.at_key(key);
            match rules.iter().find(|(k, _)| k == key).map(|(_, rule)| *rule) {
                Some(Unread::Refuse(what)) => return Err(invalid(&at, what)),
                Some(Unread::Warn(why)) => warnings.push(format!("{at}: {why}; ignored")),
                None => warnings.push(format!("{at}: knit does not read this key; ignored")),
            }
        }
        Ok(())
    }
}
