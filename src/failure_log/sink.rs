//! The synchronous side of a daily-file writer (failure log, request journal): appends whole batches of lines to the day's
//! file, fsyncs, rolls over to a new file when the day changes, and survives a disk
//! that refuses (counted, and logged at most once a minute). Runs on the blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::files::FileKind;
use super::stats::FailureLogStats;
use super::time::Day;

/// Complaints about the disk are logged at most this often.
const COMPLAIN_EVERY: Duration = Duration::from_secs(60);

pub struct Sink {
    dir: PathBuf,
    kind: FileKind,
    current: Option<OpenFile>,
    stats: FailureLogStats,
    last_complaint: Option<Instant>,
    suppressed: u64,
}

struct OpenFile {
    day: Day,
    file: File,
    /// Written since the last fsync.
    unsynced: bool,
    /// The file may end in part of a line (a write failed, or a crash): the next
    /// write starts with a newline so that fragment stays a line of its own.
    torn: bool,
}

impl Sink {
    pub fn new(dir: PathBuf, kind: FileKind, stats: FailureLogStats) -> Sink {
        Sink {
            dir,
            kind,
            current: None,
            stats,
            last_complaint: None,
            suppressed: 0,
        }
    }

    /// Appends `lines` (whole lines, `records` of them) to `day`'s file.
    pub fn append(&mut self, day: Day, lines: &[u8], records: u64) {
        if lines.is_empty() {
            return;
        }
        let result = self.open(day).and_then(|open| {
            let result = if open.torn {
                let mut joined = Vec::with_capacity(lines.len() + 1);
                joined.push(b'\n');
                joined.extend_from_slice(lines);
                open.file.write_all(&joined)
            } else {
                open.file.write_all(lines)
            };
            open.unsynced = true;
            open.torn = result.is_err();
            result
        });
        match result {
            Ok(()) => self.stats.add_written(records),
            Err(e) => {
                self.stats.add_dropped(records);
                self.complain("write", &e);
            }
        }
    }

    /// fsyncs the open file if anything was written since the last time.
    pub fn sync(&mut self) {
        let Some(open) = self.current.as_mut().filter(|o| o.unsynced) else {
            return;
        };
        open.unsynced = false;
        if let Err(e) = open.file.sync_data() {
            self.complain("fsync", &e);
        }
    }

    /// Counts a failed retention pass.
    pub fn retention_failed(&mut self, e: &std::io::Error) {
        self.complain("retention", e);
    }

    fn open(&mut self, day: Day) -> std::io::Result<&mut OpenFile> {
        if self.current.as_ref().is_some_and(|o| o.day != day) {
            // Midnight (UTC): the old file is finished; make it durable, then move on.
            self.sync();
            self.current = None;
        }
        if self.current.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(self.kind.file_path(&self.dir, day))?;
            let torn = ends_mid_line(&mut file)?;
            self.current = Some(OpenFile {
                day,
                file,
                unsynced: false,
                torn,
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no open file"))
    }

    fn complain(&mut self, what: &'static str, error: &std::io::Error) {
        self.stats.add_error();
        let now = Instant::now();
        if self
            .last_complaint
            .is_some_and(|at| now.duration_since(at) < COMPLAIN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        self.last_complaint = Some(now);
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::error!(
            dir = %self.dir.display(), log = self.kind.what, op = what, %error, suppressed,
            "cannot write; proxying continues, records are being lost"
        );
    }
}

/// Whether a file's last byte is not a newline (an empty file is fine).
fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure_log::files::{FAILURES, file_path};

    #[test]
    fn a_torn_file_gets_a_newline_before_new_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = Day::from_civil(2026, 5, 1);
        std::fs::write(file_path(dir.path(), day), "{\"a\":1}\n{\"torn").expect("seed");
        let stats = FailureLogStats::default();
        let mut sink = Sink::new(dir.path().to_path_buf(), FAILURES, stats.clone());
        sink.append(day, b"{\"b\":2}\n", 1);
        sink.sync();
        let text = std::fs::read_to_string(file_path(dir.path(), day)).expect("read");
        assert_eq!(text, "{\"a\":1}\n{\"torn\n{\"b\":2}\n");
        assert_eq!(stats.records_written(), 1);
    }

    #[test]
    fn a_directory_that_cannot_exist_is_counted_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "x").expect("seed");
        let stats = FailureLogStats::default();
        let mut sink = Sink::new(file.join("sub"), FAILURES, stats.clone());
        sink.append(Day(0), b"{}\n", 3);
        sink.append(Day(0), b"{}\n", 2);
        assert_eq!(stats.records_written(), 0);
        assert_eq!(stats.records_dropped(), 5);
        assert_eq!(stats.write_errors(), 2);
    }
}
