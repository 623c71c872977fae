//! `/status`: one self-contained HTML page (no scripts, no external files) that reloads
//! itself every 5 s. A banner on top says at a glance whether anything is on fire; then
//! a table per upstream and per tag. Failure rates over 50 % are red, over 20 % orange;
//! 3+ failures in a row get a warning mark.

use std::fmt::Write as _;

use super::stats::{ErrorView, Row, Snapshot};

/// Failures in a row that earn a warning mark.
pub const IN_A_ROW_WARNING: u64 = 3;

/// How a failure rate is shown: `bad` (> 50 %), `warn` (> 20 %) or `ok`.
pub fn severity(failure_rate: f64) -> &'static str {
    if failure_rate > 0.5 {
        "bad"
    } else if failure_rate > 0.2 {
        "warn"
    } else {
        "ok"
    }
}

const STYLE: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#6b7385;--line:#e4e7ec;
--ok:#1f9d55;--ok-bg:#e6f6ec;--warn:#d97706;--warn-bg:#fff3e0;--bad:#dc2626;--bad-bg:#fde8e8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;align-items:baseline;gap:18px;padding:14px 28px;background:#1d2330;color:#fff}
header h1{margin:0;font-size:20px;letter-spacing:.3px}
header .meta{color:#aab2c5;font-size:13px}
header .meta b{color:#fff;font-weight:600}
main{padding:18px 28px 40px;max-width:1400px}
.banner{padding:12px 16px;border-radius:8px;font-weight:600;font-size:15px;margin-bottom:18px;border-left:6px solid}
.banner.ok{background:var(--ok-bg);border-color:var(--ok);color:#14532d}
.banner.warn{background:var(--warn-bg);border-color:var(--warn);color:#7c2d12}
.banner.bad{background:var(--bad-bg);border-color:var(--bad);color:#7f1d1d}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.8px;color:var(--mute);margin:22px 0 8px}
table{width:100%;border-collapse:collapse;background:var(--card);border-radius:8px;overflow:hidden;box-shadow:0 1px 2px rgba(16,24,40,.06)}
th{text-align:left;font-size:12px;font-weight:600;color:var(--mute);background:#fafbfc;padding:8px 12px;border-bottom:1px solid var(--line)}
td{padding:9px 12px;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
tr.bad td:first-child{box-shadow:inset 4px 0 0 var(--bad)}
tr.warn td:first-child{box-shadow:inset 4px 0 0 var(--warn)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.name{font-weight:600}
.rate{display:inline-block;min-width:64px;text-align:center;padding:2px 8px;border-radius:999px;font-weight:700;font-variant-numeric:tabular-nums}
.rate.ok{background:var(--ok-bg);color:var(--ok)}
.rate.warn{background:var(--warn-bg);color:var(--warn)}
.rate.bad{background:var(--bad-bg);color:var(--bad)}
.streak{color:var(--bad);font-weight:700}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600}
.pill.closed{background:var(--ok-bg);color:var(--ok)}
.pill.half_open{background:var(--warn-bg);color:var(--warn)}
.pill.open{background:var(--bad-bg);color:var(--bad)}
.err{max-width:520px}
.err code{background:#f1f3f6;padding:1px 5px;border-radius:4px;font-size:12px}
.err .msg{color:var(--mute);font-size:12px;word-break:break-word}
.none{color:var(--mute)}
footer{color:var(--mute);font-size:12px;margin-top:20px}
"#;

/// Renders the page. Every string from outside (names, tags, messages) is escaped.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} backstop status</title><style>{STYLE}</style></head><body>\
         <header><h1>backstop</h1><span class=\"meta\">version <b>{}</b></span>\
         <span class=\"meta\">up <b>{}</b></span>\
         <span class=\"meta\">refreshes every 5 s · <a style=\"color:#aab2c5\" href=\"/stats\">/stats</a> · \
         <a style=\"color:#aab2c5\" href=\"/metrics\">/metrics</a></span></header><main>",
        title_mark(s),
        escape(s.version),
        uptime(s.uptime_seconds)
    );
    banner(&mut out, s);

    out.push_str("<h2>Upstreams</h2>");
    table_head(&mut out, "upstream", true);
    for u in &s.upstreams {
        row(&mut out, &u.name, Some(u.circuit), &u.row);
    }
    if s.upstreams.is_empty() {
        out.push_str("<tr><td colspan=\"10\" class=\"none\">no upstreams configured</td></tr>");
    }
    out.push_str("</tbody></table>");
    fallbacks(&mut out, s);

    out.push_str("<h2>Tags <span style=\"text-transform:none\">(x-backstop-tag)</span></h2>");
    table_head(&mut out, "tag", false);
    for t in &s.tags {
        row(&mut out, &t.tag, None, &t.row);
    }
    if s.tags.is_empty() {
        out.push_str(
            "<tr><td colspan=\"9\" class=\"none\">no tagged requests yet — \
             send <code>x-backstop-tag: my_purpose</code> to see one</td></tr>",
        );
    }
    out.push_str(
        "</tbody></table><footer>Counts are requests since start; a request that \
         succeeded after retries is a success. Latency percentiles cover the last 1000 \
         requests.</footer></main></body></html>",
    );
    out
}

/// Who handed requests over to whom: one line per upstream that did.
fn fallbacks(out: &mut String, s: &Snapshot) {
    let mut rows = s
        .upstreams
        .iter()
        .filter(|u| u.handovers.fallbacks > 0)
        .peekable();
    if rows.peek().is_none() {
        return;
    }
    out.push_str(
        "<h2>Fallbacks</h2><table><thead><tr><th>upstream</th>\
         <th style=\"text-align:right\">handed over</th><th>to</th></tr></thead><tbody>",
    );
    for u in rows {
        let to: Vec<String> = u
            .handovers
            .fallbacks_to
            .iter()
            .map(|(name, n)| format!("{} {n}", escape(name)))
            .collect();
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&u.name),
            u.handovers.fallbacks,
            to.join(" · ")
        );
    }
    out.push_str("</tbody></table>");
}

/// The worst severity on the page, as a title prefix, so a browser tab shows it too.
fn title_mark(s: &Snapshot) -> &'static str {
    match worst(s) {
        "bad" => "🔴",
        "warn" => "🟠",
        _ => "🟢",
    }
}

fn worst(s: &Snapshot) -> &'static str {
    let rows = s.upstreams.iter().map(|u| (&u.row, u.circuit));
    let tags = s.tags.iter().map(|t| (&t.row, "closed"));
    let mut worst = if s.redis.is_some_and(|r| !r.up) {
        "warn"
    } else {
        "ok"
    };
    for (row, circuit) in rows.chain(tags) {
        let sev = row_severity(row, circuit);
        if sev == "bad" {
            return "bad";
        }
        if sev == "warn" {
            worst = "warn";
        }
    }
    worst
}

fn row_severity(row: &Row, circuit: &str) -> &'static str {
    if circuit == "open" {
        return "bad";
    }
    match severity(row.failure_rate) {
        "ok" if row.consecutive_failures >= IN_A_ROW_WARNING || circuit == "half_open" => "warn",
        other => other,
    }
}

fn banner(out: &mut String, s: &Snapshot) {
    let rows = s
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), row_severity(&u.row, u.circuit)))
        .chain(
            s.tags
                .iter()
                .map(|t| (t.tag.as_str(), row_severity(&t.row, "closed"))),
        );
    let (mut bad, mut warn) = (Vec::new(), Vec::new());
    for (name, sev) in rows {
        match sev {
            "bad" => bad.push(name),
            "warn" => warn.push(name),
            _ => {}
        }
    }
    let list = |names: &[&str]| {
        let shown: Vec<String> = names.iter().take(6).map(|n| escape(n)).collect();
        match names.len().saturating_sub(6) {
            0 => shown.join(", "),
            more => format!("{} and {more} more", shown.join(", ")),
        }
    };
    let mut parts = Vec::new();
    if !bad.is_empty() {
        parts.push(format!("On fire: {}", list(&bad)));
    }
    if !warn.is_empty() {
        parts.push(format!("Degraded: {}", list(&warn)));
    }
    if s.redis.is_some_and(|r| !r.up) {
        parts.push(
            "Redis unreachable: limits and circuit are this replica's own until it is back"
                .to_owned(),
        );
    }
    let text = if parts.is_empty() {
        let total: u64 = s.upstreams.iter().map(|u| u.row.total).sum();
        format!("All good — {total} requests, no upstream or tag failing")
    } else {
        parts.join(" · ")
    };
    let _ = write!(out, "<div class=\"banner {}\">{text}</div>", worst(s));
}

