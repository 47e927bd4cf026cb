//! Bounded replica logs. A replica writes its output straight to `<id>.log`, a file the
//! peer opened for it in append mode, so the replica never waits on the peer and goes on
//! logging while the peer restarts. The peer rotates the file on every listing (each agent
//! round, at most every 500 ms): past the size bound, the last bound's worth of bytes is
//! copied to `<id>.log.1` (older copies shift to `.2`, ...) and the live file is truncated;
//! the replica's next write lands at its new end, as `O_APPEND` writes do. This is
//! logrotate's `copytruncate`: lines written between the copy and the truncation are
//! lost (a window of a few milliseconds), and while the peer is down the live file grows
//! until the peer is back, then is cut back on the first round.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The bounds of one replica's logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogBound {
    /// The live file is rotated past this many bytes.
    pub(crate) file_max_bytes: u64,
    /// Files kept, the live one included.
    pub(crate) files_max: usize,
}

impl Default for LogBound {
    fn default() -> Self {
        Self {
            file_max_bytes: crate::driver::LOG_FILE_MAX_BYTES,
            files_max: crate::driver::LOG_FILES_MAX,
        }
    }
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens a replica's log for it: created if absent, appended to, readable by the peer's
/// user only (a replica's output may hold what only the operator should see).
pub(crate) fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Rotates `path` if it is past the bound; returns whether it did.
pub(crate) fn rotate(path: &Path, bound: LogBound) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= bound.file_max_bytes {
        return Ok(false);
    }
    if bound.files_max <= 1 {
        OpenOptions::new().write(true).open(path)?.set_len(0)?;
        return Ok(true);
    }
    for n in (1..bound.files_max - 1).rev() {
        match fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let mut live = File::open(path)?;
    live.seek(SeekFrom::Start(len.saturating_sub(bound.file_max_bytes)))?;
    let mut copy = open(&rotated(path, 1))?;
    copy.set_len(0)?;
    io::copy(&mut live.take(bound.file_max_bytes), &mut copy)?;
    copy.flush()?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Removes a replica's log and its rotated copies.
pub(crate) fn remove(path: &Path, bound: LogBound) {
    let _ = fs::remove_file(path);
    for n in 1..bound.files_max.max(2) {
        let _ = fs::remove_file(rotated(path, n));
    }
}

/// The replica's output, oldest first: its rotated copies, then the live file.
#[cfg(test)]
pub(crate) fn read_all(path: &Path, bound: LogBound) -> io::Result<String> {
    let mut bytes = Vec::new();
    for n in (1..bound.files_max).rev() {
        if let Ok(mut file) = File::open(rotated(path, n)) {
            file.read_to_end(&mut bytes)?;
        }
    }
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Marks kept per replica at most; the oldest go first.
const MARKS_MAX: usize = 2048;
/// A new mark at most this often.
const MARK_EVERY_MS: u64 = 250;

/// When each replica's live file had reached which length, as the peer saw it (every
/// listing, at most every [`MARK_EVERY_MS`]): the time of a past line is that of the first
/// mark at or past its end, a bound on when it was written that is late by up to a listing
/// period and the mark spacing (under a second; a replica writes its file directly, so the
/// peer sees no line as it is written). About the last 8 minutes of writing are marked;
/// older lines, and lines of a peer that just started, have their file's last change as
/// their time.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    by_path: HashMap<PathBuf, VecDeque<(u64, u64)>>,
}

impl Marks {
    /// Notes that the live file at `path` is `len` bytes long at `now_ms`; after a
    /// rotation (the file started over) the old marks go.
    pub(crate) fn note(&mut self, path: &Path, len: u64, rotated: bool, now_ms: u64) {
        let marks = self.by_path.entry(path.to_owned()).or_default();
        if rotated {
            marks.clear();
        }
        match marks.back() {
            Some(&(last, _)) if last >= len => return,
            Some(&(_, at)) if at + MARK_EVERY_MS > now_ms => return,
            _ => {}
        }
        marks.push_back((len, now_ms));
        if marks.len() > MARKS_MAX {
            marks.pop_front();
        }
    }

    /// The time of the first mark at or past byte `end` of the live file at `path`.
    pub(crate) fn time_of(&self, path: &Path, end: u64) -> Option<u64> {
        let marks = self.by_path.get(path)?;
        let i = marks.partition_point(|&(len, _)| len < end);
        marks.get(i).map(|&(_, at)| at)
    }

    /// Forgets a removed replica's marks.
    pub(crate) fn forget(&mut self, path: &Path) {
        self.by_path.remove(path);
    }
}

/// One file of a replica's past output: its bytes and when it last changed.
pub(crate) struct Written {
    /// Where in the file `bytes` start.
    pub(crate) start: u64,
    pub(crate) bytes: Vec<u8>,
    /// The file's modification time, ms since the epoch: every line in it was written at
    /// or before it.
    pub(crate) modified_ms: u64,
}

fn modified_ms(file: &File) -> u64 {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The replica's output so far, oldest file first (at most the bound's bytes of each),
/// and the live file's length when read (where following it goes on from).
pub(crate) fn history(path: &Path, bound: LogBound) -> io::Result<(Vec<Written>, u64)> {
    let mut files = Vec::new();
    for n in (1..bound.files_max).rev() {
        if let Ok(file) = File::open(rotated(path, n)) {
            files.push(read_file(file, bound.file_max_bytes)?.0);
        }
    }
    let (live, len) = read_file(File::open(path)?, bound.file_max_bytes)?;
    files.push(live);
    Ok((files, len))
}

/// The last `max_bytes` of a file up to its length now (not what is written meanwhile),
/// and that length.
fn read_file(mut file: File, max_bytes: u64) -> io::Result<(Written, u64)> {
    let modified_ms = modified_ms(&file);
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len - start).read_to_end(&mut bytes)?;
    Ok((
        Written {
            start,
            bytes,
            modified_ms,
        },
        len,
    ))
}

/// Up to `max_bytes` of the live file from `offset` on, and the offset after them; `None`
/// when the file is gone (the replica was removed). A file shorter than `offset` was
/// rotated (truncated): reading starts over at its beginning.
pub(crate) fn read_from(
    path: &Path,
    offset: u64,
    max_bytes: u64,
) -> io::Result<Option<(Vec<u8>, u64)>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max_bytes).read_to_end(&mut bytes)?;
    let next = start + bytes.len() as u64;
    Ok(Some((bytes, next)))
}

/// The bytes a replica's logs take on disk.
#[cfg(test)]
pub(crate) fn total_bytes(path: &Path, bound: LogBound) -> u64 {
    (1..bound.files_max + 2)
        .map(|n| rotated(path, n))
        .chain([path.to_owned()])
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_takes_the_time_of_the_first_mark_past_its_end() {
        let path = Path::new("/r.log");
        let mut marks = Marks::default();
        marks.note(path, 10, false, 1_000);
        marks.note(path, 20, false, 1_100); // too soon: skipped
        marks.note(path, 30, false, 2_000);
        marks.note(path, 30, false, 3_000); // no growth: skipped
        assert_eq!(marks.time_of(path, 5), Some(1_000));
        assert_eq!(marks.time_of(path, 10), Some(1_000));
        assert_eq!(marks.time_of(path, 11), Some(2_000));
        assert_eq!(marks.time_of(path, 31), None);
        marks.note(path, 4, true, 4_000);
        assert_eq!(marks.time_of(path, 3), Some(4_000));
        assert_eq!(marks.time_of(path, 10), None);
        marks.forget(path);
        assert_eq!(marks.time_of(path, 1), None);
    }
}
