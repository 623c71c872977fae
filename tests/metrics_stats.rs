//! `/stats` (JSON) and `/status` (HTML) after scripted sequences of requests.

mod common;

use std::time::Duration;

use backstop::mock::Fault;
use bytes::Bytes;
use common::{Harness, admin_get};
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

/// `common::FAST` with one retry.
fn fast_one_retry() -> String {
    format!("{}\nmax_retries = 1", common::FAST)
}

async fn tagged(h: &Harness, tag: &str) -> u16 {
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("x-backstop-tag", tag)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )))
        .expect("request");
    h.client.call(request).await.status.as_u16()
}

/// `/stats` once it has counted `total` requests for the first upstream.
async fn stats_after(h: &Harness, total: u64) -> Value {
    let mut stats = Value::Null;
    for _ in 0..300 {
        stats = admin_get(&h.proxy, "/stats").await.json();
        if stats["upstreams"][0]["total"] == total {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stats never reached {total} requests: {stats}");
}

fn tag<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["tags"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tag"] == name))
        .unwrap_or_else(|| panic!("no tag {name} in {stats}"))
}

#[tokio::test]
async fn stats_count_requests_retries_and_failures_in_a_row() {
    let h = Harness::start_with(&fast_one_retry()).await;

    // 1: 503 then 200, a success after one retry.
    h.mock.push(Fault::ServerError(503));
    assert_eq!(tagged(&h, "quiz").await, 200);
    // 2: 503, 503: retries spent, fails. 3: content filter, fails at once.
    h.mock.push_n(Fault::ServerError(503), 2);
    assert_eq!(tagged(&h, "quiz").await, 503);
    h.mock.push(Fault::ContentFilter);
    assert_eq!(tagged(&h, "quiz").await, 400);
    let stats = stats_after(&h, 3).await;
    assert_eq!(stats["upstreams"][0]["consecutive_failures"], 2);

    // 4: a success resets the run. 5: 503, 503 fails again.
    assert_eq!(tagged(&h, "summary").await, 200);
    assert_eq!(
        stats_after(&h, 4).await["upstreams"][0]["consecutive_failures"],
        0
    );
    h.mock.push_n(Fault::ServerError(503), 2);
    assert_eq!(tagged(&h, "summary").await, 503);
    let stats = stats_after(&h, 5).await;

    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert!(stats["uptime_seconds"].is_u64());
    let up = &stats["upstreams"][0];
    assert_eq!(up["name"], "mock");
    assert_eq!(up["total"], 5);
    assert_eq!(up["failed"], 3);
    assert_eq!(up["failure_rate"], 0.6);
    assert_eq!(up["retries"], 3);
    assert_eq!(up["consecutive_failures"], 1);
    assert_eq!(up["circuit"], "closed");
    let last = &up["last_error"];
    assert_eq!(last["error_type"], "server_error");
    assert!(last["code"].is_string(), "{last}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && m.chars().count() <= 201),
        "{last}"
    );
    let at = last["at"].as_str().expect("at");
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );
    assert!(
        up["latency_p50_ms"].is_u64() && up["latency_p95_ms"].is_u64(),
        "{up}"
    );
    assert!(up["latency_p50_ms"].as_u64() <= up["latency_p95_ms"].as_u64());

    let quiz = tag(&stats, "quiz");
    assert_eq!(
        (quiz["total"].as_u64(), quiz["failed"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(quiz["failure_rate"], 0.667);
    assert_eq!(quiz["retries"], 2);
    assert_eq!(quiz["consecutive_failures"], 2);
    assert_eq!(quiz["last_error"]["error_type"], "client_error");
    assert_eq!(quiz["last_error"]["code"], "content_filter");
    let summary = tag(&stats, "summary");
    assert_eq!(
        (summary["total"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(summary["retries"], 1);
    assert_eq!(summary["consecutive_failures"], 1);
    assert!(summary.get("circuit").is_none(), "tags have no circuit");
}

#[tokio::test]
async fn status_page_colours_failure_rates_and_flags_failures_in_a_row() {
    let h = Harness::start_with("[retry]\nmax_retries = 0").await;
    // ok: 1 of 10 failed (10 %); warn: 3 of 10 (30 %), never in a row; bad: 3 of 5
    // (60 %), the last three in a row. `x` fails (content filter), `.` succeeds.
    let script = [
        ("ten_pct", ".........x"),
        ("thirty_pct", ".x..x..x.."),
        ("sixty_pct", "..xxx"),
    ];
    let mut total = 0;
    for (name, outcomes) in script {
        for outcome in outcomes.chars() {
            if outcome == 'x' {
                h.mock.push(Fault::ContentFilter);
            }
            tagged(&h, name).await;
            total += 1;
        }
    }
    stats_after(&h, total).await;

    let page = admin_get(&h.proxy, "/status").await;
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    for (name, class, rate) in [
        ("ten_pct", "ok", "10.0 %"),
        ("thirty_pct", "warn", "30.0 %"),
        ("sixty_pct", "bad", "60.0 %"),
    ] {
        let start = html
            .find(&format!(">{name}</td>"))
            .unwrap_or_else(|| panic!("no row for {name}"));
        let row_start = html[..start].rfind("<tr").expect("row start");
        let row = &html[row_start..start + html[start..].find("</tr>").expect("row end")];
        assert!(
            row.starts_with(&format!("<tr class=\"{class}\"")),
            "{name}: {row}"
        );
        assert!(
            row.contains(&format!("<span class=\"rate {class}\">{rate}</span>")),
            "{name}: {row}"
        );
        assert_eq!(row.contains('⚠'), name == "sixty_pct", "{name}: {row}");
    }
    assert!(
        html.contains("<meta http-equiv=\"refresh\""),
        "refreshes itself"
    );
    assert!(html.contains("On fire"), "the banner names the worst state");
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    assert!(html.contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn status_page_escapes_what_clients_send() {
    let h = Harness::start().await;
    tagged(&h, "<b>x</b>").await;
    stats_after(&h, 1).await;
    let html = admin_get(&h.proxy, "/status").await.text();
    assert!(!html.contains("<b>x</b>"));
}
