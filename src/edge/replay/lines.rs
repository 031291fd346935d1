//! Reading and decoding a JSON-lines input, in the replay's own thread or on other
//! cores ahead of it.
//!
//! Decoding and validating a line is pure and takes about a fifth of a replay's CPU, so
//! with `threads > 1` a reader thread cuts the file into chunks of lines and
//! `threads - 1` workers decode them while the replay's thread runs the engine; chunks
//! come back in file order, so what the engine sees (and therefore every output byte)
//! is the same for any thread count. With `threads == 1` lines are decoded inline.
//! Memory ahead of the engine is bounded: at most `2 × workers + 2` chunks of
//! [`CHUNK_LINES`] lines are in flight.

use super::{io, ReplayError};
use crate::core::event::{decode_json_line, InvalidEvent, Validated};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

/// Lines per chunk handed to a decoding worker.
pub const CHUNK_LINES: usize = 2048;

/// One line of the input.
pub struct Line {
    /// Bytes it took in the file, its newline included.
    pub len: u64,
    /// None for a line of only whitespace (not a record, but a line).
    pub record: Option<Decoded>,
}

/// A decoded line.
pub struct Decoded {
    /// The record, or why it is not one.
    pub result: Result<Validated, InvalidEvent>,
    /// The line as read (trimmed), quoted in dead letters.
    pub raw: Raw,
}

/// Where a line's raw bytes are.
pub enum Raw {
    /// In the chunk's buffer.
    In(Range<usize>),
    /// Not valid UTF-8: the lossily converted, trimmed text.
    Owned(Vec<u8>),
}

/// Lines of the input in file order, with the bytes they point into.
pub struct Chunk {
    /// The lines' bytes.
    pub buf: Vec<u8>,
    /// The lines.
    pub lines: Vec<Line>,
}

impl Raw {
    /// The bytes, given the buffer of the chunk the line came in.
    pub fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Raw::In(r) => &buf[r.clone()],
            Raw::Owned(v) => v,
        }
    }
}

/// Lines read but not decoded yet: the bytes and each line's range in them.
type RawChunk = (Vec<u8>, Vec<Range<usize>>);

/// Reads up to [`CHUNK_LINES`] lines (bytes only, not decoded yet). None at the end.
fn read_chunk(reader: &mut impl BufRead, path: &Path) -> Result<Option<RawChunk>, ReplayError> {
    let mut buf = Vec::with_capacity(CHUNK_LINES * 640);
    let mut ranges = Vec::with_capacity(CHUNK_LINES);
    while ranges.len() < CHUNK_LINES {
        let start = buf.len();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(io("cannot read input", path))?;
        if n == 0 {
            break;
        }
        ranges.push(start..start + n);
    }
    Ok((!ranges.is_empty()).then_some((buf, ranges)))
}

/// Decodes the lines of a chunk read by [`read_chunk`].
fn decode_chunk(buf: Vec<u8>, ranges: Vec<Range<usize>>) -> Chunk {
    let lines = ranges
        .into_iter()
        .map(|r| {
            let len = r.len() as u64;
            let bytes = &buf[r.clone()];
            let record = match std::str::from_utf8(bytes) {
                Ok(text) => {
                    let line = text.trim();
                    (!line.is_empty()).then(|| {
                        let start = r.start + (line.as_ptr() as usize - text.as_ptr() as usize);
                        Decoded {
                            result: decode_json_line(line),
                            raw: Raw::In(start..start + line.len()),
                        }
                    })
                }
                Err(_) => {
                    let text = String::from_utf8_lossy(bytes);
                    let line = text.trim();
                    (!line.is_empty()).then(|| Decoded {
                        result: Err(InvalidEvent::Malformed("line is not valid UTF-8".into())),
                        raw: Raw::Owned(line.as_bytes().to_vec()),
                    })
                }
            };
            Line { len, record }
        })
        .collect();
    Chunk { buf, lines }
}

