//! The SSE writer: chat completion chunks, each written and flushed as its own HTTP
//! chunk at its time, ending as the script says.

use std::io;

use super::Received;
use super::fault::{StreamEnd, StreamScript};
use super::http1::Conn;
use super::openai::{self, ChunkStream};
use super::reply::After;

/// Streams one SSE answer to `req` (request number `n`).
pub(super) async fn stream(
    conn: &mut Conn,
    req: &Received,
    n: usize,
    script: &StreamScript,
    keep_alive: bool,
) -> io::Result<After> {
    let mut headers = vec![
        (
            "content-type".to_string(),
            "text/event-stream; charset=utf-8".to_string(),
        ),
        ("cache-control".to_string(), "no-cache".to_string()),
        ("transfer-encoding".to_string(), "chunked".to_string()),
        ("x-request-id".to_string(), format!("mock-{n}")),
    ];
    if !keep_alive {
        headers.push(("connection".to_string(), "close".to_string()));
    }
    conn.write_head(200, &headers).await?;
    if !script.first_event_delay.is_zero()
        && conn.wait_or_hangup(Some(script.first_event_delay)).await
    {
        return Ok(After::Close);
    }
    let events = ChunkStream::new(req, n);
    let mut line_ends = 0;
    let mut ended = |text: &str| script.line_ending.apply(text, &mut line_ends);
    let content_events = match script.end {
        StreamEnd::Done => script.chunks,
        StreamEnd::DieAfter(k) | StreamEnd::StallAfter(k) => k.min(script.chunks),
        StreamEnd::ErrorEventFirst => {
            conn.write_chunk(&ended(&openai::error_event())).await?;
            conn.write_last_chunk().await?;
            return Ok(After::Continue);
        }
    };
    for i in 0..content_events {
        if i > 0 && !script.gap.is_zero() {
            tokio::time::sleep(script.gap).await;
        }
        conn.write_chunk(&ended(&events.content_event(i, script.chunks)))
            .await?;
    }
    match script.end {
        StreamEnd::DieAfter(_) => return Ok(After::Reset { wrote: true }),
        StreamEnd::StallAfter(_) => {
            conn.wait_or_hangup(None).await;
            return Ok(After::Close);
        }
        StreamEnd::Done | StreamEnd::ErrorEventFirst => {}
    }
    if events.include_usage() {
        conn.write_chunk(&ended(&events.usage_event(script.chunks)))
            .await?;
    }
    conn.write_chunk(&ended(openai::DONE_EVENT)).await?;
    conn.write_last_chunk().await?;
    Ok(After::Continue)
}
