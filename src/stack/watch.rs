//! Watches the final response body on its way out, without holding it back: when the
//! first bytes leave (time to first chunk), how it ended (complete, interrupted, client
//! gone), and the `usage` it reported (`usage`), never by collecting the body. Emits
//! the request's one `RequestEvent`. With `[journal] responses = true` the frames are
//! also handed to the event's `CapturedResponse` as they pass.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use super::detach::Detach;
use super::usage::UsageTail;
use crate::body::{Body, BoxError};
use crate::events::{BodyEnd, Observer, RequestEvent};
use crate::limits::UpstreamLimits;

struct Watch {
    observer: Arc<dyn Observer>,
    event: Option<RequestEvent>,
    started: Instant,
    /// `Some` when usage should be looked for.
    tail: Option<UsageTail>,
    ended_clean: bool,
    /// When the last frame passed, read with the first one's time when one frame was
    /// both (a whole JSON body, usually): the clock is not read again at the end.
    ended_at: Option<std::time::Duration>,
    /// Token limits to settle with the reported usage, and the estimate admitted.
    settle: Option<(Arc<UpstreamLimits>, u64)>,
    /// A detached request: its client may have left while the body was read to its end.
    detach: Option<Arc<Detach>>,
}

impl Watch {
    /// The request's event, sent once. Filled in where it is, not moved out first
    /// (~300 bytes); dropped after the observers have seen it.
    fn emit(&mut self, end: BodyEnd) {
        let Some(event) = self.event.as_mut() else {
            return;
        };
        event.duration = self.ended_at.unwrap_or_else(|| self.started.elapsed());
        event.end = match (end, event.meta.fate.failure()) {
            (BodyEnd::Complete | BodyEnd::Interrupted(_), Some(why)) => BodyEnd::Interrupted(why),
            (end, _) => end,
        };
        if self.detach.as_ref().is_some_and(|d| d.client_gone()) {
            event.end = BodyEnd::ClientGone;
        }
        event.usage = self.tail.as_ref().and_then(UsageTail::usage);
        if let (Some((limits, estimate)), Some(usage)) = (&self.settle, event.usage)
            && let Some(rate) = &limits.rate
        {
            rate.settle(*estimate, usage.input_tokens + usage.output_tokens);
        }
        self.observer.request(event);
        self.event = None;
    }

    /// A data frame passed, the body's last when `last`.
    fn saw(&mut self, data: &Bytes, last: bool) {
        if data.is_empty() {
            return;
        }
        if let Some(event) = &mut self.event {
            if event.time_to_first_chunk.is_none() {
                let at = self.started.elapsed();
                event.time_to_first_chunk = Some(at);
                self.ended_at = last.then_some(at);
            }
            if let Some(response) = &mut event.response {
                response.push(data);
            }
        }
        if let Some(tail) = &mut self.tail {
            tail.push(data);
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
    /// `event` is completed (duration, end, usage) and emitted when the body ends. For a
    /// detached request (`detach`), the client's leaving, not the body's end, decides
    /// whether it got its response.
    pub fn new(
        inner: Body,
        observer: Arc<dyn Observer>,
        event: RequestEvent,
        started: Instant,
        look_for_usage: bool,
        settle: Option<(Arc<UpstreamLimits>, u64)>,
        detach: Option<Arc<Detach>>,
    ) -> WatchedBody {
        let ended_clean = inner.is_end_stream();
        let tail = (look_for_usage || settle.is_some()).then(UsageTail::default);
        WatchedBody {
            inner,
            watch: Watch {
                observer,
                event: Some(event),
                started,
                tail,
                ended_clean,
                ended_at: None,
                settle,
                detach,
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
                let last = this.inner.is_end_stream();
                if let Some(data) = frame.data_ref() {
                    this.watch.saw(data, last);
                }
                if last {
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
