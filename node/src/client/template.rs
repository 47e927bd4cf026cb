//! Go-template-like `--format` strings, as Docker's CLI takes them: `'{{.Name}} {{.Replicas}}'`
//! prints one line per row, `'table {{.Name}}\t{{.Image}}'` prints a header and aligns the
//! columns, `'{{json .}}'` prints the whole row as JSON.
//!
//! This is not Go's `text/template`: it knows fields (`{{.Name}}`), the functions `json`,
//! `upper` and `lower` applied to one field or to the row (`{{json .}}`), and the escapes
//! `\t` and `\n` (typed as two characters, as a shell passes them). Conditionals, ranges,
//! pipelines and nested fields are refused with a message, never half-rendered. A field is
//! checked against the row's fields before anything is printed, so a typo prints nothing
//! but the list of fields there are.

use std::fmt;

/// The longest format string taken; anything longer is not a format.
const TEMPLATE_BYTES_MAX: usize = 4096;
/// How much of a broken action an error message quotes.
const QUOTE_CHARS_MAX: usize = 40;

/// A field a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// As templates name it: `Name`, `DesiredState`.
    pub(crate) name: &'static str,
    /// Its column title in a table: `NAME`, `DESIRED STATE`.
    pub(crate) header: &'static str,
}

impl Field {
    pub(crate) const fn new(name: &'static str, header: &'static str) -> Self {
        Self { name, header }
    }
}

/// A row a template renders.
pub(crate) trait Row {
    /// The command whose rows these are, for messages: `service ls`.
    const COMMAND: &'static str;
    /// The fields templates may name, in the order a message lists them.
    const FIELDS: &'static [Field];
    /// The value of the field `name`, one of [`Row::FIELDS`].
    fn field(&self, name: &str) -> String;
    /// The whole row as one line of JSON (what `--format json` prints for it).
    fn json(&self) -> serde_json::Result<String>;
}

/// Why a format string cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TemplateError {
    #[error("the format is {0} bytes long; the most is {TEMPLATE_BYTES_MAX}")]
    TooLong(usize),
    #[error("`{{{{{0}` has no closing `}}}}`: write a field as {{{{.Name}}}}")]
    Unclosed(String),
    #[error("`{{{{}}}}` is empty: name a field, e.g. {{{{.Name}}}}")]
    Empty,
    #[error(
        "`{{{{{0}}}}}` is not understood: write a field ({{{{.Name}}}}), the whole row ({{{{json .}}}}), or json, upper or lower of a field ({{{{upper .Name}}}}); conditionals, ranges and pipelines are not supported"
    )]
    Unsupported(String),
    #[error("unknown function `{0}`: the functions are json, upper and lower")]
    UnknownFunction(String),
    #[error("unknown field .{field} for `{command}`{hint}; the fields are {available}")]
    UnknownField {
        field: String,
        command: &'static str,
        /// ` (did you mean .Name?)`, or nothing.
        hint: String,
        available: String,
    },
    #[error("cannot encode the row as JSON: {0}")]
    Json(String),
}

impl From<serde_json::Error> for TemplateError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// `table ...`: a header line first, and columns aligned on tabs.
    table: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Action { func: Func, arg: Arg },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Print,
    Json,
    Upper,
    Lower,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    /// `.`: the whole row.
    Row,
    /// `.Name`.
    Field(String),
}

impl Template {
    /// Parses a format string: `table` followed by a template, or a template.
    pub(crate) fn parse(format: &str) -> Result<Self, TemplateError> {
        if format.len() > TEMPLATE_BYTES_MAX {
            return Err(TemplateError::TooLong(format.len()));
        }
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t', '{']) => (true, rest),
            _ => (false, format),
        };
        // Docker trims the spaces around a format (`table {{.Name}}` starts at `{{`).
        let mut rest = body.trim_matches(' ');
        let mut parts = Vec::new();
        while let Some(start) = rest.find("{{") {
            push_text(&mut parts, &rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(TemplateError::Unclosed(quote(after)));
            };
            parts.push(action(&after[..end])?);
            rest = &after[end + 2..];
        }
        push_text(&mut parts, rest);
        Ok(Self { table, parts })
    }

    /// Whether this is a `table` format.
    pub(crate) fn is_table(&self) -> bool {
        self.table
    }

