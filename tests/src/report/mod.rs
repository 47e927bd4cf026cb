//! How the benchmark programs give their results: a run [`Header`] first, then
//! [`Table`]s of figures (built from [`Samples`]) and lines of notes, all on standard
//! output, as markdown for a reader (`--format table`, the default) or as one JSON object
//! per line for a script (`--format json`). Progress goes to standard error, so that
//! standard output holds the report only.
//!
//! In JSON every line is an object with a `"kind"`: `"header"` (once, first), `"row"`
//! (one per table row, with `"table"` naming its table and one field per column, keyed by
//! the column's name in lower case with words joined by `_`), or `"note"` (`"text"`).

mod header;
mod samples;
mod table;

use std::path::Path;

use serde_json::{Map, Value, json};

pub use header::Header;
pub use samples::{Samples, percentile};
pub use table::{Cell, MISSING, Table, key_of};

/// How a program prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Markdown: the header, tables sized to their content, notes as they are.
    #[default]
    Table,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The names `--format` accepts.
    pub const NAMES: [&'static str; 2] = ["table", "json"];

    /// The format named `name` (one of [`Format::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "table" => Some(Self::Table),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Prints a program's report in one format.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    format: Format,
}

impl Report {
    /// A report in `format`; prints nothing yet.
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// Collects this run's header (see [`Header::collect`]), prints it, and returns the
    /// report to print the rest with.
    pub fn start(program: &str, format: Format, knit: Option<&Path>) -> Self {
        let report = Self::new(format);
        report.header(&Header::collect(program, knit));
        report
    }

    /// The format it prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Prints the run header.
    pub fn header(&self, header: &Header) {
        print!("{}", self.render_header(header));
    }

    /// Prints `table`, named `name` in JSON rows.
    pub fn table(&self, name: &str, table: &Table) {
        print!("{}", self.render_table(name, table));
    }

    /// Prints `text` as it is (markdown) or as one note per non-empty line (JSON; a
    /// leading `- ` list mark dropped).
    pub fn text(&self, text: &str) {
        print!("{}", self.render_text(text, &Map::new()));
    }

    /// Like [`Report::text`], with more fields on each JSON note (not shown in markdown).
    pub fn text_with(&self, text: &str, fields: &Map<String, Value>) {
        print!("{}", self.render_text(text, fields));
    }

    /// Prints `notes`, if there are any.
    pub fn notes(&self, notes: &Notes) {
        if !notes.is_empty() {
            self.text(&notes.markdown());
        }
    }

    /// What [`Report::header`] prints.
    pub fn render_header(&self, header: &Header) -> String {
        match self.format {
            Format::Table => format!("{}\n", header.markdown()),
            Format::Json => json_line(&header.json()),
        }
    }

    /// What [`Report::table`] prints.
    pub fn render_table(&self, name: &str, table: &Table) -> String {
        match self.format {
            Format::Table => table.markdown(),
            Format::Json => table.json_rows(name).iter().map(json_line).collect(),
        }
    }

    /// What [`Report::text`] and [`Report::text_with`] print.
    pub fn render_text(&self, text: &str, fields: &Map<String, Value>) -> String {
        match self.format {
            Format::Table => format!("{text}\n"),
            Format::Json => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let mut note = json!({
                        "kind": "note",
                        "text": l.strip_prefix("- ").unwrap_or(l),
                    });
                    for (key, value) in fields {
                        note[key] = value.clone();
                    }
                    json_line(&note)
                })
                .collect(),
        }
    }
}

/// Lines said after a table: how long a cluster took to form, which trials failed and
/// why. Printed as a markdown list after a blank line, or as JSON notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    lines: Vec<String>,
}

