//! Watches the final response body on its way out, without holding it back: when the
//! first bytes leave (time to first chunk), how it ended (complete, interrupted, client
//! gone), and the `usage` it reported — read from a small rolling tail of the body (the
//! JSON `usage` object and the final SSE usage chunk both sit at the end), never by
//! collecting it. Emits the request's one `RequestEvent`.

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

/// Enough for a final SSE chunk or a JSON body's trailing `usage` object.
const TAIL_BYTES: usize = 8 * 1024;

struct Watch {
    observer: Arc<dyn Observer>,
    event: Option<RequestEvent>,
    started: Instant,
    fate: Arc<StreamFate>,
    /// `Some` when usage should be looked for.
    tail: Option<Vec<u8>>,
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
        event.usage = self.tail.as_deref().and_then(usage_in);
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
            if data.len() >= TAIL_BYTES {
                tail.clear();
                tail.extend_from_slice(&data[data.len() - TAIL_BYTES..]);
            } else {
                let overflow = (tail.len() + data.len()).saturating_sub(TAIL_BYTES);
                tail.drain(..overflow);
                tail.extend_from_slice(data);
            }
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
        let tail = (look_for_usage || settle.is_some()).then(Vec::new);
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

/// The last `usage` object in `tail`: prompt/input and completion/output tokens.
/// Works on bytes: no UTF-8 check or copy of the tail (it is on every response).
pub fn usage_in(tail: &[u8]) -> Option<Usage> {
    let at = rfind(tail, b"\"usage\"")?;
    let rest = &tail[at..];
    let rest = &rest[..rest.len().min(2048)];
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

// Every key starts with a quote, so only quotes are candidates: cheaper on a short
// tail than building a general substring searcher per call.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    memchr::memrchr_iter(first, haystack).find(|&i| haystack[i..].starts_with(needle))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    memchr::memchr_iter(first, haystack).find(|&i| haystack[i..].starts_with(needle))
}

fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(text, key)? + key.len();
    let rest = text[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
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

    #[test]
    fn no_usage_no_numbers() {
        assert_eq!(usage_in(b"data: {\"usage\":null}\n\n"), None);
        assert_eq!(usage_in(b"{}"), None);
        let too_big =
            br#"{"usage":{"prompt_tokens":99999999999999999999999,"completion_tokens":1}}"#;
        assert_eq!(usage_in(too_big), None);
    }
}
