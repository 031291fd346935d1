//! Container framing shared by the reader and the writer: the magic bytes, churnwatch's
//! fixed sync marker, the block codecs (`null`, `deflate`) and the zig-zag varints Avro
//! uses for lengths and counts.
//!
//! Works on byte buffers only; opens nothing.

use super::error::AvroError;
use std::io::{Read, Write};

/// Magic bytes that open every Avro object container file.
pub(super) const MAGIC: [u8; 4] = *b"Obj\x01";

/// Sync marker of every object container file churnwatch writes.
///
/// Avro normally uses a random marker per file; a constant one makes output files
/// byte-for-byte reproducible and lets a file truncated at a block boundary be continued
/// ([`StatusChangeWriter::resume`](super::StatusChangeWriter::resume)) with bytes
/// identical to an uninterrupted run.
pub const SYNC_MARKER: [u8; 16] =
    0x63_77_1c_e5_a0_4d_97_b2_5e_0f_c8_3a_d1_26_6b_f4u128.to_be_bytes();

/// Largest data block (after decompression) a container reader accepts.
pub(super) const MAX_BLOCK_BYTES: u64 = 256 * 1024 * 1024;

/// Compression of the data blocks of a container file churnwatch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BlockCodec {
    /// No compression (Avro codec `null`).
    #[default]
    Null,
    /// Raw deflate, RFC 1951 (Avro codec `deflate`).
    Deflate,
}

impl BlockCodec {
    /// The Avro codec name written to the header (`avro.codec`).
    pub fn name(self) -> &'static str {
        match self {
            BlockCodec::Null => "null",
            BlockCodec::Deflate => "deflate",
        }
    }

    /// The codec with this `avro.codec` name, if churnwatch supports it.
    pub(super) fn from_name(name: &str) -> Option<BlockCodec> {
        match name {
            "null" => Some(BlockCodec::Null),
            "deflate" => Some(BlockCodec::Deflate),
            _ => None,
        }
    }

    /// Compresses a block's data for writing.
    pub(super) fn compress(self, data: Vec<u8>) -> Result<Vec<u8>, AvroError> {
        match self {
            BlockCodec::Null => Ok(data),
            BlockCodec::Deflate => {
                let mut enc = libflate::deflate::Encoder::new(Vec::with_capacity(data.len() / 2));
                enc.write_all(&data).map_err(|source| AvroError::Io {
                    doing: "deflate-compressing a block",
                    source,
                })?;
                enc.finish().into_result().map_err(|source| AvroError::Io {
                    doing: "deflate-compressing a block",
                    source,
                })
            }
        }
    }

    /// Decompresses a block, refusing to produce more than [`MAX_BLOCK_BYTES`].
    pub(super) fn decompress(self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        match self {
            BlockCodec::Null => Ok(data),
            BlockCodec::Deflate => {
                let mut out = Vec::new();
                libflate::deflate::Decoder::new(&data[..])
                    .take(MAX_BLOCK_BYTES + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("deflate data is corrupt ({e})"))?;
                if out.len() as u64 > MAX_BLOCK_BYTES {
                    return Err(format!(
                        "block inflates to more than {MAX_BLOCK_BYTES} bytes; \
                         rewrite the file with smaller blocks"
                    ));
                }
                Ok(out)
            }
        }
    }
}

/// Appends `n` as an Avro long (zig-zag varint).
pub(super) fn put_long(buf: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7F {
        buf.push((z & 0x7F) as u8 | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Appends `bytes` as Avro bytes: the length as a long, then the bytes.
pub(super) fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_long(buf, bytes.len() as i64);
    buf.extend_from_slice(bytes);
}

/// Decodes the zig-zag mapping of an Avro long.
pub(super) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}