    /// Checks that every field named is one of `R`'s.
    pub(crate) fn check<R: Row>(&self) -> Result<(), TemplateError> {
        for part in &self.parts {
            let Part::Action {
                arg: Arg::Field(name),
                ..
            } = part
            else {
                continue;
            };
            if R::FIELDS.iter().any(|f| f.name == name) {
                continue;
            }
            let hint = R::FIELDS
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(name))
                .map(|f| format!(" (did you mean .{}?)", f.name))
                .unwrap_or_default();
            let available: Vec<&str> = R::FIELDS.iter().map(|f| f.name).collect();
            return Err(TemplateError::UnknownField {
                field: name.clone(),
                command: R::COMMAND,
                hint,
                available: available.join(", "),
            });
        }
        Ok(())
    }

    /// The header line of a table: each field's title where the field is.
    pub(crate) fn header<R: Row>(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Action {
                    arg: Arg::Field(name),
                    ..
                } => {
                    let title = R::FIELDS.iter().find(|f| f.name == name);
                    out.push_str(title.map_or(name.as_str(), |f| f.header));
                }
                Part::Action { arg: Arg::Row, .. } => {}
            }
        }
        out
    }

    /// Renders one row. Call [`Template::check`] first: an unknown field renders empty.
    pub(crate) fn render<R: Row>(&self, row: &R) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Action { func, arg } => {
                    let value = match arg {
                        Arg::Row => row.json()?,
                        Arg::Field(name) => row.field(name),
                    };
                    match (func, arg) {
                        (Func::Json, Arg::Field(_)) => {
                            out.push_str(&serde_json::to_string(&value)?);
                        }
                        (Func::Upper, _) => out.push_str(&value.to_uppercase()),
                        (Func::Lower, _) => out.push_str(&value.to_lowercase()),
                        (Func::Print | Func::Json, _) => out.push_str(&value),
                    }
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.table {
            f.write_str("table ")?;
        }
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(&text.replace('\t', "\\t").replace('\n', "\\n"))?,
                Part::Action { func, arg } => {
                    let func = match func {
                        Func::Print => "",
                        Func::Json => "json ",
                        Func::Upper => "upper ",
                        Func::Lower => "lower ",
                    };
                    match arg {
                        Arg::Row => write!(f, "{{{{{func}.}}}}")?,
                        Arg::Field(name) => write!(f, "{{{{{func}.{name}}}}}")?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adds literal text, with `\t` and `\n` turned into a tab and a newline as Docker does.
fn push_text(parts: &mut Vec<Part>, text: &str) {
    if !text.is_empty() {
        parts.push(Part::Text(text.replace("\\t", "\t").replace("\\n", "\n")));
    }
}

/// Parses what is between `{{` and `}}`.
fn action(inside: &str) -> Result<Part, TemplateError> {
    let words: Vec<&str> = inside.split_whitespace().collect();
    let unsupported = || TemplateError::Unsupported(quote(inside.trim()));
    let (func, arg) = match words.as_slice() {
        [] => return Err(TemplateError::Empty),
        [arg] => (Func::Print, *arg),
        [func, arg] => {
            let func = match *func {
                "json" => Func::Json,
                "upper" => Func::Upper,
                "lower" => Func::Lower,
                "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" => {
                    return Err(unsupported());
                }
                other if other.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    return Err(TemplateError::UnknownFunction((*other).to_owned()));
                }
                _ => return Err(unsupported()),
            };
            (func, *arg)
        }
        _ => return Err(unsupported()),
    };
    let arg = match arg.strip_prefix('.') {
        Some("") => Arg::Row,
        Some(name) if is_identifier(name) => Arg::Field(name.to_owned()),
        _ => return Err(unsupported()),
    };
    if arg == Arg::Row && matches!(func, Func::Upper | Func::Lower) {
        return Err(unsupported());
    }
    Ok(Part::Action { func, arg })
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The start of `text`, for a message.
fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE_CHARS_MAX).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pet {
        name: &'static str,
        legs: u32,
    }

    impl Row for Pet {
        const COMMAND: &'static str = "pet ls";
        const FIELDS: &'static [Field] = &[
            Field::new("Name", "NAME"),
            Field::new("Legs", "LEGS"),
            Field::new("DesiredState", "DESIRED STATE"),
        ];
        fn field(&self, name: &str) -> String {
            match name {
                "Name" => self.name.to_owned(),
                "Legs" => self.legs.to_string(),
                _ => "running".to_owned(),
            }
        }
        fn json(&self) -> serde_json::Result<String> {
            serde_json::to_string(&serde_json::json!({"name": self.name, "legs": self.legs}))
        }
    }

    const CAT: Pet = Pet {
        name: "Tom \"the\" cat",
        legs: 4,
    };

    fn render(format: &str) -> Result<String, TemplateError> {
        let template = Template::parse(format)?;
        template.check::<Pet>()?;
        template.render(&CAT)
    }

    #[test]
    fn fields_and_text_render_in_order() {
        assert_eq!(
            render("{{.Name}} has {{ .Legs }} legs").unwrap(),
            "Tom \"the\" cat has 4 legs"
        );
        assert_eq!(render("plain").unwrap(), "plain");
        assert_eq!(render("").unwrap(), "");
    }

    #[test]
    fn escapes_become_tabs_and_newlines() {
        assert_eq!(
            render(r"{{.Name}}\t{{.Legs}}\n").unwrap(),
            "Tom \"the\" cat\t4\n"
        );
        // A real tab passes through too.
        assert_eq!(render("{{.Legs}}\t{{.Legs}}").unwrap(), "4\t4");
    }

    #[test]
    fn table_prefix_gives_a_header() {
        let template = Template::parse(r"table {{.Name}}\t{{.DesiredState}}").unwrap();
        assert!(template.is_table());
        assert_eq!(template.header::<Pet>(), "NAME\tDESIRED STATE");
        assert_eq!(template.render(&CAT).unwrap(), "Tom \"the\" cat\trunning");
        // `table` alone is a table with no columns; a word that starts with it is text.
        assert!(Template::parse("table").unwrap().is_table());
        assert!(!Template::parse("tablet {{.Name}}").unwrap().is_table());
        assert!(!Template::parse("{{.Name}} table").unwrap().is_table());
    }

    #[test]
    fn functions_apply_to_a_field_or_the_row() {
        assert_eq!(
            render("{{json .}}").unwrap(),
            r#"{"legs":4,"name":"Tom \"the\" cat"}"#
        );
        assert_eq!(
            render("{{.}}").unwrap(),
            r#"{"legs":4,"name":"Tom \"the\" cat"}"#
        );
        assert_eq!(render("{{json .Name}}").unwrap(), r#""Tom \"the\" cat""#);
        assert_eq!(render("{{upper .Name}}").unwrap(), "TOM \"THE\" CAT");
        assert_eq!(render("{{lower .Name}}").unwrap(), "tom \"the\" cat");
    }

    #[test]
    fn unknown_field_names_the_fields_there_are() {
        let err = render("{{.Name}} {{.Tail}}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown field .Tail for `pet ls`; the fields are Name, Legs, DesiredState"
        );
        let err = render("{{.name}}").unwrap_err();
        assert!(err.to_string().contains("(did you mean .Name?)"), "{err}");
    }

    #[test]
    fn unclosed_and_empty_actions_are_refused() {
        let err = Template::parse("{{.Name}} {{.Legs").unwrap_err();
        assert_eq!(err, TemplateError::Unclosed(".Legs".into()));
        assert!(err.to_string().contains("has no closing `}}`"), "{err}");
        assert_eq!(Template::parse("{{ }}").unwrap_err(), TemplateError::Empty);
    }

    #[test]
    fn go_template_features_are_refused_not_misread() {
        for format in [
            "{{if .Name}}x{{end}}",
            "{{range .Legs}}",
            "{{end}}",
            "{{.Name | upper}}",
            "{{.Spec.Name}}",
            "{{json}}",
            "{{upper .}}",
            "{{\"text\"}}",
        ] {
            match Template::parse(format) {
                Err(TemplateError::Unsupported(_) | TemplateError::UnknownFunction(_)) => {}
                other => panic!("{format}: {other:?}"),
            }
        }
        assert!(matches!(
            Template::parse("{{if .Name}}"),
            Err(TemplateError::Unsupported(_))
        ));
        assert_eq!(
            Template::parse("{{title .Name}}").unwrap_err(),
            TemplateError::UnknownFunction("title".into())
        );
    }

    #[test]
    fn stray_closing_braces_are_text() {
        assert_eq!(render("}} {{.Legs}} }}").unwrap(), "}} 4 }}");
    }

    #[test]
    fn long_formats_are_refused() {
        let long = "x".repeat(TEMPLATE_BYTES_MAX + 1);
        assert_eq!(
            Template::parse(&long).unwrap_err(),
            TemplateError::TooLong(long.len())
        );
    }

    #[test]
    fn display_gives_back_an_equivalent_format() {
        for format in [r"table {{.Name}}\t{{json .}}", "{{upper .Name}} x"] {
            let template = Template::parse(format).unwrap();
            assert_eq!(Template::parse(&template.to_string()).unwrap(), template);
        }
    }
}
