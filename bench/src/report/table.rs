//! Markdown tables: cells that show a value, or why there is none, with footnotes for
//! caveats and errors; `mqfs ÷ peer` ratio rows.

use std::fmt::Write;

use super::format::times;
use crate::results::{Blocked, Cell, Fanout, Grid, Latency, ManyWriters, Memory, RoundTrips, Throughput};
use crate::systems::System;

pub trait Caveat {
    fn caveat(&self) -> Option<&str>;
}

macro_rules! caveat {
    ($($t:ty),*) => {$(
        impl Caveat for $t {
            fn caveat(&self) -> Option<&str> {
                self.caveat.as_deref()
            }
        }
    )*};
}
caveat!(Throughput, Fanout, Latency, ManyWriters, Blocked, Memory);

impl Caveat for RoundTrips {
    fn caveat(&self) -> Option<&str> {
        self.latency.caveat.as_deref()
    }
}

/// Footnotes under a table: caveats and errors of its cells.
#[derive(Default)]
pub struct Notes(Vec<String>);

impl Notes {
    pub fn mark(&mut self, what: String, note: &str) -> String {
        self.mark_text(format!("{what}: {note}"))
    }

    /// A note that holds for every cell it marks (one footnote, however many cells).
    fn mark_text(&mut self, text: String) -> String {
        let index = match self.0.iter().position(|n| *n == text) {
            Some(i) => i,
            None => {
                self.0.push(text);
                self.0.len() - 1
            }
        };
        format!("<sup>{}</sup>", index + 1)
    }

    pub fn render(self, out: &mut String) {
        for (i, note) in self.0.iter().enumerate() {
            let _ = writeln!(out, "<sup>{}</sup> {}  ", i + 1, note.replace('|', "/"));
        }
        if !self.0.is_empty() {
            out.push('\n');
        }
    }
}

/// A cell's text: the value, or why there is none, with a footnote for caveats and errors.
/// A table row: `label`, then each of `cells` (one per column of `columns`) as [`show`]
/// writes it.
pub fn cells_row<T: Caveat>(
    label: &str,
    cells: &[Cell<T>],
    columns: &[String],
    notes: &mut Notes,
    text: impl Fn(&T) -> String,
) -> Vec<String> {
    let mut row = vec![label.to_string()];
    for (col, cell) in cells.iter().enumerate() {
        row.push(show(Some(cell), || format!("{label} {}", columns[col]), notes, &text));
    }
    row
}

pub fn show<T: Caveat>(
    cell: Option<&Cell<T>>,
    what: impl Fn() -> String,
    notes: &mut Notes,
    text: impl Fn(&T) -> String,
) -> String {
    match cell {
        None => "—".into(),
        Some(Ok(value)) => match value.caveat() {
            Some(caveat) => format!("{}{}", text(value), notes.mark(what(), caveat)),
            None => text(value),
        },
        Some(Err(e)) if e.starts_with("not installed") => "not installed".into(),
        Some(Err(e)) if e.starts_with("not measured") => {
            let reason = e.trim_start_matches("not measured").trim_start_matches(':').trim();
            format!("not measured{}", notes.mark_text(format!("not measured: {reason}")))
        }
        Some(Err(e)) => format!("error{}", notes.mark(what(), e)),
    }
}

pub fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "—".into())
}

/// `mqfs ÷ peer` rows for a grid of rates.
pub fn ratio_rows<T>(
    grid: &Grid<T>,
    mine: System,
    peers: &[System],
    value: impl Fn(&T) -> f64,
) -> Vec<Vec<String>> {
    let present = |peer: &&System| **peer != mine && grid.systems().any(|s| s == **peer);
    let label = |peer: System| format!("{} ÷ {}", mine.label(), peer.label());
    peers
        .iter()
        .filter(present)
        .map(|&peer| ratio_row(label(peer), grid, mine, peer, &value, times))
        .collect()
}

/// A row `label` of `mine`'s values over `base`'s, column by column, each written by `format`.
pub fn ratio_row<T>(
    label: String,
    grid: &Grid<T>,
    mine: System,
    base: System,
    value: impl Fn(&T) -> f64,
    format: fn(f64) -> String,
) -> Vec<String> {
    let cells = (0..grid.columns.len()).map(|col| {
        or_dash(ratio(grid.get(mine, col).map(&value), grid.get(base, col).map(&value)).map(format))
    });
    std::iter::once(label).chain(cells).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_not_measured_share_one_footnote_that_says_why() {
        let mut notes = Notes::default();
        let cell: Cell<Throughput> = Err("not measured: this mqfs has no disk store".into());
        for what in ["mqfs disk 64 B", "mqfs disk 4 KiB"] {
            let text = show(Some(&cell), || what.into(), &mut notes, |t| t.msgs_per_s.to_string());
            assert_eq!(text, "not measured<sup>1</sup>");
        }
        let mut out = String::new();
        notes.render(&mut out);
        assert_eq!(out, "<sup>1</sup> not measured: this mqfs has no disk store  \n\n");
    }
}
