//! Watches the final response body on its way out, without holding it back: when the
//! first bytes leave (time to first chunk), how it ended (complete, interrupted, client
//! gone), and the `usage` it reported — read from the bytes after the last `"usage"`
//! key that passed (`UsageTail`, ≤ 2 KiB however long the stream), never by collecting
//! the body. Emits the request's one `RequestEvent`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use crate::body::{Body, BoxError};
use crate::events::{BodyEnd, Observer, RequestEvent, Usage};
use crate::limits::UpstreamLimits;
use crate::proxy::response_body::StreamFate;

const USAGE_KEY: &[u8] = b"\"usage\"";
/// How much of the body `usage_at` reads, from the `"usage"` key on: enough for the
/// object with its `*_tokens_details`.
const USAGE_WINDOW: usize = 2048;

struct Watch {
    observer: Arc<dyn Observer>,
    event: Option<RequestEvent>,
    started: Instant,
    fate: Arc<StreamFate>,
    /// `Some` when usage should be looked for.
    tail: Option<UsageTail>,
    ended_clean: bool,
    /// Token limits to settle with the reported usage, and the estimate admitted.
    settle: Option<(Arc<UpstreamLimits>, u64)>,
}

impl Watch {
    fn emit(&mut self, end: BodyEnd) {
        let Some(mut event) = self.event.take() else {
            return;
        };
        event.duration = self.started.elapsed();
        event.end = match (end, self.fate.failure()) {
            (BodyEnd::Complete | BodyEnd::Interrupted(_), Some(why)) => BodyEnd::Interrupted(why),
            (end, _) => end,
        };
        event.usage = self.tail.as_ref().and_then(|t| usage_at(&t.kept));
        if let (Some((limits, estimate)), Some(usage)) = (&self.settle, event.usage)
            && let Some(rate) = &limits.rate
        {
            rate.settle(*estimate, usage.input_tokens + usage.output_tokens);
        }
        self.observer.request(&event);
    }

    fn saw(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        if let Some(event) = &mut self.event {
            event
                .time_to_first_chunk
                .get_or_insert_with(|| self.started.elapsed());
        }
        if let Some(tail) = &mut self.tail {
            tail.push(data);
        }
    }
}

/// What `usage_at` needs of a body, kept as it streams past: the first `USAGE_WINDOW`
/// bytes from the last `"usage"` key seen (a later key replaces them), so a long stream
/// costs no more than a short one. Holds nothing until a key passes, but the last few
/// bytes, in case a key is split between two chunks.
#[derive(Default)]
struct UsageTail {
    /// Starts with the last key seen; empty before any.
    kept: Vec<u8>,
    /// The body's last `carry_len` bytes (fewer than a key).
    carry: [u8; USAGE_KEY.len() - 1],
    carry_len: usize,
}

impl UsageTail {
    fn push(&mut self, data: &[u8]) {
        let room = |kept: &Vec<u8>| USAGE_WINDOW.saturating_sub(kept.len());
        if let Some(at) = rfind(data, USAGE_KEY) {
            self.kept.clear();
            let end = data.len().min(at + USAGE_WINDOW);
            self.kept.extend_from_slice(&data[at..end]);
        } else if let Some(at) = self.key_across(data) {
            self.kept.clear();
            self.kept.extend_from_slice(&self.carry[at..self.carry_len]);
            let take = data.len().min(room(&self.kept));
            self.kept.extend_from_slice(&data[..take]);
        } else if !self.kept.is_empty() {
            let take = data.len().min(room(&self.kept));
            self.kept.extend_from_slice(&data[..take]);
        }
        self.keep_carry(data);
    }

