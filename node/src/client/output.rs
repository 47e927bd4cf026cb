//! How list commands print their rows, as `--format` asks: the command's own table,
//! `json` (one object per line, as `docker ... --format json` prints them), or a template
//! (`'{{.Name}} {{.Replicas}}'`, `'table {{.Name}}\t{{.Image}}'`; see [`super::template`]).

use std::io::Write;

use anyhow::{Context, Result};

use super::table::Table;
use super::template::{Row, Template, TemplateError};
use crate::cli::Format;

/// A row of a list command.
pub(crate) trait Record: Row {
    /// The command's own table, as a template: what `--format table` (the default) prints.
    const TABLE: &'static str;

    /// Lines shown under the row in the command's own table (why a node drained, say).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Prints `rows` to standard output as `format` asks.
pub(crate) fn print<R: Record>(rows: &[R], format: &Format) -> Result<()> {
    write_stdout(&render(rows, format)?)
}

/// The text [`print`] prints.
pub(crate) fn render<R: Record>(rows: &[R], format: &Format) -> Result<String, TemplateError> {
    match format {
        Format::Json => rows.iter().map(|row| Ok(row.json()? + "\n")).collect(),
        Format::Table => {
            let template = Template::parse(R::TABLE)?;
            debug_assert!(template.check::<R>().is_ok(), "{}: bad table", R::COMMAND);
            table(rows, &template, true)
        }
        Format::Template(template) => {
            template.check::<R>()?;
            if template.is_table() {
                return table(rows, template, false);
            }
            rows.iter()
                .map(|row| Ok(template.render(row)? + "\n"))
                .collect()
        }
    }
}

fn table<R: Record>(rows: &[R], template: &Template, notes: bool) -> Result<String, TemplateError> {
    let mut table = Table::default();
    table.push(&template.header::<R>());
    for row in rows {
        table.push(&template.render(row)?);
        if notes {
            row.notes().iter().for_each(|note| table.note(note));
        }
    }
    Ok(table.render())
}

/// Writes `text` to standard output; a reader that went away (`| head`) is no error.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}
