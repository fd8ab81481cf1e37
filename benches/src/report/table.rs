//! A free-form table under a section's figures: the detail a section has
//! beyond its targeted figures (one row per configuration, say), rendered
//! after the figures table with a caption of its own. Cells are text,
//! formatted by the caller with [`fmt_num`](super::fmt_num) and friends.

use std::fmt::Write as _;

use super::fmt::cell;

/// A table: a caption, its columns and its rows of cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// One line said above the table.
    pub caption: String,
    /// Column headings, each with whether its cells are numbers (right
    /// aligned).
    pub columns: Vec<(String, bool)>,
    /// Rows of cells, one per column (missing cells are left empty).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with `caption` and `columns` (heading, numeric).
    pub fn new(caption: impl Into<String>, columns: &[(&str, bool)]) -> Table {
        Table {
            caption: caption.into(),
            columns: columns.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table in markdown, caption first, then a blank line.
    pub(super) fn render(&self, md: &mut String) {
        if self.columns.is_empty() {
            return;
        }
        if !self.caption.is_empty() {
            let _ = writeln!(md, "{}\n", self.caption.replace('\n', " "));
        }
        let heads: Vec<String> = self.columns.iter().map(|(c, _)| cell(c)).collect();
        let _ = writeln!(md, "| {} |", heads.join(" | "));
        let rule: Vec<&str> = self
            .columns
            .iter()
            .map(|(_, numeric)| if *numeric { "---:" } else { "---" })
            .collect();
        let _ = writeln!(md, "|{}|", rule.join("|"));
        for row in &self.rows {
            let cells: Vec<String> = (0..self.columns.len())
                .map(|i| row.get(i).map_or(String::new(), |c| cell(c)))
                .collect();
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caption_alignment_and_short_rows() {
        let mut t = Table::new("Per configuration.", &[("case", false), ("rate", true)]);
        t.row(vec!["a | b".into(), "1,000 /s".into()]);
        t.row(vec!["c".into()]);
        let mut md = String::new();
        t.render(&mut md);
        assert_eq!(
            md,
            "Per configuration.\n\n| case | rate |\n|---|---:|\n| a \\| b | 1,000 /s |\n| c |  |\n\n"
        );
    }
}
