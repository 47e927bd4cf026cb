//! Text tables whose columns are as wide as their widest cell, as Docker prints them.
//!
//! Lines are given with their cells separated by tabs; every cell but a line's last is
//! padded to its column's width plus [`GAP`]. Notes (`^ why`) go under a row without
//! widening any column.

/// Spaces between two columns (Docker's tables use three).
const GAP: usize = 3;

/// A table being built.
#[derive(Debug, Default)]
pub(crate) struct Table {
    lines: Vec<Line>,
}

#[derive(Debug)]
enum Line {
    Cells(Vec<String>),
    /// Shown under the second column, after `^ `.
    Note(String),
}

impl Table {
    /// Adds a line of tab-separated cells (a newline in it starts another line).
    pub(crate) fn push(&mut self, line: &str) {
        for line in line.split('\n') {
            self.lines
                .push(Line::Cells(line.split('\t').map(str::to_owned).collect()));
        }
    }

    /// Adds a note under the last line.
    pub(crate) fn note(&mut self, text: &str) {
        self.lines.push(Line::Note(text.to_owned()));
    }

    /// The table, each line ending in a newline.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = Vec::new();
        for line in &self.lines {
            let Line::Cells(cells) = line else { continue };
            // A line's last cell is not part of a column: it can be as long as it likes.
            for (i, cell) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
                if widths.len() <= i {
                    widths.push(0);
                }
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in &self.lines {
            let mut text = String::new();
            match line {
                Line::Cells(cells) => {
                    for (i, cell) in cells.iter().enumerate() {
                        text.push_str(cell);
                        if i + 1 < cells.len() {
                            let pad = widths[i] - cell.chars().count() + GAP;
                            text.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
                Line::Note(note) => {
                    let indent = widths.first().map_or(0, |w| w + GAP);
                    text.extend(std::iter::repeat_n(' ', indent));
                    text.push_str("^ ");
                    text.push_str(note);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::default();
        table.push("NAME\tREPLICAS\tIMAGE");
        table.push("a-rather-long-name\t1/1\tbusybox");
        table.push("web\t10/10\tnginx:1.27");
        assert_eq!(
            table.render(),
            "NAME                 REPLICAS   IMAGE\n\
             a-rather-long-name   1/1        busybox\n\
             web                  10/10      nginx:1.27\n"
        );
    }

    #[test]
    fn last_cells_and_notes_widen_nothing() {
        let mut table = Table::default();
        table.push("ID\tLABELS");
        table.push("abc\tzone=a,disk=ssd,rack=r1-very-long");
        table.note("drained: disk 97% full");
        table.push("abcdef\t");
        assert_eq!(
            table.render(),
            "ID       LABELS\n\
             abc      zone=a,disk=ssd,rack=r1-very-long\n         ^ drained: disk 97% full\n\
             abcdef\n"
        );
    }

    #[test]
    fn a_table_without_tabs_is_its_lines() {
        let mut table = Table::default();
        table.push("one");
        table.push("two\nthree");
        assert_eq!(table.render(), "one\ntwo\nthree\n");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::default();
        table.push("é\tx");
        table.push("ab\ty");
        assert_eq!(table.render(), "é    x\nab   y\n");
    }
}
