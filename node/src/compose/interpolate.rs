//! Variables in a Compose file, as `docker compose` and `docker stack deploy` read them:
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` and `${VAR?message}` (an error), `${VAR:+other}` and `${VAR+other}`,
//! and `$$` for a literal `$`. Values come from the environment, then from the `.env`
//! file beside the (first) Compose file; defaults may hold variables themselves.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ComposeError;

/// Where variables come from: the environment first, then `.env`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Variables {
    /// The client's environment.
    pub(crate) env: BTreeMap<String, String>,
    /// The `.env` file beside the Compose file.
    pub(crate) dotenv: BTreeMap<String, String>,
}

impl Variables {
    /// The value of `name`, if it is set.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }
}

/// How deep defaults may nest variables (`${A:-${B:-${C}}}`).
const NESTING_MAX: usize = 8;

/// Replaces the variables in every string of `value` (not in keys), `at` naming where it
/// is for errors.
pub(crate) fn interpolate(
    value: &mut Value,
    at: &str,
    vars: &Variables,
) -> Result<(), ComposeError> {
    match value {
        Value::String(text) => *text = substitute(text, at, vars, 0)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{at}[{i}]"), vars)?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                interpolate(item, &join(at, key), vars)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// `at.key`, or `key` at the top.
pub(crate) fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// `text` with its variables replaced.
fn substitute(
    text: &str,
    at: &str,
    vars: &Variables,
    depth: usize,
) -> Result<String, ComposeError> {
    let bad = |why: String| ComposeError::Invalid {
        at: at.to_owned(),
        why,
    };
    if depth > NESTING_MAX {
        return Err(bad(format!(
            "variables nest more than {NESTING_MAX} deep in {text:?}"
        )));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(|| {
                bad(format!(
                    "unclosed ${{ in {text:?}; write ${{VAR}}, or $$ for a literal $"
                ))
            })?;
            out.push_str(&expand(&inner[..end], at, vars, depth)?);
            rest = &inner[end + 1..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if len == 0 {
                // A lone `$` stays as it is, as Compose leaves it.
                out.push('$');
            } else {
                out.push_str(vars.get(&rest[..len]).unwrap_or_default());
            }
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${`, counting nested ones.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One `${...}`'s value.
fn expand(expr: &str, at: &str, vars: &Variables, depth: usize) -> Result<String, ComposeError> {
    let bad = |why: String| ComposeError::Invalid {
        at: at.to_owned(),
        why,
    };
    let len = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(len);
    if name.is_empty() {
        return Err(bad(format!(
            "${{{expr}}} names no variable; write ${{VAR}} or ${{VAR:-default}}"
        )));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let nonempty = value.is_some_and(|v| !v.is_empty());
    let nested = |text: &str| substitute(text, at, vars, depth + 1);
    let (kind, arg) = match op {
        "" => return Ok(value.unwrap_or_default().to_owned()),
        _ => match op.get(..2) {
            Some(":-" | ":?" | ":+") => (&op[..2], &op[2..]),
            _ => (&op[..1], &op[1..]),
        },
    };
    match kind {
        ":-" if !nonempty => nested(arg),
        "-" if !set => nested(arg),
        ":-" | "-" => Ok(value.unwrap_or_default().to_owned()),
        ":?" if !nonempty => Err(required(name, &nested(arg)?, at)),
        "?" if !set => Err(required(name, &nested(arg)?, at)),
        ":?" | "?" => Ok(value.unwrap_or_default().to_owned()),
        ":+" if nonempty => nested(arg),
        "+" if set => nested(arg),
        ":+" | "+" => Ok(String::new()),
        _ => Err(bad(format!(
            "${{{expr}}}: unknown form; write ${{VAR}}, ${{VAR:-default}}, ${{VAR-default}}, ${{VAR:?message}} or ${{VAR:+other}}"
        ))),
    }
}

fn required(name: &str, message: &str, at: &str) -> ComposeError {
    let why = if message.is_empty() {
        format!("the variable {name} must be set (in the environment or .env)")
    } else {
        format!("the variable {name} must be set: {message}")
    };
    ComposeError::Invalid {
        at: at.to_owned(),
        why,
    }
}

/// Reads a `.env` or `env_file` file: `KEY=VALUE` lines, `#` comments, blank lines, an
/// optional `export `, and values in single quotes (kept as written) or double quotes
/// (with `\n`, `\"` and `\\`). A line with a key alone sets it to its value in `env`, or
/// leaves it out when `env` does not have it, as Compose does.
pub(crate) fn read_env_file(
    text: &str,
    file: &str,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut vars = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            if let Some(value) = env.get(line) {
                vars.insert(line.to_owned(), value.clone());
            }
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(ComposeError::Invalid {
                at: format!("{file}:{}", number + 1),
                why: format!("{line:?} is not KEY=VALUE"),
            });
        }
        vars.insert(key.to_owned(), unquote(value.trim()));
    }
    Ok(vars)
}