impl Notes {
    /// No notes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `line`.
    pub fn add(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// Adds a `label: failed: …` line per failure and a `label: stopped early: …` line
    /// when the configuration was cut short.
    pub fn outcome(
        &mut self,
        label: &str,
        failures: impl IntoIterator<Item = impl std::fmt::Display>,
        aborted: Option<impl std::fmt::Display>,
    ) {
        for failure in failures {
            self.add(format!("{label}: failed: {failure}"));
        }
        if let Some(why) = aborted {
            self.add(format!("{label}: stopped early: {why}"));
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The notes as a markdown list after a blank line; empty when there are none.
    pub fn markdown(&self) -> String {
        if self.lines.is_empty() {
            return String::new();
        }
        let list: Vec<String> = self.lines.iter().map(|l| format!("- {l}")).collect();
        format!("\n{}", list.join("\n"))
    }
}

/// `value` on one line, with its newline.
fn json_line(value: &Value) -> String {
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::{Cell, Format, Header, Notes, Report, Table};

    fn header() -> Header {
        Header {
            program: "bench-x".into(),
            command: "bench-x --format json".into(),
            date: "2026-01-02 03:04:05 UTC".into(),
            git: None,
            knit: None,
            cpu: Some("EPYC".into()),
            cores: 2,
        }
    }

    fn table() -> Table {
        let mut t = Table::new(&["profile", "heal p50 (s)"]);
        t.row(vec![Cell::text("fast"), Cell::secs(Some(2270))]);
        t.row(vec![Cell::text("lan"), Cell::secs(None)]);
        t
    }

    fn lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn json_is_one_object_per_line() {
        let report = Report::new(Format::Json);
        let mut out = report.render_header(&header());
        out.push_str(&report.render_table("heal", &table()));
        let mut fields = Map::new();
        fields.insert("start_ms".into(), json!(3));
        out.push_str(&report.render_text("\n- fast: failed: timeout\nsecond\n", &fields));
        let objects = lines(&out);
        assert_eq!(objects.len(), 5, "{out}");
        assert_eq!(objects[0]["kind"], "header");
        assert_eq!(objects[0]["command"], "bench-x --format json");
        assert_eq!(
            objects[1],
            json!({"kind": "row", "table": "heal", "profile": "fast", "heal_p50_s": 2.27})
        );
        assert!(objects[2]["heal_p50_s"].is_null());
        assert_eq!(
            objects[3],
            json!({"kind": "note", "text": "fast: failed: timeout", "start_ms": 3})
        );
        assert_eq!(objects[4]["text"], "second");
    }

    #[test]
    fn markdown_is_header_table_and_text() {
        let report = Report::new(Format::Table);
        let out = format!(
            "{}{}{}",
            report.render_header(&header()),
            report.render_table("heal", &table()),
            report.render_text("\n- a note", &Map::new())
        );
        assert_eq!(
            out,
            "bench-x, run 2026-01-02 03:04:05 UTC on EPYC (2 cores)\n\n\
             Command: `bench-x --format json`\n\n\
             | profile | heal p50 (s) |\n\
             | ------- | -----------: |\n\
             | fast    |         2.27 |\n\
             | lan     |            – |\n\
             \n- a note\n"
        );
    }

    #[test]
    fn notes_are_a_list_or_json_notes() {
        let mut notes = Notes::new();
        assert_eq!(notes.markdown(), "");
        notes.add("5 peers, lan: formed in 1.2 s");
        notes.outcome("5 peers, lan", ["trial 2: timeout"], Some("no quorum"));
        notes.outcome("20 peers, lan", Vec::<String>::new(), None::<String>);
        let text = notes.markdown();
        assert_eq!(
            text,
            "\n- 5 peers, lan: formed in 1.2 s\n- 5 peers, lan: failed: trial 2: timeout\n\
             - 5 peers, lan: stopped early: no quorum"
        );
        let json = lines(&Report::new(Format::Json).render_text(&text, &Map::new()));
        assert_eq!(json.len(), 3);
        assert_eq!(json[2]["text"], "5 peers, lan: stopped early: no quorum");
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::from_name("json"), Some(Format::Json));
        assert_eq!(Format::from_name("table"), Some(Format::Table));
        assert_eq!(Format::from_name("xml"), None);
        assert!(Format::NAMES.iter().all(|n| Format::from_name(n).is_some()));
    }
}
