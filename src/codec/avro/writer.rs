//! Writing object container files: [`StatusChangeWriter`] (the replay's Avro output) and
//! [`InputWriter`] (Avro exports of generated inputs). Both write to the
//! [`Write`] they are given; neither opens, truncates or syncs a file.
//!
//! Output is deterministic and resumable: the header has a fixed metadata order and the
//! schema's own `.avsc` text, every block ends with the constant [`SYNC_MARKER`], and one
//! [`write_block`](StatusChangeWriter::write_block) call writes exactly one block with a
//! single `write_all`. So the same records always give the same bytes, every length the
//! caller sees after a `write_block` + `flush` is a block boundary (the replay records it
//! as its resume point), and [`resume`](StatusChangeWriter::resume) on a file cut back to
//! such a length continues it with exactly the bytes of an uninterrupted run.
//!
//! # Why this is not `apache_avro::Writer`
//!
//! apache-avro 0.17's `Writer` has the two features that suggest it: a caller-given sync
//! marker (`Writer::builder().marker(..)`, `Writer::append_to_with_codec`) and appending
//! to an existing file without a header (`Writer::append_to*`). It still cannot keep the
//! properties above:
//!
//! - **No deterministic header.** It collects the header metadata (`avro.schema`,
//!   `avro.codec`) in a `HashMap` and writes it in that map's iteration order, which is
//!   seeded randomly per map. Two fresh files of the same records can therefore begin
//!   with different bytes, and a crashed-then-resumed replay would not reproduce an
//!   uninterrupted one. (Its schema text is also a re-serialisation, not the `.avsc`.)
//! - **No control of block boundaries when appending.** A writer made with `append_to*`
//!   keeps the default block size of 16,000 bytes (the builder's `block_size` cannot be
//!   combined with appending), so one replay commit (200,000 records by default) would
//!   become many blocks, and the blocks cut off early are written out while the rest of
//!   the commit is still being encoded: an encoding error part-way would leave half a
//!   commit in the file. Here a block is encoded completely before anything is written.
//! - **Short writes are ignored.** `Writer::flush` uses `Write::write` and adds up the
//!   counts it returns without checking them; a `BufWriter<File>` hands a block larger
//!   than its buffer straight to the file, and a short write there would silently drop
//!   bytes. Here each block goes out with one `write_all`.
//!
//! Both were seen with 0.17 itself: twenty writers of the same record, with the same
//! marker, produced two different headers; 500 status changes appended in one go came
//! out as 5 blocks. So the header (a dozen lines) and the block framing (count, size,
//! data, marker) stay hand-written, while validating and encoding every datum is left to
//! `apache_avro`.

use super::block::{put_bytes, put_long, BlockCodec, MAGIC, SYNC_MARKER};
use super::error::AvroError;
use super::input::input_to_value;
use super::schema::{input_embedded, status_change_embedded, Embedded, InputKind};
use super::status::status_change_to_value;
use crate::core::status::StatusChange;
use apache_avro::types::Value as AvroValue;
use serde_json::Value as Json;
use std::io::Write;

/// Marker that opens an Avro single-object encoding.
const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the single-object header: the marker and an 8-byte schema fingerprint.
const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// The container header for an embedded schema: magic, metadata in a fixed order
/// (`avro.schema`, `avro.codec`), then [`SYNC_MARKER`].
fn container_header(embedded: &Embedded, codec: BlockCodec) -> Vec<u8> {
    let mut h = Vec::with_capacity(embedded.compact.len() + 64);
    h.extend_from_slice(&MAGIC);
    put_long(&mut h, 2);
    put_bytes(&mut h, b"avro.schema");
    put_bytes(&mut h, embedded.compact.as_bytes());
    put_bytes(&mut h, b"avro.codec");
    put_bytes(&mut h, codec.name().as_bytes());
    put_long(&mut h, 0);
    h.extend_from_slice(&SYNC_MARKER);
    h
}

/// The shared machinery of the two container writers.
struct ContainerWriter<W: Write> {
    out: W,
    /// The schema every datum is written with.
    embedded: &'static Embedded,
    /// Its record name, for errors.
    record: &'static str,
    codec: BlockCodec,
    /// Bytes passed to `out` so far.
    written: u64,
    /// The datum encoder, created on first use (and again after a failed write).
    encoder: Option<apache_avro::GenericSingleObjectWriter>,
    /// The encoder's output for one datum.
    scratch: Vec<u8>,
}

