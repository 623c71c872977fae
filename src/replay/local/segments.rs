//! The local store's files: append-only segments `replay-<seq>.seg` of records
//! (`kept`), written by one task, never rewritten. A new segment starts at every start
//! (a torn tail of the last run stays behind it, unread) and whenever the current one
//! reaches its share of `max_bytes`. Whole segments go: the oldest first while the
//! store is over `max_bytes`, and any whose every entry has expired.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::replay::kept::{HEAD_LEN, Head};

/// Where a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seq: u64,
    pub offset: u64,
    pub head: Head,
}

struct Segment {
    seq: u64,
    bytes: u64,
    /// The latest expiry of its records: past it, the whole file can go.
    newest_expiry: u64,
}

pub struct Segments {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one is the one appended to.
    list: VecDeque<Segment>,
    current: Option<File>,
    total: u64,
}

impl Segments {
    /// Opens `dir` (made if missing), reads every record head in it (expired ones
    /// left out), deletes what is expired or over `max_bytes`, and starts a new segment.
    pub fn open(dir: &Path, max_bytes: u64, now_ms: u64) -> io::Result<(Segments, Vec<Loc>)> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| seq_of(&e.file_name().to_string_lossy()))
            .collect();
        seqs.sort_unstable();
        let mut segments = Segments {
            dir: dir.to_path_buf(),
            max_bytes,
            // Eight or more segments, so dropping the oldest drops an eighth at most.
            segment_bytes: (max_bytes / 8).clamp(1, 64 << 20),
            list: VecDeque::new(),
            current: None,
            total: 0,
        };
        let mut locs = Vec::new();
        for seq in seqs {
            let (bytes, found) = scan(&path(dir, seq), seq)?;
            let newest_expiry = found.iter().map(|l| l.head.expires_at).max().unwrap_or(0);
            locs.extend(found.into_iter().filter(|l| l.head.expires_at > now_ms));
            segments.total += bytes;
            segments.list.push_back(Segment {
                seq,
                bytes,
                newest_expiry,
            });
        }
        let next = segments.list.back().map_or(0, |s| s.seq + 1);
        segments.start(next)?;
        let gone = segments.evict(now_ms);
        locs.retain(|l| !gone.contains(&l.seq));
        Ok((segments, locs))
    }

    /// Appends one record; where it went.
    pub fn append(&mut self, record: &[u8], head: Head) -> io::Result<Loc> {
        let full = self
            .list
            .back()
            .is_some_and(|s| s.bytes >= self.segment_bytes);
        if full || self.current.is_none() {
            let next = self.list.back().map_or(0, |s| s.seq + 1);
            self.start(next)?;
        }
        let (Some(file), Some(segment)) = (self.current.as_mut(), self.list.back_mut()) else {
            return Err(io::Error::other("no open segment"));
        };
        let offset = segment.bytes;
        if let Err(e) = file.write_all(record) {
            // A partial write leaves a torn record: the next one goes to a new file.
            self.current = None;
            return Err(e);
        }
        segment.bytes += record.len() as u64;
        segment.newest_expiry = segment.newest_expiry.max(head.expires_at);
        self.total += record.len() as u64;
        Ok(Loc {
            seq: segment.seq,
            offset,
            head,
        })
    }

    /// Deletes whole segments: expired ones, then the oldest while over `max_bytes`.
    /// The sequence numbers of those gone.
    pub fn evict(&mut self, now_ms: u64) -> Vec<u64> {
        let mut gone = Vec::new();
        let current = self.list.back().map(|s| s.seq);
        let expired: Vec<u64> = self
            .list
            .iter()
            .filter(|s| Some(s.seq) != current && s.newest_expiry <= now_ms)
            .map(|s| s.seq)
            .collect();
        for seq in expired {
            self.delete(seq, &mut gone);
        }
        while self.total > self.max_bytes {
            let Some(oldest) = self.list.front().map(|s| s.seq) else {
                break;
            };
            if Some(oldest) == current {
                // Only the current one is left: it goes too, and a fresh one starts.
                self.current = None;
                self.delete(oldest, &mut gone);
                let _ = self.start(oldest + 1);
                break;
            }
            self.delete(oldest, &mut gone);
        }
        gone
    }

    /// Flushes the current segment to the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.current.as_mut().map_or(Ok(()), |f| f.sync_data())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn start(&mut self, seq: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(&self.dir, seq))?;
        let bytes = file.metadata()?.len();
        self.current = Some(file);
        if self.list.back().is_none_or(|s| s.seq != seq) {
            self.total += bytes;
            self.list.push_back(Segment {
                seq,
                bytes,
                newest_expiry: 0,
            });
        }
        Ok(())
    }

    fn delete(&mut self, seq: u64, gone: &mut Vec<u64>) {
        let Some(at) = self.list.iter().position(|s| s.seq == seq) else {
            return;
        };
        if let Err(e) = fs::remove_file(path(&self.dir, seq))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, seq, "replay store: cannot delete a segment");
        }
        if let Some(segment) = self.list.remove(at) {
            self.total = self.total.saturating_sub(segment.bytes);
        }
        gone.push(seq);
    }
}

/// Reads one record's bytes.
pub fn read(dir: &Path, loc: &Loc) -> io::Result<Vec<u8>> {
    let mut file = File::open(path(dir, loc.seq))?;
    file.seek(SeekFrom::Start(loc.offset))?;
    let mut record = vec![0; loc.head.len as usize];
    file.read_exact(&mut record)?;
    Ok(record)
}

/// The heads of a segment's whole records, up to the first torn or foreign one, and
/// the file's length.
fn scan(file: &Path, seq: u64) -> io::Result<(u64, Vec<Loc>)> {
    let f = File::open(file)?;
    let len = f.metadata()?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, f);
    let mut locs = Vec::new();
    let mut offset = 0u64;
    let mut buf = [0u8; HEAD_LEN];
    while offset + HEAD_LEN as u64 <= len {
        reader.read_exact(&mut buf)?;
        let Some(head) = Head::decode(&buf) else {
            break;
        };
        if offset + u64::from(head.len) > len {
            break;
        }
        locs.push(Loc { seq, offset, head });
        offset += u64::from(head.len);
        reader.seek_relative(i64::from(head.len) - HEAD_LEN as i64)?;
    }
    Ok((len, locs))
}

fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("replay-{seq:016}.seg"))
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix("replay-")?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}
