//! A request that may outlive its client connection (replay's `finish_abandoned`, SPEC
//! §6). It runs on its connection like any other (`Attached`), its future boxed so
//! that it can be moved: when the client leaves before the response head, a request
//! the replay step marked `finish` is handed, as it stands, to a task owned by the
//! runtime's `detached` set (server shutdown waits for it within `shutdown_grace`,
//! then aborts it), which runs it to its end; when the client leaves during the body
//! (`Finishing`), the rest of the body is read there. Any other request is cancelled
//! at once, as without replay.
//!
//! Detached only when the client leaves, not from the start: a request that keeps its
//! client (nearly all, replays among them) costs no task, no channel and no hop from
//! one task to another on its way to the client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{Body, BoxError};
use crate::events::Observer;
use crate::in_place;
use crate::runtime::Runtime;
use crate::tasks::Tasks;

/// What the request and its client connection share.
#[derive(Debug, Default)]
pub struct Detach {
    /// Set by the replay step: finish even if the client leaves.
    finish: AtomicBool,
    client_gone: AtomicBool,
}

impl Detach {
    pub fn finish(&self) {
        self.finish.store(true, Ordering::Relaxed);
    }

    fn finishing(&self) -> bool {
        self.finish.load(Ordering::Relaxed)
    }

    pub fn client_gone(&self) -> bool {
        self.client_gone.load(Ordering::Relaxed)
    }

    fn leave(&self) {
        self.client_gone.store(true, Ordering::Relaxed);
    }
}

/// Serves `request` on its connection, ready to be detached should its client leave.
pub fn handle(
    runtime: Arc<Runtime>,
    observer: Arc<dyn Observer>,
    request: Request<Incoming>,
) -> Attached<impl Future<Output = Response<Body>> + Send + 'static> {
    let detach = Arc::new(Detach::default());
    let tasks = runtime.detached.clone();
    let shared = detach.clone();
    // Boxed, so that it can move to a task of its own; built in its box, not on the
    // stack and copied there.
    let serving = in_place::boxed(|| super::serve_with(runtime, observer, request, Some(shared)));
    Attached {
        serving: Some(serving),
        detach,
        tasks,
    }
}

/// The request's future while its client is there.
pub struct Attached<F: Future<Output = Response<Body>> + Send + 'static> {
    /// `None` once it has answered.
    serving: Option<Pin<Box<F>>>,
    detach: Arc<Detach>,
    tasks: Arc<Tasks>,
}

impl<F: Future<Output = Response<Body>> + Send + 'static> Future for Attached<F> {
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        let this = self.get_mut();
        let Some(serving) = this.serving.as_mut() else {
            return Poll::Pending;
        };
        let response = ready!(serving.as_mut().poll(cx));
        this.serving = None;
        if !this.detach.finishing() {
            // Nothing to finish without the client: its body goes as it is, and a
            // client that leaves drops it, as without replay.
            return Poll::Ready(response);
        }
        Poll::Ready(response.map(|body| {
            Body::new(Finishing {
                ended: body.is_end_stream(),
                body,
                detach: this.detach.clone(),
                tasks: this.tasks.clone(),
            })
        }))
    }
}

impl<F: Future<Output = Response<Body>> + Send + 'static> Drop for Attached<F> {
    /// The client left before the response head.
    fn drop(&mut self) {
        let Some(serving) = self.serving.take() else {
            return;
        };
        self.detach.leave();
        if !self.detach.finishing() {
            return;
        }
        tracing::debug!("client left; finishing the request for replay");
        detach(&self.tasks, async move {
            read_to_end(serving.await.into_body()).await;
        });
    }
}

/// The body of a request to be finished, on its way to the client.
struct Finishing {
    body: Body,
    /// The body said it has no more: the client got all of it.
    ended: bool,
    detach: Arc<Detach>,
    tasks: Arc<Tasks>,
}

impl HttpBody for Finishing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        this.ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Pending => false,
        };
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Finishing {
    /// Dropped before its end: the client left during the body.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.detach.leave();
        tracing::debug!("client left mid-body; reading the rest for replay");
        detach(&self.tasks, read_to_end(std::mem::take(&mut self.body)));
    }
}

/// Runs what is left of a request in the `detached` set. Outside a runtime (the
/// runtime itself is being dropped) there is nothing to run it on: it is dropped.
fn detach(tasks: &Tasks, rest: impl Future<Output = ()> + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tasks.spawn(rest);
    }
}

/// Reads a body to its end, for what watches it (replay keeping it, the request's
/// event), with no one to send it to.
async fn read_to_end(mut body: Body) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}
