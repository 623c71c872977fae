//! The stream limit an HTTP/2 upstream announces (`SETTINGS_MAX_CONCURRENT_STREAMS`),
//! read from the frames it sends. hyper does not expose it: past the limit it queues
//! requests inside the connection, where they would wait for a slot while another
//! connection could carry them. `Sniffed` sits between TLS and hyper and reads each
//! incoming frame's 9-byte header (and the payload of SETTINGS frames, a few bytes),
//! skipping every other payload by its length: the bytes themselves pass untouched.

use crate::read_tap::{ReadTap, Tap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// What the server allows: unlimited (`u32::MAX`) until it says otherwise (RFC 9113
/// §6.5.2: the initial value is unlimited).
#[derive(Debug)]
pub struct StreamLimit {
    max: AtomicU32,
    known: AtomicBool,
    settled: Notify,
}

impl StreamLimit {
    pub fn new() -> Arc<StreamLimit> {
        Arc::new(StreamLimit {
            max: AtomicU32::new(u32::MAX),
            known: AtomicBool::new(false),
            settled: Notify::new(),
        })
    }

    /// Streams the server lets this connection have open at once.
    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Waits (up to `limit`) for the server's first SETTINGS frame, which it sends
    /// first thing: requests placed before it would all see an unlimited connection.
    pub async fn settled(&self, limit: Duration) {
        let notified = self.settled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.known.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }

    fn set(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    fn settle(&self) {
        if !self.known.swap(true, Ordering::AcqRel) {
            self.settled.notify_waiters();
        }
    }
}

/// Where the reader is in the server's frame sequence.
#[derive(Debug)]
enum Frames {
    /// Collecting a frame header.
    Header { got: [u8; FRAME_HEADER], len: usize },
    /// In a SETTINGS frame's payload: 6-byte entries.
    Settings {
        left: usize,
        entry: [u8; 6],
        len: usize,
    },
    /// Skipping another frame's payload.
    Skip { left: usize },
}

impl Frames {
    fn start() -> Frames {
        Frames::Header {
            got: [0; FRAME_HEADER],
            len: 0,
        }
    }

    /// Reads `bytes` (the next ones from the server), telling `limit` what it learns.
    fn feed(&mut self, mut bytes: &[u8], limit: &StreamLimit) {
        while !bytes.is_empty() {
            match self {
                Frames::Header { got, len } => {
                    let n = (FRAME_HEADER - *len).min(bytes.len());
                    got[*len..*len + n].copy_from_slice(&bytes[..n]);
                    *len += n;
                    bytes = &bytes[n..];
                    if *len < FRAME_HEADER {
                        return;
                    }
                    let size =
                        usize::from(got[0]) << 16 | usize::from(got[1]) << 8 | usize::from(got[2]);
                    let settings = got[3] == SETTINGS && got[4] & ACK == 0;
                    *self = if settings {
                        Frames::Settings {
                            left: size,
                            entry: [0; 6],
                            len: 0,
                        }
                    } else {
                        Frames::Skip { left: size }
                    };
                    if size == 0 {
                        if settings {
                            limit.settle();
                        }
                        *self = Frames::start();
                    }
                }
                Frames::Skip { left } => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        *self = Frames::start();
                    }
                }
                Frames::Settings { left, entry, len } => {
                    let n = (6 - *len).min(*left).min(bytes.len());
                    entry[*len..*len + n].copy_from_slice(&bytes[..n]);
                    *len += n;
                    *left -= n;
                    bytes = &bytes[n..];
                    if *len == 6 {
                        if u16::from_be_bytes([entry[0], entry[1]]) == MAX_CONCURRENT_STREAMS {
                            limit.set(u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]));
                        }
                        *len = 0;
                    }
                    if *left == 0 {
                        limit.settle();
                        *self = Frames::start();
                    }
                }
            }
        }
    }
}

/// What reads an upstream HTTP/2 connection's bytes for its stream limit.
pub struct LimitTap {
    frames: Frames,
    limit: Arc<StreamLimit>,
}

/// An upstream HTTP/2 connection's IO, reading the server's stream limit on the way.
pub type Sniffed<I> = ReadTap<I, LimitTap>;

/// `io`, with its server's stream limit read into `limit`.
pub fn sniffed<I>(io: I, limit: Arc<StreamLimit>) -> Sniffed<I> {
    ReadTap::new(
        io,
        LimitTap {
            frames: Frames::start(),
            limit,
        },
    )
}

impl Tap for LimitTap {
    fn read(&mut self, bytes: &[u8]) {
        self.frames.feed(bytes, &self.limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut out = vec![
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        out.extend_from_slice(payload);
        out
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = entries
            .iter()
            .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        frame(SETTINGS, 0, &payload)
    }

    #[test]
    fn reads_the_limit_from_settings_split_at_every_byte() {
        let mut stream = settings(&[(0x4, 65535), (MAX_CONCURRENT_STREAMS, 2), (0x5, 16384)]);
        stream.extend(frame(0x8, 0, &[0, 0, 0, 1]));
        stream.extend(frame(SETTINGS, ACK, &[]));
        for split in 0..stream.len() {
            let limit = StreamLimit::new();
            let mut frames = Frames::start();
            frames.feed(&stream[..split], &limit);
            frames.feed(&stream[split..], &limit);
            assert_eq!(limit.max(), 2, "split at {split}");
            assert!(limit.known.load(Ordering::Relaxed));
        }
    }

    #[test]
    fn a_later_settings_frame_changes_the_limit_and_other_frames_are_skipped() {
        let limit = StreamLimit::new();
        let mut frames = Frames::start();
        let mut stream = settings(&[]);
        assert_eq!(limit.max(), u32::MAX);
        stream.extend(frame(0x0, 0, &[SETTINGS; 40]));
        stream.extend(settings(&[(MAX_CONCURRENT_STREAMS, 100)]));
        frames.feed(&stream, &limit);
        assert_eq!(limit.max(), 100);
    }
}
