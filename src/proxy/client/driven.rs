//! An upstream connection's task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// A connection's I/O as its task: the connection polled where it lies. Awaited in
    /// an `async` block instead, it would be held twice in the task (~700 bytes more
    /// for each plain connection, ~1.7 KiB for a TLS one).
    pub(super) struct Driven<F> {
        #[pin]
        pub(super) conn: F,
    }
}

impl<F: Future<Output = Result<(), hyper::Error>>> Future for Driven<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().conn.poll(cx).map(|ended| {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        })
    }
}