fn table_head(out: &mut String, first: &str, circuit: bool) {
    let _ = write!(out, "<table><thead><tr><th>{first}</th>");
    if circuit {
        out.push_str("<th>circuit</th>");
    }
    out.push_str(
        "<th style=\"text-align:right\">calls</th><th style=\"text-align:right\">failed</th>\
         <th style=\"text-align:center\">failure rate</th><th style=\"text-align:right\">in a row</th>\
         <th style=\"text-align:right\">retries</th><th style=\"text-align:right\">p50</th>\
         <th style=\"text-align:right\">p95</th><th>last error</th></tr></thead><tbody>",
    );
}

fn row(out: &mut String, name: &str, circuit: Option<&str>, r: &Row) {
    let sev = row_severity(r, circuit.unwrap_or("closed"));
    let _ = write!(
        out,
        "<tr class=\"{sev}\"><td class=\"name\">{}</td>",
        escape(name)
    );
    if let Some(c) = circuit {
        let _ = write!(
            out,
            "<td><span class=\"pill {c}\">{}</span></td>",
            c.replace('_', "-")
        );
    }
    let streak = if r.consecutive_failures >= IN_A_ROW_WARNING {
        format!(
            "<span class=\"streak\" title=\"{IN_A_ROW_WARNING}+ failures in a row\">⚠ {}</span>",
            r.consecutive_failures
        )
    } else {
        r.consecutive_failures.to_string()
    };
    let _ = write!(
        out,
        "<td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td style=\"text-align:center\"><span class=\"rate {}\">{:.1} %</span></td>\
         <td class=\"num\">{streak}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"err\">{}</td></tr>",
        r.total,
        r.failed,
        severity(r.failure_rate),
        r.failure_rate * 100.0,
        r.retries,
        ms(r.latency_p50_ms),
        ms(r.latency_p95_ms),
        last_error(r.last_error.as_ref()),
    );
}

