//! WebSocket tunnels (SPEC §9): which requests are handshakes, the headers a handshake
//! keeps, and the session once both sides have switched protocols: bytes copied both
//! ways (`copy_bidirectional`, no frame parsing), until either side closes or, with
//! `websocket_idle_timeout`, nothing has moved for that long.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A `GET` asking to switch to `websocket` (the only upgrade backstop tunnels).
pub fn is_handshake(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
            })
}

/// Puts back the two hop-by-hop headers a handshake (request or `101`) needs.
pub fn keep_upgrade(headers: &mut HeaderMap) {
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
}

/// Copies bytes both ways until both sides are done, an error, or `idle` passes with
/// no byte either way. Returns the bytes sent (client → upstream, upstream → client).
pub async fn relay<C, U>(
    client: C,
    mut upstream: U,
    idle: Option<Duration>,
) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let Some(idle) = idle else {
        let mut client = client;
        return tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    };
    let opened = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Active {
        io: client,
        opened,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let due = opened + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            done = &mut copy => return done,
            _ = tokio::time::sleep_until(due) => {
                let since = opened + Duration::from_millis(last.load(Ordering::Relaxed));
                if since.elapsed() >= idle {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "websocket_idle_timeout"));
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The client side of a session, noting when bytes last moved (both directions
    /// pass through it).
    struct Active<I> {
        #[pin]
        io: I,
        opened: Instant,
        last: Arc<AtomicU64>,
    }
}

impl<I> Active<I> {
    fn touch(opened: Instant, last: &AtomicU64) {
        last.store(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<I: AsyncRead> AsyncRead for Active<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            Active::<I>::touch(*this.opened, this.last);
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for Active<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            Active::<I>::touch(*this.opened, this.last);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn only_a_get_upgrading_to_websocket_is_a_handshake() {
        let mut h = HeaderMap::new();
        assert!(!is_handshake(&Method::GET, &h));
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(is_handshake(&Method::GET, &h));
        assert!(!is_handshake(&Method::POST, &h));
        h.insert(UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_handshake(&Method::GET, &h));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_ends_at_the_idle_timeout_and_a_busy_one_does_not() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let session = tokio::spawn(relay(client, upstream, Some(Duration::from_secs(10))));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            client_far.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            upstream_far.read_exact(&mut got).await.expect("read");
        }
        assert!(!session.is_finished(), "busy for 18 s, idle never 10 s");
        let quiet_from = Instant::now();
        let ended = session.await.expect("task");
        assert_eq!(ended.expect_err("idle").kind(), io::ErrorKind::TimedOut);
        assert_eq!(quiet_from.elapsed(), Duration::from_secs(10));
    }
}