impl<W: Write> ContainerWriter<W> {
    /// Starts a fresh file: writes the header at once.
    fn create(
        out: W,
        embedded: &'static Embedded,
        record: &'static str,
        codec: BlockCodec,
    ) -> Result<Self, AvroError> {
        let mut w = ContainerWriter::resume(out, embedded, record, codec);
        let header = container_header(embedded, codec);
        w.out.write_all(&header).map_err(|source| AvroError::Io {
            doing: "writing the container header",
            source,
        })?;
        w.written = header.len() as u64;
        Ok(w)
    }

    /// Continues a file that ends at a block boundary; writes nothing yet.
    fn resume(
        out: W,
        embedded: &'static Embedded,
        record: &'static str,
        codec: BlockCodec,
    ) -> Self {
        ContainerWriter {
            out,
            embedded,
            record,
            codec,
            written: 0,
            encoder: None,
            scratch: Vec::new(),
        }
    }

    /// Encodes one datum (plain Avro binary) onto `data`.
    ///
    /// Goes through `apache_avro`'s single-object writer, which validates and encodes with
    /// a schema resolved once per container writer (resolving it per value, as
    /// `to_avro_datum` does, costs about three times as much), and strips the
    /// single-object header (`C3 01` and the 8-byte schema fingerprint) the spec puts in
    /// front of the plain datum.
    fn encode_datum(
        &mut self,
        value: &AvroValue,
        data: &mut Vec<u8>,
    ) -> Result<(), Box<apache_avro::Error>> {
        if self.encoder.is_none() {
            self.encoder = Some(apache_avro::GenericSingleObjectWriter::new_with_capacity(
                &self.embedded.schema,
                1024,
            )?);
        }
        if let Some(encoder) = &mut self.encoder {
            self.scratch.clear();
            if let Err(e) = encoder.write_value_ref(value, &mut self.scratch) {
                // A failed write can leave the encoder's buffer in a state it refuses to
                // continue from; start afresh next time.
                self.encoder = None;
                return Err(Box::new(e));
            }
            if self.scratch.starts_with(&SINGLE_OBJECT_MAGIC) {
                if let Some(datum) = self.scratch.get(SINGLE_OBJECT_HEADER_LEN..) {
                    data.extend_from_slice(datum);
                    return Ok(());
                }
            }
        }
        // Not the single-object layout this code knows: encode the plain way.
        data.extend_from_slice(&apache_avro::to_avro_datum(
            &self.embedded.schema,
            value.clone(),
        )?);
        Ok(())
    }

    /// Encodes the values as one block and writes it with a single `write_all`.
    fn write_values(&mut self, values: &[AvroValue]) -> Result<u64, AvroError> {
        if values.is_empty() {
            return Ok(0);
        }
        let mut data = Vec::new();
        for (index, v) in values.iter().enumerate() {
            self.encode_datum(v, &mut data)
                .map_err(|source| AvroError::InBlock {
                    index,
                    source: Box::new(AvroError::Encode {
                        record: self.record,
                        source,
                    }),
                })?;
        }
        let data = self.codec.compress(data)?;
        let mut block = Vec::with_capacity(data.len() + 36);
        put_long(&mut block, values.len() as i64);
        put_long(&mut block, data.len() as i64);
        block.extend_from_slice(&data);
        block.extend_from_slice(&SYNC_MARKER);
        self.out.write_all(&block).map_err(|source| AvroError::Io {
            doing: "writing a container block",
            source,
        })?;
        self.written += block.len() as u64;
        Ok(block.len() as u64)
    }

    /// Flushes `out`.
    fn flush(&mut self) -> Result<(), AvroError> {
        self.out.flush().map_err(|source| AvroError::Io {
            doing: "flushing the container file",
            source,
        })
    }
}

/// Writes status changes as an Avro object container file (schema
/// [`status_change_schema`](super::status_change_schema)), one block per
/// [`write_block`](Self::write_block) call.
///
/// Output is deterministic: the header is fixed for a codec and the sync marker is
/// [`SYNC_MARKER`]. A file is therefore resumable: truncate it to the end of its last
/// complete block (a length the caller recorded from the byte counts returned here), open
/// it for appending, and continue with [`resume`](Self::resume); the result is byte-for-
/// byte what an uninterrupted run writes. Each block is written with one `write_all`, so
/// a crash leaves at most one partial block at the end.
pub struct StatusChangeWriter<W: Write> {
    inner: ContainerWriter<W>,
}

impl<W: Write> StatusChangeWriter<W> {
    /// Starts a fresh file: writes the header (codec `null`) at once, so even a run with
    /// no status changes leaves a valid, empty container.
    pub fn new(out: W) -> Result<Self, AvroError> {
        Self::with_codec(out, BlockCodec::Null)
    }

    /// Starts a fresh file with the given block codec.
    pub fn with_codec(out: W, codec: BlockCodec) -> Result<Self, AvroError> {
        Ok(StatusChangeWriter {
            inner: ContainerWriter::create(out, status_change_embedded(), "StatusChange", codec)?,
        })
    }

