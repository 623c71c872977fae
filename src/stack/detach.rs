//! A request run apart from its client connection (replay's `finish_abandoned`, SPEC
//! §6). The request path runs in a task owned by the runtime's `detached` set (server
//! shutdown waits for it within `shutdown_grace`, then aborts it); the connection gets
//! the response head and then its body frames through a small channel. When the client
//! leaves, a request the replay step marked `finish` keeps running to its end (its
//! response is kept); any other is cancelled at once, as without replay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use crate::body::{Body, BoxError};
use crate::error::error_response;
use crate::events::Observer;
use crate::in_place;
use crate::runtime::Runtime;

/// Frames in flight between the request's task and the client connection.
const FRAMES: usize = 16;

/// What the request's task and its client connection share.
#[derive(Debug, Default)]
pub struct Detach {
    /// Set by the replay step: finish even if the client leaves.
    finish: AtomicBool,
    client_gone: AtomicBool,
    /// Every frame went into the channel: its end is the body's end.
    complete: AtomicBool,
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

/// Serves `request` in a detached task; the response for the connection.
pub async fn handle(
    runtime: Arc<Runtime>,
    observer: Arc<dyn Observer>,
    request: Request<Incoming>,
) -> Response<Body> {
    let detach = Arc::new(Detach::default());
    let (head_tx, head_rx) = oneshot::channel();
    let tasks = runtime.detached.clone();
    let shared = detach.clone();
    tasks.spawn(async move {
        // Boxed, and built in its box: the request's future is most of the task's
        // size, and a task's future is copied on its way into the runtime.
        let serving =
            in_place::boxed(|| super::serve_with(runtime, observer, request, Some(shared.clone())));
        run(serving, head_tx, shared).await;
    });
    head_rx.await.unwrap_or_else(|_| {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "backstop stopped before the request was answered",
        )
    })
}

/// Drives the request: its head to the client, then (for a request to be finished) its
/// body through a channel, and the rest of it to nowhere if the client left.
async fn run(
    serving: impl Future<Output = Response<Body>>,
    mut head_tx: oneshot::Sender<Response<Body>>,
    detach: Arc<Detach>,
) {
    let mut serving = std::pin::pin!(serving);
    let response = tokio::select! {
        response = &mut serving => response,
        () = head_tx.closed() => {
            detach.leave();
            if !detach.finishing() {
                return;
            }
            tracing::debug!("client left; finishing the request for replay");
            serving.await
        }
    };
    if !detach.finishing() {
        // Nothing to finish without the client (a replay, a refusal, a request replay
        // does not keep): its body goes to the connection as it is, and a client that
        // leaves drops it, as without replay.
        if head_tx.send(response).is_err() {
            detach.leave();
        }
        return;
    }
    let (parts, body) = response.into_parts();
    let (frames, rx) = mpsc::channel(FRAMES);
    let relay = Relay {
        rx,
        hint: body.size_hint(),
        detach: detach.clone(),
    };
    let client = head_tx
        .send(Response::from_parts(parts, Body::new(relay)))
        .is_ok()
        .then_some(frames);
    if client.is_none() {
        detach.leave();
    }
    pump(body, client, &detach).await;
}

/// The body's frames to the client while it is there, then the rest to nowhere (the
/// request is finished for replay).
async fn pump(
    mut body: Body,
    mut client: Option<mpsc::Sender<Result<Frame<Bytes>, BoxError>>>,
    detach: &Detach,
) {
    while let Some(frame) = body.frame().await {
        let broke = frame.is_err();
        if let Some(tx) = &client
            && tx.send(frame).await.is_err()
        {
            client = None;
            detach.leave();
        }
        if broke {
            return;
        }
    }
    detach.complete.store(true, Ordering::Release);
}

/// The client's side of the channel.
struct Relay {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    hint: SizeHint,
    detach: Arc<Detach>,
}

impl HttpBody for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) if !self.detach.complete.load(Ordering::Acquire) => {
                Poll::Ready(Some(Err("the response was cut off".into())))
            }
            polled => polled,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
