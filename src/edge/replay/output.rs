//! The replay's output files: status changes (JSON lines or an Avro container) and
//! dead letters (JSON lines), buffered between commits, then written and fsynced so
//! that their lengths can be committed with the state. Owns the files; knows nothing
//! of the engine.

use super::{io, Progress, ReplayError, ReplayOptions};
use crate::codec::avro::StatusChangeWriter;
use crate::codec::Format;
use crate::core::status::StatusChange;
use crate::driver::DeadLetter;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A dead letter as a JSON line of the dead-letter file.
#[derive(Debug, Serialize)]
struct DeadLine<'a> {
    source: &'a str,
    record: i64,
    outcome: &'static str,
    code: &'static str,
    field: Option<&'a str>,
    reason: &'a str,
    raw: std::borrow::Cow<'a, str>,
}

// One sink per replay; its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Sink {
    Json(BufWriter<File>),
    Avro(StatusChangeWriter<BufWriter<File>>),
}

pub(super) struct Outputs {
    out_path: PathBuf,
    dead_path: PathBuf,
    out: Sink,
    dead: BufWriter<File>,
    changes: Vec<StatusChange>,
}

/// Flushes a buffered file, fsyncs it and returns its length.
fn sync_file(w: &mut BufWriter<File>, path: &Path) -> Result<u64, ReplayError> {
    w.flush().map_err(io("cannot write", path))?;
    let f = w.get_mut();
    f.sync_data().map_err(io("cannot sync", path))?;
    f.stream_position()
        .map_err(io("cannot read position of", path))
}

impl Outputs {
    pub(super) fn open(opts: &ReplayOptions, p: &Progress) -> Result<Outputs, ReplayError> {
        let open = |path: &Path, len: u64| -> Result<BufWriter<File>, ReplayError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io("cannot create directory for", path))?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io("cannot open output", path))?;
            f.set_len(len).map_err(io("cannot cut back output", path))?;
            f.seek(SeekFrom::End(0))
                .map_err(io("cannot seek output", path))?;
            Ok(BufWriter::with_capacity(1 << 20, f))
        };
        let w = open(&opts.out, p.out_len)?;
        let avro_err = |source| ReplayError::Avro {
            path: opts.out.clone(),
            source,
        };
        let out = match opts.format {
            Format::Json => Sink::Json(w),
            Format::Avro if p.out_len == 0 => {
                Sink::Avro(StatusChangeWriter::new(w).map_err(avro_err)?)
            }
            Format::Avro => Sink::Avro(StatusChangeWriter::resume(w)),
        };
        Ok(Outputs {
            out_path: opts.out.clone(),
            dead_path: opts.dead_letter.clone(),
            out,
            dead: open(&opts.dead_letter, p.dead_len)?,
            changes: Vec::new(),
        })
    }

    pub(super) fn dead(&mut self, d: &DeadLetter) -> Result<(), ReplayError> {
        let line = DeadLine {
            source: &d.source,
            record: d.position,
            outcome: d.outcome.as_str(),
            code: d.code,
            field: d.field.as_deref(),
            reason: &d.reason,
            raw: String::from_utf8_lossy(&d.raw),
        };
        serde_json::to_writer(&mut self.dead, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| self.dead.write_all(b"\n"))
            .map_err(io("cannot write dead letters to", &self.dead_path))
    }

    /// Takes status changes in order: JSON lines are written at once (through the
    /// file's buffer; what the next commit does not cover is cut back on resume), an
    /// Avro container keeps them for one block per commit.
    pub(super) fn changes(&mut self, changes: &mut Vec<StatusChange>) -> Result<(), ReplayError> {
        match &mut self.out {
            Sink::Json(w) => {
                for c in changes.drain(..) {
                    serde_json::to_writer(&mut *w, &c)
                        .map_err(std::io::Error::from)
                        .and_then(|_| w.write_all(b"\n"))
                        .map_err(io("cannot write status changes to", &self.out_path))?;
                }
            }
            Sink::Avro(_) => self.changes.append(changes),
        }
        Ok(())
    }

    /// Writes what is kept for the commit, flushes and fsyncs both files; returns
    /// their lengths.
    pub(super) fn sync(&mut self) -> Result<(u64, u64), ReplayError> {
        let out_len = match &mut self.out {
            Sink::Json(w) => sync_file(w, &self.out_path)?,
            Sink::Avro(w) => {
                let avro_err = |source| ReplayError::Avro {
                    path: self.out_path.clone(),
                    source,
                };
                w.write_block(&self.changes).map_err(avro_err)?;
                w.flush().map_err(avro_err)?;
                let mut f = w.get_ref().get_ref();
                f.sync_data().map_err(io("cannot sync", &self.out_path))?;
                f.stream_position()
                    .map_err(io("cannot read position of", &self.out_path))?
            }
        };
        self.changes.clear();
        let dead_len = sync_file(&mut self.dead, &self.dead_path)?;
        Ok((out_len, dead_len))
    }
}