    /// Where in `carry` a key starts that ends in `data`.
    fn key_across(&self, data: &[u8]) -> Option<usize> {
        let mut joint = [0u8; 2 * (USAGE_KEY.len() - 1)];
        let head = data.len().min(USAGE_KEY.len() - 1);
        joint[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
        joint[self.carry_len..self.carry_len + head].copy_from_slice(&data[..head]);
        rfind(&joint[..self.carry_len + head], USAGE_KEY).filter(|&at| at < self.carry_len)
    }

    fn keep_carry(&mut self, data: &[u8]) {
        let cap = self.carry.len();
        if data.len() >= cap {
            self.carry.copy_from_slice(&data[data.len() - cap..]);
            self.carry_len = cap;
        } else {
            let keep = self.carry_len.min(cap - data.len());
            self.carry
                .copy_within(self.carry_len - keep..self.carry_len, 0);
            self.carry[keep..keep + data.len()].copy_from_slice(data);
            self.carry_len = keep + data.len();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.emit(if self.ended_clean {
            BodyEnd::Complete
        } else {
            BodyEnd::ClientGone
        });
    }
}

pin_project_lite::pin_project! {
    pub struct WatchedBody {
        #[pin]
        inner: Body,
        watch: Watch,
    }
}

impl WatchedBody {
    /// `event` is completed (duration, end, usage) and emitted when the body ends.
    pub fn new(
        inner: Body,
        observer: Arc<dyn Observer>,
        event: RequestEvent,
        started: Instant,
        fate: Arc<StreamFate>,
        look_for_usage: bool,
        settle: Option<(Arc<UpstreamLimits>, u64)>,
    ) -> WatchedBody {
        let ended_clean = inner.is_end_stream();
        let tail = (look_for_usage || settle.is_some()).then(UsageTail::default);
        WatchedBody {
            inner,
            watch: Watch {
                observer,
                event: Some(event),
                started,
                fate,
                tail,
                ended_clean,
                settle,
            },
        }
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.watch.saw(data);
                }
                if this.inner.is_end_stream() {
                    this.watch.ended_clean = true;
                }
            }
            Poll::Ready(None) => {
                this.watch.ended_clean = true;
                this.watch.emit(BodyEnd::Complete);
            }
            Poll::Ready(Some(Err(_))) => {
                this.watch.emit(BodyEnd::Interrupted("stream_interrupted"))
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The last `usage` object in a whole body: what `UsageTail` + `usage_at` must find
/// from the body streamed in pieces (the tests hold them to it).
#[cfg(test)]
fn usage_in(body: &[u8]) -> Option<Usage> {
    usage_at(&body[rfind(body, USAGE_KEY)?..])
}

/// Prompt/input and completion/output tokens of the `usage` object that `rest` starts
/// with. Works on bytes: no UTF-8 check or copy (it is on every response).
fn usage_at(rest: &[u8]) -> Option<Usage> {
    let rest = &rest[..rest.len().min(USAGE_WINDOW)];
    let input = number_after(rest, b"\"prompt_tokens\"")
        .or_else(|| number_after(rest, b"\"input_tokens\""))?;
    let output = number_after(rest, b"\"completion_tokens\"")
        .or_else(|| number_after(rest, b"\"output_tokens\""))
        .unwrap_or(0);
    Some(Usage {
        input_tokens: input,
        output_tokens: output,
    })
}

/// The last `needle` in `haystack`, tried only where its first byte is (`memrchr`):
/// cheaper than building a `memmem` finder for bodies this short.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    memchr::memrchr_iter(first, haystack).find(|&at| haystack[at..].starts_with(needle))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    memchr::memchr_iter(first, haystack).find(|&at| haystack[at..].starts_with(needle))
}

fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(text, key)? + key.len();
    let rest = text[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_a_json_completion() {
        let body = br#"{"id":"c","choices":[{"message":{"content":"hi \"usage\""}}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(
            usage_in(body),
            Some(Usage {
                input_tokens: 12,
                output_tokens: 7
            })
        );
    }

    #[test]
    fn usage_from_the_final_sse_chunk() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
                     data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\n\
                     data: [DONE]\n\n";
        assert_eq!(
            usage_in(body),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 5
            })
        );
    }

    #[test]
    fn usage_from_the_responses_api_and_embeddings() {
        let responses = br#"{"usage":{"input_tokens":4,"output_tokens":9,"total_tokens":13}}"#;
        assert_eq!(
            usage_in(responses),
            Some(Usage {
                input_tokens: 4,
                output_tokens: 9
            })
        );
        let embeddings = br#"{"data":[],"usage":{"prompt_tokens":6,"total_tokens":6}}"#;
        assert_eq!(
            usage_in(embeddings),
            Some(Usage {
                input_tokens: 6,
                output_tokens: 0
            })
        );
    }

    /// The usage `UsageTail` finds in `body` cut into `size`-byte chunks.
    fn usage_streamed(body: &[u8], size: usize) -> Option<Usage> {
        let mut tail = UsageTail::default();
        for chunk in body.chunks(size) {
            tail.push(chunk);
        }
        assert!(tail.kept.len() <= USAGE_WINDOW);
        usage_at(&tail.kept)
    }

    #[test]
    fn the_streamed_tail_finds_what_the_whole_body_holds_however_it_is_cut() {
        let mut long =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n".repeat(200);
        long.extend_from_slice(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n",
        );
        long.extend_from_slice(&b": padding after the usage chunk\n\n".repeat(100));
        long.extend_from_slice(b"data: [DONE]\n\n");
        let json = br#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":12,"completion_tokens":7}}"#;
        for body in [&long[..], &json[..], b"{\"usage\":null}", b"no key at all"] {
            for size in [1, 2, 3, 5, 6, 7, 8, 13, 64, 1000, 1 << 20] {
                assert_eq!(
                    usage_streamed(body, size),
                    usage_in(body),
                    "chunks of {size}"
                );
            }
        }
        assert_eq!(
            usage_streamed(&long, 7),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 5
            })
        );
    }

    #[test]
    fn no_usage_no_numbers() {
        assert_eq!(usage_in(b"data: {\"usage\":null}\n\n"), None);
        assert_eq!(usage_in(b"{}"), None);
    }
}