    /// Continues a file that ends at a block boundary (right after its header or a
    /// block): writes no header, only further blocks. `out` must append (e.g. a file opened
    /// with `append(true)` or positioned at its end); the codec is `null`.
    pub fn resume(out: W) -> Self {
        Self::resume_with_codec(out, BlockCodec::Null)
    }

    /// Continues a file written with the given codec; see [`resume`](Self::resume).
    pub fn resume_with_codec(out: W, codec: BlockCodec) -> Self {
        StatusChangeWriter {
            inner: ContainerWriter::resume(out, status_change_embedded(), "StatusChange", codec),
        }
    }

    /// The exact header bytes [`new`](Self::new)/[`with_codec`](Self::with_codec) write;
    /// a caller can compare them with an existing file before resuming it.
    pub fn header(codec: BlockCodec) -> Vec<u8> {
        container_header(status_change_embedded(), codec)
    }

    /// Writes the changes as one block and returns the bytes written; an empty slice
    /// writes nothing and returns 0. The block is encoded completely before a single
    /// `write_all`, so an encoding error writes nothing; only an I/O error can leave part
    /// of a block behind (truncate to the last boundary before resuming).
    pub fn write_block(&mut self, changes: &[StatusChange]) -> Result<u64, AvroError> {
        let values: Vec<AvroValue> = changes.iter().map(status_change_to_value).collect();
        self.inner.write_values(&values)
    }

    /// Bytes written by this writer so far (header included for a fresh file; only the
    /// appended blocks for a resumed one).
    pub fn bytes_written(&self) -> u64 {
        self.inner.written
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), AvroError> {
        self.inner.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner.out
    }

    /// Gives back the underlying writer (not flushed; everything has been passed to it).
    pub fn into_inner(self) -> W {
        self.inner.out
    }
}

/// Writes JSON-shaped input records of one kind as an Avro object container file (schema
/// [`input_schema`](super::input_schema)), deterministically, one block per
/// [`write_block`](Self::write_block) call; used for Avro exports of generated data.
/// The same header, marker and resume rules as [`StatusChangeWriter`] apply.
pub struct InputWriter<W: Write> {
    inner: ContainerWriter<W>,
    kind: InputKind,
}

impl<W: Write> InputWriter<W> {
    /// Starts a fresh file of `kind` records: writes the header (codec `null`) at once.
    pub fn new(out: W, kind: InputKind) -> Result<Self, AvroError> {
        Self::with_codec(out, kind, BlockCodec::Null)
    }

    /// Starts a fresh file of `kind` records with the given block codec.
    pub fn with_codec(out: W, kind: InputKind, codec: BlockCodec) -> Result<Self, AvroError> {
        Ok(InputWriter {
            inner: ContainerWriter::create(out, input_embedded(kind), kind.record_name(), codec)?,
            kind,
        })
    }

    /// Continues a file of `kind` records that ends at a block boundary; writes no header.
    pub fn resume(out: W, kind: InputKind, codec: BlockCodec) -> Self {
        InputWriter {
            inner: ContainerWriter::resume(out, input_embedded(kind), kind.record_name(), codec),
            kind,
        }
    }

