//! Printing: aligned tables for people, JSON for scripts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use keyshift_core::rotation::PhaseOutcome;
use keyshift_core::Timestamp;
use serde::Serialize;

/// Spaces between two columns.
const GAP: usize = 3;

/// A table of plain aligned columns, like `kubectl get`: a header row in
/// capitals, then one row per item. Cells are single-line (control
/// characters become spaces); the last column is not padded.
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<const N: usize>(headers: [&str; N]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row; missing cells are empty, extra cells are kept.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| one_line(&c.into())).collect());
        self
    }

    /// Whether the table has no row besides the headers.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = width - cell.chars().count() + GAP;
                    let _ = write!(line, "{cell}{:pad$}", "");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Replaces control characters (newlines in an error message) with spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A cell for an optional value: `-` when absent.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A timestamp as RFC 3339, as the API gives it.
pub fn ts(t: Timestamp) -> String {
    t.to_string()
}

/// A duration for a table: `412ms`, `4.1s`, `3m 12s`, `2h 03m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A phase outcome's API name.
pub fn outcome(o: PhaseOutcome) -> &'static str {
    match o {
        PhaseOutcome::Ok => "ok",
        PhaseOutcome::Failed => "failed",
        PhaseOutcome::Cancelled => "cancelled",
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints a table on stdout, or `empty` on stderr when it has no rows (so
/// scripts reading stdout see nothing).
pub fn print_table(table: &Table, empty: &str) -> anyhow::Result<()> {
    if table.is_empty() {
        eprintln!("{empty}");
        return Ok(());
    }
    std::io::stdout()
        .lock()
        .write_all(table.render().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = Table::new(["NAME", "KIND", "CURRENT"]);
        t.row(["prod/orders/db", "redis", "12"]);
        t.row(["a", "api-key", "1"]);
        assert_eq!(
            t.render(),
            "NAME             KIND      CURRENT\n\
             prod/orders/db   redis     12\n\
             a                api-key   1\n"
        );
    }

    #[test]
    fn last_column_is_not_padded_and_empty_cells_leave_no_trailing_space() {
        let mut t = Table::new(["A", "B"]);
        t.row(["x", ""]);
        t.row(["yyyy", "long last column"]);
        let out = t.render();
        assert!(out.lines().all(|l| !l.ends_with(' ')), "{out:?}");
        assert_eq!(out, "A      B\nx\nyyyy   long last column\n");
    }

    #[test]
    fn cells_are_single_line_and_counted_in_characters() {
        let mut t = Table::new(["PHASE", "ERROR"]);
        t.row(["générer", "line one\nline two"]);
        t.row(["x", "-"]);
        assert_eq!(
            t.render(),
            "PHASE     ERROR\ngénérer   line one line two\nx         -\n"
        );
    }

    #[test]
    fn empty_table_is_reported_empty() {
        let t = Table::new(["A"]);
        assert!(t.is_empty());
    }

    #[test]
    fn durations_read_well_at_every_scale() {
        assert_eq!(duration(Duration::from_millis(412)), "412ms");
        assert_eq!(duration(Duration::from_millis(4_130)), "4.1s");
        assert_eq!(duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(duration(Duration::from_secs(2 * 3600 + 180)), "2h 03m");
    }

    #[test]
    fn missing_values_show_a_dash() {
        assert_eq!(or_dash(None::<u32>), "-");
        assert_eq!(or_dash(Some(3)), "3");
    }
}
