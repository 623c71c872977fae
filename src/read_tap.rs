//! An IO object that shows every byte it reads to a `Tap` and passes everything else
//! through: how the client-connection clock sees a head start (`server::limits`) and
//! how an upstream h2 connection's stream limit is read (`proxy::h2_settings`), without
//! either parsing a protocol twice or owning the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sees the bytes read, in order, as they arrive.
pub trait Tap {
    fn read(&mut self, bytes: &[u8]);
}

pin_project_lite::pin_project! {
    pub struct ReadTap<I, T> {
        #[pin]
        io: I,
        tap: T,
    }
}

impl<I, T> ReadTap<I, T> {
    pub fn new(io: I, tap: T) -> ReadTap<I, T> {
        ReadTap { io, tap }
    }
}

impl<I: AsyncRead, T: Tap> AsyncRead for ReadTap<I, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tap.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<I: AsyncWrite, T> AsyncWrite for ReadTap<I, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
