//! A results table: named columns, rows of cells that carry both what a reader sees and
//! the value a script reads. It renders as a markdown table whose columns are as wide as
//! their widest cell (numbers right-aligned, text left-aligned), ready to paste into
//! BENCHMARKS.md, or as one JSON object per row.

use serde_json::{Map, Value};

/// What a cell shows where there is no figure (nothing measured, a failed run).
pub const MISSING: &str = "–";

/// Keys every JSON row starts with; a column named like one gets a suffix.
const RESERVED_KEYS: [&str; 2] = ["kind", "table"];

/// One cell: the text shown in the table and the value given in JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// What the markdown table shows.
    shown: String,
    /// What a JSON row holds for it: a number for a figure, a string for text, `null`
    /// for a missing figure.
    value: Value,
    /// Whether it is a figure (right-aligned) rather than text (left-aligned); missing
    /// and blank cells are neither and leave the column's alignment to the others.
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Figure,
    Text,
    Empty,
}

impl Cell {
    /// Text, left-aligned; a JSON string.
    pub fn text(text: impl Into<String>) -> Self {
        let shown: String = text.into();
        Self {
            value: Value::String(shown.clone()),
            shown,
            kind: Kind::Text,
        }
    }

    /// A whole number.
    pub fn int(n: impl Into<u64>) -> Self {
        let n: u64 = n.into();
        Self::figure(n.to_string(), Value::from(n))
    }

    /// A count (a length or an index).
    pub fn count(n: usize) -> Self {
        Self::figure(n.to_string(), Value::from(n))
    }

    /// `value` with `decimals` decimals, or [`MISSING`] (JSON `null`) for `None`.
    pub fn num(value: Option<f64>, decimals: usize) -> Self {
        match value {
            Some(v) if v.is_finite() => Self::figure(format!("{v:.decimals$}"), Value::from(v)),
            _ => Self::missing(),
        }
    }

    /// Milliseconds shown as seconds with two decimals (and given in JSON in seconds).
    pub fn secs(ms: Option<u64>) -> Self {
        // Milliseconds far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        Self::num(ms.map(|ms| ms as f64 / 1000.0), 2)
    }

    /// A whole number, or [`MISSING`] for `None`.
    pub fn opt_int(n: Option<u64>) -> Self {
        n.map_or_else(Self::missing, Self::int)
    }

    /// A figure shown as `shown` (a ratio `3/10`, a percentage `4.1%`, a range `2-3`)
    /// and given in JSON as `value`: right-aligned.
    pub fn figure(shown: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            shown: shown.into(),
            value: value.into(),
            kind: Kind::Figure,
        }
    }

    /// `ok` of `of` (trials that succeeded of those run), shown `ok/of`.
    pub fn ratio(ok: usize, of: usize) -> Self {
        Self::figure(
            format!("{ok}/{of}"),
            serde_json::json!({ "ok": ok, "of": of }),
        )
    }

    /// No figure: shows [`MISSING`], JSON `null`.
    pub fn missing() -> Self {
        Self {
            shown: MISSING.to_owned(),
            value: Value::Null,
            kind: Kind::Empty,
        }
    }

    /// Nothing at all (a row that failed before it had figures): empty, JSON `null`.
    pub fn blank() -> Self {
        Self {
            shown: String::new(),
            value: Value::Null,
            kind: Kind::Empty,
        }
    }

    /// What the table shows.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// What a JSON row holds.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// A table of results: a header of column names and rows of as many cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names as the markdown header shows them.
    columns: Vec<String>,
    /// One JSON key per column: the name in lower case, words joined by `_`.
    keys: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    cells: Vec<Cell>,
    /// More JSON fields for scripts (per-trial figures, failures); not shown in the table.
    extra: Map<String, Value>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(columns: &[&str]) -> Self {
        let mut keys: Vec<String> = Vec::with_capacity(columns.len());
        for column in columns {
            let base = key_of(column);
            let mut key = base.clone();
            let mut n = 2;
            while keys.contains(&key) || RESERVED_KEYS.contains(&key.as_str()) {
                key = format!("{base}_{n}");
                n += 1;
            }
            keys.push(key);
        }
        Self {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            keys,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    ///
    /// # Panics
    ///
    /// When `cells` does not have one cell per column (a programmer error).
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.row_with(cells, Map::new());
    }

    /// Adds a row with more fields for its JSON object (not shown in the table). A field
    /// named like a column gives way to the column.
    ///
    /// # Panics
    ///
    /// When `cells` does not have one cell per column (a programmer error).
    pub fn row_with(&mut self, cells: Vec<Cell>, extra: Map<String, Value>) {
        assert_eq!(
            cells.len(),
            self.columns.len(),
            "a row has one cell per column ({:?})",
            self.columns
        );
        self.rows.push(Row { cells, extra });
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The JSON key of each column.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Whether column `i` holds figures only (missing and blank cells aside).
    fn is_numeric(&self, i: usize) -> bool {
        self.rows.iter().all(|r| r.cells[i].kind != Kind::Text)
    }

    /// The markdown table: every column as wide as its widest cell or name, figures
    /// right-aligned (`---:`), text left-aligned (`---`). Ends with a newline.
    pub fn markdown(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width(&r.cells[i].shown))
                    .chain([width(&self.columns[i]), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| self.is_numeric(i))
            .collect();
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        let mut out = line(
            self.columns
                .iter()
                .zip(&widths)
                .map(|(c, &w)| pad(c, w, false))
                .collect(),
        );
        out.push_str(&line(
            widths
                .iter()
                .zip(&numeric)
                .map(|(&w, &right)| {
                    if right {
                        format!("{}:", "-".repeat(w - 1))
                    } else {
                        "-".repeat(w)
                    }
                })
                .collect(),
        ));
        for row in &self.rows {
            out.push_str(&line(
                row.cells
                    .iter()
                    .enumerate()
                    .map(|(i, cell)| pad(&cell.shown, widths[i], numeric[i]))
                    .collect(),
            ));
        }
        out
    }

    /// One JSON object per row: `"kind": "row"`, `"table": name`, then one field per
    /// column (by its key) and the row's extra fields.
    pub fn json_rows(&self, name: &str) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                let mut object = Map::new();
                object.insert("kind".into(), "row".into());
                object.insert("table".into(), name.into());
                for (key, cell) in self.keys.iter().zip(&row.cells) {
                    object.insert(key.clone(), cell.value.clone());
                }
                for (key, value) in &row.extra {
                    if !object.contains_key(key) {
                        object.insert(key.clone(), value.clone());
                    }
                }
                Value::Object(object)
            })
            .collect()
    }
}

