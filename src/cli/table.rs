//! The fixed-width tables `backstop failures` and `backstop requests` print: columns as
//! wide as their longest cell up to a cap, numbers right-aligned, and the last column
//! given whatever width the terminal has left.

use super::daily_files::fit;

/// How a table lays out its columns.
pub struct Layout<'a, const N: usize> {
    pub headers: [&'a str; N],
    /// Widest each column but the last may be.
    pub caps: &'a [usize],
    /// Columns aligned to the right (numbers).
    pub right: &'a [usize],
}

impl<const N: usize> Layout<'_, N> {
    /// `rows` under the headers, fitted to `width` columns of text.
    pub fn render(&self, rows: &[[String; N]], width: usize) -> String {
        let fixed = N - 1;
        let widths: Vec<usize> = (0..fixed)
            .map(|i| {
                let longest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
                longest.max(self.headers[i].len()).min(self.caps[i])
            })
            .collect();
        let used: usize = widths.iter().map(|w| w + 2).sum();
        let last_width = width.saturating_sub(used).max(10);
        let mut out = String::new();
        let mut line = |cells: &[String; N]| {
            let mut text = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = fit(&cells[i], *w);
                if self.right.contains(&i) {
                    text.push_str(&format!("{cell:>w$}  "));
                } else {
                    text.push_str(&format!("{cell:<w$}  "));
                }
            }
            text.push_str(&fit(&cells[fixed], last_width));
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.headers.map(str::to_owned));
        for r in rows {
            line(r);
        }
        out
    }
}
