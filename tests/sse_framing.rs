//! SPEC §1/§2: an SSE stream is valid whatever its line endings (CR, LF, CRLF, mixed);
//! backstop sees its first event, commits on the first attempt and passes every byte
//! through unchanged.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, LineEnding, StreamEnd, StreamScript};
use common::{Harness, timed_frames};
use http::StatusCode;

/// The stream's lines and the ending of each, in order.
fn split_lines(bytes: &[u8]) -> (Vec<String>, Vec<&'static str>) {
    let (mut lines, mut endings) = (Vec::new(), Vec::new());
    let mut line = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                endings.push("\r\n");
                i += 1;
            }
            b'\r' => endings.push("\r"),
            b'\n' => endings.push("\n"),
            b => {
                line.push(b);
                i += 1;
                continue;
            }
        }
        lines.push(String::from_utf8(std::mem::take(&mut line)).expect("utf-8"));
        i += 1;
    }
    assert!(line.is_empty(), "the stream ends mid-line: {line:?}");
    (lines, endings)
}

async fn stream_through(line_ending: LineEnding) -> (Vec<u8>, Harness) {
    let h = Harness::start().await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 4,
        end: StreamEnd::Done,
        line_ending,
        ..StreamScript::default()
    }));
    let response = h.client.send(common::stream_request(&h.client)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-backstop-attempts"],
        "1",
        "committed on the first attempt"
    );
    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let bytes = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(h.mock.request_count(), 1, "no retry");
    (bytes, h)
}

/// Every line of the stream the mock wrote, in OpenAI's shape: 4 content events, then
/// `[DONE]`, each `data: …` followed by a blank line.
fn assert_openai_shape(lines: &[String]) {
    assert_eq!(lines.len(), 10, "{lines:?}");
    for (i, pair) in lines.chunks(2).enumerate() {
        assert_eq!(pair[1], "", "event {i} ends with a blank line");
        let data = pair[0].strip_prefix("data: ").expect("a data line");
        if i == 4 {
            assert_eq!(data, "[DONE]");
        } else {
            let chunk: serde_json::Value = serde_json::from_str(data).expect("json chunk");
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
    }
}

#[tokio::test]
async fn a_lone_cr_stream_reaches_the_client_byte_for_byte() {
    let (bytes, _h) = stream_through(LineEnding::Cr).await;
    assert!(!bytes.contains(&b'\n'), "no LF was added");
    let (lines, endings) = split_lines(&bytes);
    assert!(endings.iter().all(|e| *e == "\r"), "{endings:?}");
    assert_openai_shape(&lines);
}

#[tokio::test]
async fn a_mixed_ending_stream_reaches_the_client_byte_for_byte() {
    let (bytes, _h) = stream_through(LineEnding::Mixed).await;
    let (lines, endings) = split_lines(&bytes);
    let expected: Vec<&str> = (0..endings.len())
        .map(|i| ["\r", "\r\n", "\n"][i % 3])
        .collect();
    assert_eq!(endings, expected, "every line ending as the mock wrote it");
    assert_openai_shape(&lines);
}

#[tokio::test]
async fn a_crlf_stream_reaches_the_client_byte_for_byte() {
    let (bytes, _h) = stream_through(LineEnding::Crlf).await;
    let (lines, endings) = split_lines(&bytes);
    assert!(endings.iter().all(|e| *e == "\r\n"), "{endings:?}");
    assert_openai_shape(&lines);
}