/// The JSON key of a column name: letters and digits in lower case, every other run of
/// characters one `_` (`"detect p50 (s)"` -> `detect_p50_s`).
pub fn key_of(column: &str) -> String {
    let mut key = String::with_capacity(column.len());
    for c in column.chars() {
        if c.is_alphanumeric() {
            key.extend(c.to_lowercase());
        } else if !key.is_empty() && !key.ends_with('_') {
            key.push('_');
        }
    }
    while key.ends_with('_') {
        key.pop();
    }
    if key.is_empty() {
        key.push_str("column");
    }
    key
}

/// The width of `text` in a monospaced table: one per character (`–`, `µ` and `✗` are
/// one column wide, though several bytes).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` padded with spaces to `width`, on the left when `right` is set.
fn pad(text: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(self::width(text)));
    if right {
        format!("{fill}{text}")
    } else {
        format!("{text}{fill}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Cell, Table, key_of};

    fn sample() -> Table {
        let mut t = Table::new(&["peers", "profile", "detect p50 (s)", "trials ok"]);
        t.row(vec![
            Cell::count(5),
            Cell::text("lan"),
            Cell::secs(Some(2270)),
            Cell::ratio(10, 10),
        ]);
        t.row(vec![
            Cell::count(20),
            Cell::text("fast-µ"),
            Cell::secs(None),
            Cell::ratio(9, 10),
        ]);
        t
    }

    #[test]
    fn columns_size_to_their_content() {
        let text = sample().markdown();
        let expected = "\
| peers | profile | detect p50 (s) | trials ok |
| ----: | ------- | -------------: | --------: |
|     5 | lan     |           2.27 |     10/10 |
|    20 | fast-µ  |              – |      9/10 |
";
        assert_eq!(text, expected);
        // Every line as wide as the header, counted in characters.
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}");
    }

    #[test]
    fn a_cell_wider_than_its_name_widens_the_column() {
        let mut t = Table::new(&["n", "path"]);
        t.row(vec![Cell::int(123_456_u64), Cell::text("(a) direct")]);
        t.row(vec![Cell::blank(), Cell::text("b")]);
        assert_eq!(
            t.markdown(),
            "| n      | path       |\n| -----: | ---------- |\n| 123456 | (a) direct |\n|        | b          |\n"
        );
    }

    #[test]
    fn text_in_a_column_of_figures_aligns_it_left() {
        let mut t = Table::new(&["requests/s"]);
        t.row(vec![Cell::num(Some(9950.4), 0)]);
        t.row(vec![Cell::text("failed: refused")]);
        let text = t.markdown();
        assert!(text.contains("| 9950            |"), "{text}");
        assert!(text.lines().nth(1).unwrap().ends_with("- |"), "{text}");
    }

    #[test]
    fn json_rows_carry_values_by_column_key() {
        let mut t = sample();
        let mut extra = serde_json::Map::new();
        extra.insert("per_trial".into(), json!([2270]));
        extra.insert("peers".into(), json!("shadowed"));
        t.row_with(
            vec![
                Cell::count(3),
                Cell::text("wan"),
                Cell::figure("+12% ✗", 0.12),
                Cell::ratio(0, 1),
            ],
            extra,
        );
        let rows = t.json_rows("detect");
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            json!({"kind": "row", "table": "detect", "peers": 5, "profile": "lan",
                   "detect_p50_s": 2.27, "trials_ok": {"ok": 10, "of": 10}})
        );
        assert!(rows[1]["detect_p50_s"].is_null());
        assert_eq!(rows[2]["peers"], 3);
        assert_eq!(rows[2]["per_trial"], json!([2270]));
        assert_eq!(rows[2]["detect_p50_s"], 0.12);
    }

    #[test]
    fn keys_are_words_joined_and_unique() {
        assert_eq!(key_of("detect p50 (s)"), "detect_p50_s");
        assert_eq!(key_of("heal − detect p50 (s)"), "heal_detect_p50_s");
        assert_eq!(key_of("false suspect / down"), "false_suspect_down");
        assert_eq!(key_of("(—)"), "column");
        let t = Table::new(&["p99 (ms)", "p99 ms", "kind", "table"]);
        assert_eq!(t.keys(), ["p99_ms", "p99_ms_2", "kind_2", "table_2"]);
    }

    #[test]
    #[should_panic(expected = "one cell per column")]
    fn a_short_row_is_a_bug() {
        Table::new(&["a", "b"]).row(vec![Cell::missing()]);
    }
}