fn last_error(e: Option<&ErrorView>) -> String {
    let Some(e) = e else {
        return "<span class=\"none\">—</span>".to_owned();
    };
    let mut out = format!("<code>{}</code>", escape(e.error_type));
    if let Some(code) = e.code.as_deref().filter(|c| *c != e.error_type) {
        let _ = write!(out, " <code>{}</code>", escape(code));
    }
    let _ = write!(
        out,
        " <span class=\"none\" title=\"{}\">{} ago</span>",
        escape(&e.at),
        uptime(e.age_seconds)
    );
    if let Some(message) = &e.message {
        let _ = write!(out, "<div class=\"msg\">{}</div>", escape(message));
    }
    out
}

fn ms(v: Option<u32>) -> String {
    match v {
        Some(v) if v >= 10_000 => format!("{:.1} s", f64::from(v) / 1000.0),
        Some(v) => format!("{v} ms"),
        None => "<span class=\"none\">—</span>".to_owned(),
    }
}

/// `3d 4h`, `2h 5m`, `4m 12s`, `9s`.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rates_map_to_colours() {
        assert_eq!(severity(0.10), "ok");
        assert_eq!(severity(0.20), "ok");
        assert_eq!(severity(0.30), "warn");
        assert_eq!(severity(0.50), "warn");
        assert_eq!(severity(0.60), "bad");
    }

    #[test]
    fn outside_strings_are_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }

    #[test]
    fn uptime_reads_like_a_person_wrote_it() {
        assert_eq!(uptime(9), "9s");
        assert_eq!(uptime(252), "4m 12s");
        assert_eq!(uptime(7500), "2h 5m");
        assert_eq!(uptime(273_600), "3d 4h");
    }
}