/// Calls `f` with every chunk of `path` from byte `start` on, in file order, decoding
/// on `threads - 1` workers (inline when `threads` is 1). Stops at the first error
/// from `f` or from reading.
pub fn for_each_chunk(
    path: &Path,
    start: u64,
    threads: usize,
    mut f: impl FnMut(Chunk) -> Result<(), ReplayError>,
) -> Result<(), ReplayError> {
    let file = File::open(path).map_err(io("cannot open input", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader
        .seek(SeekFrom::Start(start))
        .map_err(io("cannot seek input", path))?;
    if threads <= 1 {
        while let Some((buf, ranges)) = read_chunk(&mut reader, path)? {
            f(decode_chunk(buf, ranges))?;
        }
        return Ok(());
    }
    let workers = threads - 1;
    std::thread::scope(|s| {
        // reader → workers: numbered raw chunks; workers → here: numbered decoded ones.
        let (raw_tx, raw_rx) = sync_channel::<(u64, Vec<u8>, Vec<Range<usize>>)>(workers + 1);
        let (done_tx, done_rx) = sync_channel::<(u64, Chunk)>(workers + 1);
        let raw_rx = Arc::new(Mutex::new(raw_rx));
        let reading = s.spawn(move || -> Result<(), ReplayError> {
            let mut seq = 0;
            while let Some((buf, ranges)) = read_chunk(&mut reader, path)? {
                if raw_tx.send((seq, buf, ranges)).is_err() {
                    break; // the consumer stopped
                }
                seq += 1;
            }
            Ok(())
        });
        for _ in 0..workers {
            let raw_rx = Arc::clone(&raw_rx);
            let done_tx = done_tx.clone();
            s.spawn(move || loop {
                let next = raw_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((seq, buf, ranges)) = next else { break };
                if done_tx.send((seq, decode_chunk(buf, ranges))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let consumed = in_order(done_rx, &mut f);
        // Unblock the reader and the workers if we stopped early.
        drop(raw_rx);
        let read = reading.join().expect("the reader thread does not panic");
        consumed.and(read)
    })
}

/// Hands chunks to `f` in sequence order as they arrive from the workers.
fn in_order(
    rx: Receiver<(u64, Chunk)>,
    f: &mut impl FnMut(Chunk) -> Result<(), ReplayError>,
) -> Result<(), ReplayError> {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for (seq, chunk) in rx {
        waiting.insert(seq, chunk);
        while let Some(c) = waiting.remove(&next) {
            f(c)?;
            next += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path, start: u64, threads: usize) -> Vec<(u64, Option<String>)> {
        let mut got = Vec::new();
        for_each_chunk(path, start, threads, |c| {
            for l in &c.lines {
                let raw = l
                    .record
                    .as_ref()
                    .map(|d| String::from_utf8_lossy(d.raw.bytes(&c.buf)).into_owned());
                got.push((l.len, raw));
            }
            Ok(())
        })
        .unwrap();
        got
    }

    #[test]
    fn every_thread_count_sees_the_same_lines_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut text = Vec::new();
        for i in 0..(CHUNK_LINES * 3 + 17) {
            match i % 7 {
                0 => text.extend_from_slice(b"   \n"),
                1 => text.extend_from_slice(b"\xff\xfe bad\n"),
                _ => text.extend_from_slice(format!(" {{\"n\":{i}}} \n").as_bytes()),
            }
        }
        text.extend_from_slice(b"{\"last\":1}"); // no newline at the end
        std::fs::write(&path, &text).unwrap();
        let one = lines_of(&path, 0, 1);
        assert_eq!(one.len(), CHUNK_LINES * 3 + 18);
        assert_eq!(one.iter().map(|l| l.0).sum::<u64>(), text.len() as u64);
        assert_eq!(one[2].1.as_deref(), Some("{\"n\":2}"));
        assert_eq!(one[0].1, None);
        for threads in [2, 3, 5] {
            assert_eq!(lines_of(&path, 0, threads), one, "{threads} threads");
        }
        // From an offset (a resumed replay): the same tail.
        let skip: u64 = one[..100].iter().map(|l| l.0).sum();
        assert_eq!(lines_of(&path, skip, 3), one[100..].to_vec());
    }

    #[test]
    fn an_error_from_the_consumer_stops_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{}\n".repeat(CHUNK_LINES * 20)).unwrap();
        let mut seen = 0;
        let r = for_each_chunk(&path, 0, 3, |_| {
            seen += 1;
            if seen == 2 {
                Err(ReplayError::NoInputs)
            } else {
                Ok(())
            }
        });
        assert!(matches!(r, Err(ReplayError::NoInputs)));
        assert_eq!(seen, 2);
    }
}
