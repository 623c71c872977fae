//! The response body a client got, kept for the request journal when
//! `[journal] responses = true`: the body watcher hands each frame here as it passes
//! to the client (never holding the body back), up to `max_response_bytes`; past that
//! the body is let go and only "truncated" is kept. Joined into one text (or base64) by
//! the journal's writer task, off the request path.
//!
//! Each frame is copied, not shared: a frame is a slice of the upstream connection's
//! read buffer, and a record waiting for the writer (up to a thousand of them between
//! two trips) would keep that whole buffer from being reused — measured, the proxy's
//! memory under load doubled. The copy of a chat answer is a few hundred bytes.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};

#[derive(Debug, Clone)]
pub struct CapturedResponse {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    /// The body's frames in order, while it is within the bound.
    pub chunks: Vec<Bytes>,
    /// Bytes seen so far (also after truncation).
    pub bytes: u64,
    /// The body went over `max_response_bytes`: `chunks` was let go.
    pub truncated: bool,
    max_bytes: u64,
}

impl CapturedResponse {
    /// A capture of the response about to be sent, or `None` when responses are not
    /// kept (`max_bytes` is `None`): then nothing is done per frame.
    pub fn start(
        max_bytes: Option<u64>,
        status: u16,
        headers: &HeaderMap,
    ) -> Option<Box<CapturedResponse>> {
        let max_bytes = max_bytes?;
        Some(Box::new(CapturedResponse {
            status,
            content_type: headers.get(CONTENT_TYPE).cloned(),
            chunks: Vec::new(),
            bytes: 0,
            truncated: false,
            max_bytes,
        }))
    }

    /// One frame of body data, as it goes to the client.
    pub fn push(&mut self, data: &Bytes) {
        self.bytes += data.len() as u64;
        if self.truncated {
            return;
        }
        if self.bytes > self.max_bytes {
            self.truncated = true;
            self.chunks = Vec::new();
            return;
        }
        self.chunks.push(Bytes::copy_from_slice(data));
    }

    /// The body in one piece (`None` once truncated).
    pub fn body(&self) -> Option<Vec<u8>> {
        if self.truncated {
            return None;
        }
        let mut body = Vec::with_capacity(usize::try_from(self.bytes).unwrap_or(0));
        for chunk in &self.chunks {
            body.extend_from_slice(chunk);
        }
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_frames_up_to_the_bound_then_only_says_truncated() {
        let none = CapturedResponse::start(None, 200, &HeaderMap::new());
        assert!(none.is_none());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let mut c = CapturedResponse::start(Some(10), 200, &headers).expect("on");
        c.push(&Bytes::from_static(b"data: "));
        c.push(&Bytes::from_static(b"1\n\n"));
        assert_eq!(c.body().as_deref(), Some(&b"data: 1\n\n"[..]));
        assert_eq!(
            c.content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"text/event-stream"[..])
        );
        c.push(&Bytes::from_static(b"data: 2\n\n"));
        assert!(c.truncated);
        assert_eq!(c.body(), None);
        assert_eq!(c.bytes, 18);
    }

    #[test]
    fn a_kept_frame_does_not_hold_the_buffer_it_came_from() {
        // A frame as hyper hands it over: a slice of the connection's read buffer.
        let read_buffer = Bytes::from(vec![b'x'; 8192]);
        let frame = read_buffer.slice(100..900);
        let mut c = CapturedResponse::start(Some(10_000), 200, &HeaderMap::new()).expect("on");
        c.push(&frame);
        let kept = &c.chunks[0];
        assert_eq!(kept, &frame);
        let buffer = read_buffer.as_ptr_range();
        assert!(
            !buffer.contains(&kept.as_ptr()),
            "the kept frame points into the read buffer, keeping all 8 KiB of it alive"
        );
    }
}