    /// Converts the records with [`input_to_value`] and writes them as one block; returns
    /// the bytes written (0 for an empty slice). If a record does not convert, the error
    /// names it and nothing is written.
    pub fn write_block(&mut self, records: &[Json]) -> Result<u64, AvroError> {
        let values = records
            .iter()
            .enumerate()
            .map(|(index, r)| {
                input_to_value(r, self.kind).map_err(|e| AvroError::InBlock {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.write_values(&values)
    }

    /// Bytes written by this writer so far (header included for a fresh file).
    pub fn bytes_written(&self) -> u64 {
        self.inner.written
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), AvroError> {
        self.inner.flush()
    }

    /// Gives back the underlying writer (not flushed; everything has been passed to it).
    pub fn into_inner(self) -> W {
        self.inner.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avro::block::unzigzag;
    use crate::codec::avro::fixtures::change;
    use crate::codec::avro::reader::read_status_changes;
    use crate::codec::avro::schema::status_change_schema;
    use crate::codec::avro::status::status_change_from_value;

    #[test]
    fn status_change_container_round_trips() {
        for codec in [BlockCodec::Null, BlockCodec::Deflate] {
            let first: Vec<StatusChange> = (0..3).map(change).collect();
            let second: Vec<StatusChange> = (3..10).map(change).collect();
            let mut w = StatusChangeWriter::with_codec(Vec::new(), codec).unwrap();
            let header_len = w.bytes_written();
            assert_eq!(
                header_len,
                StatusChangeWriter::<Vec<u8>>::header(codec).len() as u64
            );
            let n1 = w.write_block(&first).unwrap();
            assert_eq!(w.write_block(&[]).unwrap(), 0);
            let n2 = w.write_block(&second).unwrap();
            assert_eq!(w.bytes_written(), header_len + n1 + n2);
            let file = w.into_inner();
            assert_eq!(file.len() as u64, header_len + n1 + n2);

            let reader = apache_avro::Reader::new(&file[..]).unwrap();
            assert_eq!(reader.writer_schema(), status_change_schema());
            let read: Vec<StatusChange> = reader
                .map(|v| status_change_from_value(&v.unwrap()).unwrap())
                .collect();
            let all: Vec<StatusChange> = first.iter().chain(&second).cloned().collect();
            assert_eq!(read, all);
            assert_eq!(read_status_changes(&file[..]).unwrap(), all);

            // An empty run is a valid, empty container.
            let empty = StatusChangeWriter::with_codec(Vec::new(), codec)
                .unwrap()
                .into_inner();
            assert_eq!(apache_avro::Reader::new(&empty[..]).unwrap().count(), 0);
            assert!(read_status_changes(&empty[..]).unwrap().is_empty());
        }
    }

    #[test]
    fn output_is_deterministic_and_resumes_byte_identically() {
        let b1: Vec<StatusChange> = (0..4).map(change).collect();
        let b2: Vec<StatusChange> = (4..9).map(change).collect();
        for codec in [BlockCodec::Null, BlockCodec::Deflate] {
            let uninterrupted = || {
                let mut w = StatusChangeWriter::with_codec(Vec::new(), codec).unwrap();
                w.write_block(&b1).unwrap();
                w.write_block(&b2).unwrap();
                w.into_inner()
            };
            let full = uninterrupted();
            assert_eq!(full, uninterrupted());
            assert!(full.starts_with(&StatusChangeWriter::<Vec<u8>>::header(codec)));

            // Write both blocks, lose block 2 (truncate after block 1), resume, rewrite it.
            let mut w = StatusChangeWriter::with_codec(Vec::new(), codec).unwrap();
            let boundary = w.bytes_written() + w.write_block(&b1).unwrap();
            w.write_block(&b2).unwrap();
            let mut cut = w.into_inner();
            cut.truncate(boundary as usize);
            let mut w = StatusChangeWriter::resume_with_codec(cut, codec);
            w.write_block(&b2).unwrap();
            assert_eq!(w.bytes_written() as usize, full.len() - boundary as usize);
            assert_eq!(w.into_inner(), full);

            // The same through a real file truncated with set_len and reopened for append.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("changes.avro");
            let mut w =
                StatusChangeWriter::with_codec(std::fs::File::create(&path).unwrap(), codec)
                    .unwrap();
            let boundary = w.bytes_written() + w.write_block(&b1).unwrap();
            w.write_block(&b2[..2]).unwrap(); // a block that is then lost
            w.flush().unwrap();
            drop(w);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(boundary).unwrap();
            drop(f);
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            let mut w = StatusChangeWriter::resume_with_codec(f, codec);
            w.write_block(&b2).unwrap();
            w.flush().unwrap();
            drop(w);
            assert_eq!(std::fs::read(&path).unwrap(), full);
        }
    }

    /// One `write_block` is one block however large, so every commit of the replay ends
    /// on a block boundary and nothing of a commit reaches the output before all of it
    /// is encoded (apache_avro's appending writer would cut blocks at 16,000 bytes).
    #[test]
    fn a_large_batch_is_one_block() {
        fn long(bytes: &[u8], pos: &mut usize) -> i64 {
            let mut z = 0u64;
            for shift in (0..64).step_by(7) {
                let b = bytes[*pos];
                *pos += 1;
                z |= u64::from(b & 0x7F) << shift;
                if b & 0x80 == 0 {
                    break;
                }
            }
            unzigzag(z)
        }
        let changes: Vec<StatusChange> = (0..500).map(change).collect();
        let mut w = StatusChangeWriter::new(Vec::new()).unwrap();
        let header_len = w.bytes_written() as usize;
        let n = w.write_block(&changes).unwrap();
        let file = w.into_inner();
        assert!(n > 16_000, "{n}");
        let mut pos = header_len;
        assert_eq!(long(&file, &mut pos), 500);
        let size = long(&file, &mut pos) as usize;
        assert_eq!(pos + size + SYNC_MARKER.len(), file.len());
        assert!(file.ends_with(&SYNC_MARKER));
        assert_eq!(read_status_changes(&file[..]).unwrap(), changes);
    }
}