/// An env file's value: quoted, or bare up to a ` #` comment.
fn unquote(value: &str) -> String {
    if let Some(inner) = value
        .strip_prefix('\'')
        .and_then(|v| v.rfind('\'').map(|end| &v[..end]))
    {
        return inner.to_owned();
    }
    if let Some(inner) = value
        .strip_prefix('"')
        .and_then(|v| v.rfind('"').map(|end| &v[..end]))
    {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match (c, chars.clone().next()) {
                ('\\', Some('n')) => {
                    out.push('\n');
                    chars.next();
                }
                ('\\', Some(next @ ('"' | '\\'))) => {
                    out.push(next);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        return out;
    }
    match value.find(" #") {
        Some(comment) => value[..comment].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables {
            env: BTreeMap::from([
                ("TAG".to_owned(), "1.27".to_owned()),
                ("EMPTY".to_owned(), String::new()),
            ]),
            dotenv: BTreeMap::from([
                ("TAG".to_owned(), "from-dotenv".to_owned()),
                ("PORT".to_owned(), "8080".to_owned()),
            ]),
        }
    }

    fn sub(text: &str) -> Result<String, ComposeError> {
        substitute(text, "x", &vars(), 0)
    }

    #[test]
    fn reads_composes_forms() {
        assert_eq!(sub("nginx:${TAG}").unwrap(), "nginx:1.27");
        assert_eq!(sub("nginx:$TAG-x").unwrap(), "nginx:1.27-x");
        assert_eq!(sub("${PORT}").unwrap(), "8080", "from .env");
        assert_eq!(sub("${NOPE:-3}").unwrap(), "3");
        assert_eq!(sub("${EMPTY:-3}").unwrap(), "3");
        assert_eq!(sub("${EMPTY-3}").unwrap(), "");
        assert_eq!(sub("${NOPE-${PORT}}").unwrap(), "8080", "nested");
        assert_eq!(sub("${TAG:+set}${NOPE:+set}").unwrap(), "set");
        assert_eq!(sub("$$HOME and $").unwrap(), "$HOME and $");
        assert_eq!(sub("${NOPE}").unwrap(), "");
        let e = sub("${NOPE:?give a tag}").unwrap_err().to_string();
        assert!(e.contains("NOPE must be set: give a tag"), "{e}");
        assert!(sub("${TAG").unwrap_err().to_string().contains("unclosed"));
        assert!(sub("${:-x}").is_err());
        assert!(
            sub("${TAG/x}")
                .unwrap_err()
                .to_string()
                .contains("unknown form")
        );
    }

    #[test]
    fn only_strings_change() {
        let mut value: Value = serde_json::json!({"${TAG}": ["${TAG}", 3, {"k": "$PORT"}]});
        interpolate(&mut value, "", &vars()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"${TAG}": ["1.27", 3, {"k": "8080"}]})
        );
    }

    #[test]
    fn env_files_read_as_composes() {
        let env = BTreeMap::from([("FROM_ENV".to_owned(), "e".to_owned())]);
        let text = "# a comment\n\nA=1\nexport B = two words \nC='single $X'\nD=\"line\\nnext\"\nE=bare # comment\nFROM_ENV\nUNSET\n";
        let vars = read_env_file(text, ".env", &env).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "single $X");
        assert_eq!(vars["D"], "line\nnext");
        assert_eq!(vars["E"], "bare");
        assert_eq!(vars["FROM_ENV"], "e");
        assert!(!vars.contains_key("UNSET"));
        let e = read_env_file("A B=1\n", "web.env", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("web.env:1"), "{e}");
    }
}
