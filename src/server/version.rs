//! HTTP/1.1 or h2c, told by the connection's first bytes (the h2 prior-knowledge
//! preface), as hyper-util's `auto` builder does, but without its memory cost per
//! connection.
//!
//! `auto` hands hyper the bytes it read to decide (at most 24) in a read of their own.
//! hyper's HTTP/1 read buffer (8 KiB) then holds those bytes when it reads the rest of
//! the request, finds less than 8 KiB free and doubles to 16 KiB, kept for the whole
//! connection — a long SSE stream's too. `Prefixed` instead delivers the preface bytes
//! together with whatever the socket already holds, so the request head arrives in one
//! read and the buffer stays at 8 KiB.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    H1,
    H2,
}

/// Reads until the bytes differ from the h2 preface (HTTP/1.1) or match all of it (h2c).
/// A connection closed before that is served as HTTP/1.1, which then sees its end.
pub async fn detect<I: AsyncRead + Unpin>(mut io: I) -> io::Result<(Version, Prefixed<I>)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let version = loop {
        let n = io.read(&mut buf[filled..]).await?;
        let start = filled;
        filled += n;
        if n == 0 || buf[start..filled] != H2_PREFACE[start..filled] {
            break Version::H1;
        }
        if filled == H2_PREFACE.len() {
            break Version::H2;
        }
    };
    let prefix = Prefix {
        buf,
        at: 0,
        len: filled,
    };
    Ok((version, Prefixed { prefix, io }))
}

/// The bytes `detect` read, still to be handed on.
struct Prefix {
    buf: [u8; H2_PREFACE.len()],
    at: usize,
    len: usize,
}

/// `io` with the bytes read by `detect` put back in front.
pub struct Prefixed<I> {
    prefix: Prefix,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = &mut this.prefix;
        if p.at == p.len {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = (p.len - p.at).min(buf.remaining());
        buf.put_slice(&p.buf[p.at..p.at + n]);
        p.at += n;
        if p.at == p.len && buf.remaining() > 0 {
            // The rest of the request is usually there already: same read. An error or
            // end met here is met again by the next read.
            let _ = Pin::new(&mut this.io).poll_read(cx, buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn detect_sent(chunks: &[&[u8]]) -> (Version, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        for chunk in chunks {
            client.write_all(chunk).await.expect("write");
        }
        drop(client);
        let (version, mut io) = detect(server).await.expect("detect");
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.expect("read");
        (version, all)
    }

    #[tokio::test]
    async fn an_http1_request_is_h1_and_loses_no_byte() {
        let request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            detect_sent(&[request]).await,
            (Version::H1, request.to_vec())
        );
    }

    #[tokio::test]
    async fn the_h2_preface_is_h2_even_when_split() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        let (first, rest) = sent.split_at(5);
        assert_eq!(detect_sent(&[first, rest]).await, (Version::H2, sent));
    }

    #[tokio::test]
    async fn a_short_or_empty_connection_is_h1() {
        assert_eq!(detect_sent(&[b"PRI"]).await, (Version::H1, b"PRI".to_vec()));
        assert_eq!(detect_sent(&[]).await, (Version::H1, Vec::new()));
    }

    #[tokio::test]
    async fn the_preface_bytes_and_the_rest_arrive_in_one_read() {
        let request = b"GET /v1/models HTTP/1.1\r\nHost: backstop.local\r\n\r\n";
        let (client, server) = tokio::io::duplex(1024);
        let mut client = client;
        client.write_all(&request[..10]).await.expect("write");
        let detecting = tokio::spawn(detect(server));
        tokio::task::yield_now().await;
        client.write_all(&request[10..]).await.expect("write");
        let (_, mut io) = detecting.await.expect("join").expect("detect");
        let mut buf = vec![0u8; 8192];
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], &request[..]);
    }
}
