//! Just enough HTTP/1.1 for the mock, on a raw socket so faults are exact: request heads
//! by `httparse`, `content-length` and chunked request bodies, responses written as
//! given, a real RST on demand.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use httparse::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Received;

/// Largest request head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest request body accepted (the proxy's own default limit is 64 MiB).
const MAX_BODY_BYTES: usize = 128 * 1024 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 128;
/// Time given to bytes already written to reach the peer before a reset discards
/// whatever is still in the send buffer (a RST drops unsent data).
const DRAIN_BEFORE_RESET: Duration = Duration::from_millis(25);

/// One accepted connection and the bytes read from it but not yet used.
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// A request as read, and whether the client wants the connection kept open.
pub(super) struct Incoming {
    pub received: Received,
    pub keep_alive: bool,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The stream and the bytes read from it but not used (a WebSocket session's start).
    pub(super) fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// Reads the next request. `Ok(None)` when the client closed between requests;
    /// `InvalidData` when the request is malformed.
    pub(super) async fn read_request(&mut self) -> io::Result<Option<Incoming>> {
        let Some(head) = self.read_head().await? else {
            return Ok(None);
        };
        let mut received = Received {
            method: head.method,
            path: head.path,
            query: head.query,
            headers: head.headers,
            body: Bytes::new(),
            at: Instant::now(),
            parsed: Default::default(),
        };
        received.body = self.read_body(&received).await?;
        let connection = received
            .header_all("connection")
            .join(",")
            .to_ascii_lowercase();
        let has = |token: &str| connection.split(',').any(|t| t.trim() == token);
        let keep_alive = match head.version {
            0 => has("keep-alive"),
            _ => !has("close"),
        };
        Ok(Some(Incoming {
            received,
            keep_alive,
        }))
    }

    /// The next request head, taken off the buffer; `None` when the client closed
    /// between requests.
    async fn read_head(&mut self) -> io::Result<Option<Head>> {
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(invalid("request head too large"));
            }
            if self.fill().await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
        };
        self.buf.advance(head.len);
        Ok(Some(head))
    }

    /// The body of a request whose head is `received`'s: chunked, by length, or none
    /// (a `100 Continue` first when the client waits for one).
    async fn read_body(&mut self, received: &Received) -> io::Result<Bytes> {
        let chunked = received
            .header_all("transfer-encoding")
            .last()
            .is_some_and(|te| {
                te.rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
            });
        let length = match received.header("content-length") {
            Some(v) if !chunked => Some(
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| invalid("bad content-length"))?,
            ),
            _ => None,
        };
        if length.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(invalid("request body too large"));
        }
        let expects_body = chunked || length.is_some_and(|n| n > 0);
        if expects_body
            && received
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        Ok(match (chunked, length) {
            (true, _) => self.read_chunked().await?,
            (false, Some(n)) => {
                self.ensure(n).await?;
                self.buf.split_to(n).freeze()
            }
            (false, None) => Bytes::new(),
        })
    }

    /// Decodes a chunked body, trailers skipped.
    async fn read_chunked(&mut self) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(Status::Complete(found)) => break found,
                    Ok(Status::Partial) if self.buf.len() <= 1024 => self.fill_or_eof().await?,
                    _ => return Err(invalid("bad chunk size line")),
                }
            };
            self.buf.advance(used);
            let size = usize::try_from(size)
                .ok()
                .filter(|s| body.len().saturating_add(*s) <= MAX_BODY_BYTES)
                .ok_or_else(|| invalid("request body too large"))?;
            if size == 0 {
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            self.ensure(size + 2).await?;
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
            self.buf.advance(size + 2);
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn read_line(&mut self) -> io::Result<Bytes> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(end).freeze();
                self.buf.advance(2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(invalid("trailer line too long"));
            }
            self.fill_or_eof().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        self.stream.read_buf(&mut self.buf).await
    }

    async fn fill_or_eof(&mut self) -> io::Result<()> {
        match self.fill().await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    async fn ensure(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            self.fill_or_eof().await?;
        }
        Ok(())
    }

    /// Writes a status line and headers (the caller supplies every header).
    pub(super) async fn write_head(
        &mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> io::Result<()> {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.write_all(head.as_bytes()).await
    }

    /// Writes and flushes.
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes one chunk of a chunked body and flushes it.
    pub(super) async fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let mut chunk = Vec::with_capacity(data.len() + 12);
        chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(b"\r\n");
        self.write_all(&chunk).await
    }

    /// Ends a chunked body.
    pub(super) async fn write_last_chunk(&mut self) -> io::Result<()> {
        self.write_all(b"0\r\n\r\n").await
    }

    /// Waits `pause` (`None`: forever) unless the client hangs up first; returns whether
    /// it did. Bytes the client sends meanwhile are kept for the next request.
    pub(super) async fn wait_or_hangup(&mut self, pause: Option<Duration>) -> bool {
        let timer = async {
            match pause {
                Some(pause) => tokio::time::sleep(pause).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timer);
        loop {
            if self.buf.len() > MAX_HEAD_BYTES {
                // Stop reading a client that floods us; just wait.
                timer.await;
                return false;
            }
            tokio::select! {
                () = &mut timer => return false,
                read = self.stream.read_buf(&mut self.buf) => if !matches!(read, Ok(n) if n > 0) {
                    return true;
                },
            }
        }
    }

    /// Aborts the connection with a TCP RST, after giving bytes already written time
    /// to leave (a RST discards unsent data).
    pub(super) async fn reset(self, wrote_bytes: bool) {
        if wrote_bytes {
            tokio::time::sleep(DRAIN_BEFORE_RESET).await;
        }
        if let Err(error) = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO)) {
            tracing::warn!(%error, "mock upstream: cannot set SO_LINGER 0; closing without RST");
        }
        drop(self.stream);
    }
}

/// The owned parts of a request head, and its length in bytes.
struct Head {
    len: usize,
    version: u8,
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let len = match request.parse(buf) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(format!("bad request head: {error}"))),
    };
    let target = request.path.unwrap_or("/");
    // An absolute-form target (`http://host/path`) is reduced to its path.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target.to_string(), None),
    };
    let headers = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Some(Head {
        len,
        version: request.version.unwrap_or(1),
        method: request.method.unwrap_or("GET").to_string(),
        path,
        query,
        headers,
    }))
}
