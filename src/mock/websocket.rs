//! The mock's WebSocket endpoint: any path answers a WebSocket handshake (after any
//! queued fault, so "503 then 101" is one `push`). The session echoes every data frame
//! as it came (text, binary, fragments), answers pings, and echoes a close with its
//! code. A text message `close:CODE` makes the mock close first with that code. On a
//! path ending in `/realtime` it plays a minimal OpenAI Realtime server instead:
//! `session.created` first, then an answer to each client event by its `type`.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Received;
use super::http1::Conn;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A client's handshake request: `Upgrade: websocket` with a key.
pub(super) fn is_handshake(req: &Received) -> bool {
    req.header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req.header("sec-websocket-key").is_some()
}

/// Answers the handshake with `101`, then runs the session until either side closes.
pub(super) async fn serve(mut conn: Conn, req: &Received, n: usize) -> io::Result<()> {
    let key = req.header("sec-websocket-key").unwrap_or_default();
    let headers = [
        ("upgrade", "websocket".to_owned()),
        ("connection", "Upgrade".to_owned()),
        ("sec-websocket-accept", accept(key)),
        ("x-request-id", format!("mock-{n}")),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    conn.write_head(101, &headers).await?;
    let (mut stream, mut buf) = conn.into_parts();
    let realtime = req.path.ends_with("/realtime");
    if realtime {
        let model = req
            .query
            .as_deref()
            .and_then(|q| q.strip_prefix("model="))
            .unwrap_or("mock");
        let created = serde_json::json!({"type": "session.created", "event_id": "evt_mock_0",
            "session": {"id": "sess_mock", "object": "realtime.session", "model": model}});
        write_frame(&mut stream, true, TEXT, created.to_string().as_bytes()).await?;
    }
    loop {
        let Some((fin, opcode, payload)) = read_frame(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        match opcode {
            CLOSE => {
                write_frame(&mut stream, true, CLOSE, &payload).await?;
                return stream.shutdown().await;
            }
            PING => write_frame(&mut stream, true, PONG, &payload).await?,
            PONG => {}
            TEXT if realtime => {
                for event in realtime_answer(&payload) {
                    write_frame(&mut stream, true, TEXT, event.to_string().as_bytes()).await?;
                }
            }
            TEXT if payload.starts_with(b"close:") => {
                let code: u16 = std::str::from_utf8(&payload[6..])
                    .ok()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(1000);
                let mut close = code.to_be_bytes().to_vec();
                close.extend_from_slice(b"mock closes");
                write_frame(&mut stream, true, CLOSE, &close).await?;
                // The client answers with its close; then the server ends TCP.
                while let Some((_, op, _)) = read_frame(&mut stream, &mut buf).await? {
                    if op == CLOSE {
                        break;
                    }
                }
                return stream.shutdown().await;
            }
            _ => write_frame(&mut stream, fin, opcode, &payload).await?,
        }
    }
}

/// The Realtime events the mock sends back for one client event.
fn realtime_answer(payload: &[u8]) -> Vec<serde_json::Value> {
    let event: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or_default();
    let id = |n: u32| format!("evt_mock_{n}");
    match kind {
        "session.update" => vec![
            serde_json::json!({"type": "session.updated", "event_id": id(1),
            "session": event["session"].clone()}),
        ],
        "conversation.item.create" => vec![serde_json::json!({"type": "conversation.item.created",
            "event_id": id(2), "previous_item_id": null, "item": event["item"].clone()})],
        "response.create" => {
            let response = serde_json::json!({"id": "resp_mock", "object": "realtime.response",
                "status": "completed", "output": [{"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello from the mock."}]}]});
            vec![
                serde_json::json!({"type": "response.created", "event_id": id(3),
                    "response": {"id": "resp_mock", "object": "realtime.response", "status": "in_progress", "output": []}}),
                serde_json::json!({"type": "response.output_text.delta", "event_id": id(4),
                    "response_id": "resp_mock", "item_id": "item_mock", "output_index": 0,
                    "content_index": 0, "delta": "Hello from the mock."}),
                serde_json::json!({"type": "response.done", "event_id": id(5), "response": response}),
            ]
        }
        _ => Vec::new(),
    }
}

/// One frame (FIN, opcode, unmasked payload); `None` at a clean end of the stream.
async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> io::Result<Option<(bool, u8, Vec<u8>)>> {
    loop {
        if let Some(frame) = parse_frame(buf) {
            return Ok(Some(frame));
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

fn parse_frame(buf: &mut BytesMut) -> Option<(bool, u8, Vec<u8>)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if masked {
        let m = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    if buf.len() < at + len {
        return None;
    }
    buf.advance(at);
    let mut payload = buf.split_to(len).to_vec();
    if let Some(mask) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((b0 & 0x80 != 0, b0 & 0x0f, payload))
}

/// A server frame: never masked.
async fn write_frame(
    stream: &mut TcpStream,
    fin: bool,
    opcode: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + the RFC 6455 GUID)).
fn accept(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    use base64::Engine as _;
    use sha1::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&input))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_accept_value_is_rfc_6455s_example() {
        assert_eq!(
            super::accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
