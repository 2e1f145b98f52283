//! Block files: opening one (header, footer, index), reading its chunks, and the writing
//! side's file handling (sections in order, then index and footer, fsync, rename).

use super::codec::{self, DecodeError};
use super::index::{
    header, BlockIndex, ColumnRef, Footer, SectionRef, FOOTER_LEN, HEADER_LEN, MAGIC,
};
use super::{
    BlockError, Column, Section, Values, FORMAT_VERSION, MAX_CHUNK_STRING_BYTES, MAX_CHUNK_VALUES,
};
use crate::model::FieldType;
use crate::storage::version::Version;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An opened block: its index in memory, its data on disk (read with `pread`, so one
/// `BlockFile` serves concurrent readers).
#[derive(Debug)]
pub struct BlockFile {
    path: PathBuf,
    file: File,
    index: BlockIndex,
    footer: Footer,
    file_len: u64,
    content_hash: u64,
}

impl BlockFile {
    /// Reads and checks the header, the footer and the index, not the column data: a block
    /// whose sections were damaged still opens, and reading those sections fails.
    pub fn open(path: &Path) -> Result<BlockFile, BlockError> {
        let io = |source| BlockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(BlockError::TooShort {
                path: path.to_path_buf(),
                len: file_len,
            });
        }
        let mut head = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        if head[..8] != MAGIC {
            return Err(BlockError::BadMagic {
                path: path.to_path_buf(),
                section: Section::Header,
            });
        }
        let found = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if found != FORMAT_VERSION {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
            });
        }
        let mut foot = [0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut foot, file_len - FOOTER_LEN)
            .map_err(io)?;
        let Some(footer) = Footer::decode(&foot) else {
            return Err(BlockError::BadMagic {
                path: path.to_path_buf(),
                section: Section::Footer,
            });
        };
        let index_end = footer.index_offset.checked_add(footer.index_len);
        if footer.index_offset < HEADER_LEN || index_end != Some(file_len - FOOTER_LEN) {
            return Err(BlockError::Corrupt {
                path: path.to_path_buf(),
                section: Section::Footer,
                reason: format!(
                    "an index of {} bytes at {} does not end where the footer starts ({})",
                    footer.index_len,
                    footer.index_offset,
                    file_len - FOOTER_LEN
                ),
            });
        }
        let bytes = read_index(&file, path, &footer)?;
        let corrupt = |reason: String| BlockError::Corrupt {
            path: path.to_path_buf(),
            section: Section::Index,
            reason,
        };
        let index = match postcard::take_from_bytes::<BlockIndex>(&bytes) {
            Ok((index, [])) => index,
            Ok((_, rest)) => return Err(corrupt(format!("{} bytes after it", rest.len()))),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        index.check(footer.index_offset).map_err(corrupt)?;
        let digest = Sha256::digest(&bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Ok(BlockFile {
            path: path.to_path_buf(),
            file,
            index,
            footer,
            file_len,
            content_hash: u64::from_le_bytes(first),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn index(&self) -> &BlockIndex {
        &self.index
    }

    /// A hash of the block's content: the first 8 bytes of the SHA-256 of its index, which
    /// holds every section's crc32 and place. Equal blocks (same columns, same versions)
    /// have equal hashes on every node, as encoding is deterministic.
    pub fn content_hash(&self) -> u64 {
        self.content_hash
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Raw bytes of the file at `offset` (to send the block to a peer as it is).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Reads one column chunk of this block's index (three `pread`s), checks its checksums
    /// and decodes it.
    pub fn read_column(&self, col: &ColumnRef) -> Result<Column, BlockError> {
        let times = self.read_times(col)?;
        let versions = self.read_versions(col)?;
        let section = Section::Values {
            offset: col.values.offset,
        };
        let n = self.count(col, section)?;
        let bytes = self.read_section(col.values, section)?;
        let decoded = match col.ty {
            FieldType::Float => codec::decode_numbers(&bytes, n).map(Values::Float),
            FieldType::Integer => codec::decode_numbers(&bytes, n).map(Values::Integer),
            FieldType::Unsigned => codec::decode_numbers(&bytes, n).map(Values::Unsigned),
            FieldType::Boolean => codec::decode_booleans(&bytes, n).map(Values::Boolean),
            FieldType::String => {
                codec::decode_strings(&bytes, n, MAX_CHUNK_STRING_BYTES).map(Values::String)
            }
        };
        let values = decoded.map_err(|e| self.decode_error(section, e))?;
        Ok(Column {
            times,
            versions,
            values,
        })
    }

    /// Reads only a chunk's times (for counts, time bounds, or to choose rows before
    /// reading values); checks that they are sorted, unique and within the chunk's range.
    pub fn read_times(&self, col: &ColumnRef) -> Result<Vec<i64>, BlockError> {
        let section = Section::Times {
            offset: col.times.offset,
        };
        let n = self.count(col, section)?;
        let bytes = self.read_section(col.times, section)?;
        let times =
            codec::decode_numbers::<i64>(&bytes, n).map_err(|e| self.decode_error(section, e))?;
        let sorted = times.windows(2).all(|p| p[0] < p[1]);
        if !sorted || times.first() != Some(&col.min_time) || times.last() != Some(&col.max_time) {
            return Err(self.decode_error(
                section,
                DecodeError(format!(
                    "times not sorted and unique within [{}, {}]",
                    col.min_time, col.max_time
                )),
            ));
        }
        Ok(times)
    }

    /// Reads only a chunk's versions.
    pub fn read_versions(&self, col: &ColumnRef) -> Result<Vec<Version>, BlockError> {
        let section = Section::Versions {
            offset: col.versions.offset,
        };
        let n = self.count(col, section)?;
        let bytes = self.read_section(col.versions, section)?;
        codec::decode_versions(&bytes, n).map_err(|e| self.decode_error(section, e))
    }

    /// Checks the checksum of every section and of the index again, reading the whole file
    /// (for a scrub in the background); decodes nothing.
    pub fn verify(&self) -> Result<(), BlockError> {
        read_index(&self.file, &self.path, &self.footer)?;
        let mut sections: Vec<(SectionRef, Section)> = Vec::new();
        for (_, _, c) in self.index.columns() {
            sections.push((
                c.times,
                Section::Times {
                    offset: c.times.offset,
                },
            ));
            sections.push((
                c.versions,
                Section::Versions {
                    offset: c.versions.offset,
                },
            ));
            sections.push((
                c.values,
                Section::Values {
                    offset: c.values.offset,
                },
            ));
        }
        sections.sort_unstable_by_key(|(s, _)| *s);
        sections.dedup_by_key(|(s, _)| *s);
        for (s, section) in sections {
            self.read_section(s, section)?;
        }
        Ok(())
    }

    /// A chunk's count, which bounds what decoding allocates. An index checks it at open;
    /// this is for a `ColumnRef` deserialized from elsewhere.
    fn count(&self, col: &ColumnRef, section: Section) -> Result<usize, BlockError> {
        if col.count == 0 || col.count > MAX_CHUNK_VALUES {
            return Err(BlockError::Corrupt {
                path: self.path.clone(),
                section,
                reason: format!("a chunk of {} values", col.count),
            });
        }
        Ok(col.count as usize)
    }

    /// One section's bytes, its checksum checked.
    fn read_section(&self, s: SectionRef, section: Section) -> Result<Vec<u8>, BlockError> {
        let end = s.offset.checked_add(u64::from(s.len));
        if s.offset < HEADER_LEN || end.is_none_or(|e| e > self.footer.index_offset) {
            return Err(BlockError::Corrupt {
                path: self.path.clone(),
                section,
                reason: format!(
                    "{} bytes at {} are not in this block's data",
                    s.len, s.offset
                ),
            });
        }
        let mut bytes = vec![0u8; s.len as usize];
        self.file
            .read_exact_at(&mut bytes, s.offset)
            .map_err(|source| BlockError::Io {
                path: self.path.clone(),
                source,
            })?;
        if crc32fast::hash(&bytes) != s.crc {
            return Err(BlockError::Checksum {
                path: self.path.clone(),
                section,
            });
        }
        Ok(bytes)
    }

    fn decode_error(&self, section: Section, e: DecodeError) -> BlockError {
        BlockError::Corrupt {
            path: self.path.clone(),
            section,
            reason: e.0,
        }
    }
}

/// The index's bytes, its checksum checked (the footer's bounds were checked at open).
fn read_index(file: &File, path: &Path, footer: &Footer) -> Result<Vec<u8>, BlockError> {
    let mut bytes = vec![0u8; footer.index_len as usize];
    file.read_exact_at(&mut bytes, footer.index_offset)
        .map_err(|source| BlockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if crc32fast::hash(&bytes) != footer.index_crc {
        return Err(BlockError::Checksum {
            path: path.to_path_buf(),
            section: Section::Index,
        });
    }
    Ok(bytes)
}

// === writing ===

/// A block being written to its temporary file: the header, then sections one after
/// another, then [`SectionWriter::finish`] adds the index and the footer.
#[derive(Debug)]
pub(super) struct SectionWriter {
    out: BufWriter<File>,
    offset: u64,
    path: PathBuf,
}

impl SectionWriter {
    pub(super) fn create(path: &Path) -> Result<SectionWriter, BlockError> {
        let file = File::create(path).map_err(|source| BlockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut w = SectionWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
            path: path.to_path_buf(),
        };
        w.write(&header())?;
        Ok(w)
    }

    /// Appends one section; returns where it is and its checksum.
    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<SectionRef, BlockError> {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return Err(self.io(io::Error::other("a section over 4 GiB")));
        };
        let s = SectionRef {
            offset: self.offset,
            len,
            crc: crc32fast::hash(bytes),
        };
        self.write(bytes)?;
        Ok(s)
    }

    /// Appends the index and the footer and syncs the file to disk.
    pub(super) fn finish(mut self, index: &[u8]) -> Result<(), BlockError> {
        let footer = Footer {
            index_offset: self.offset,
            index_len: index.len() as u64,
            index_crc: crc32fast::hash(index),
        };
        self.write(index)?;
        self.write(&footer.encode())?;
        let file = self.out.into_inner().map_err(|e| BlockError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| BlockError::Io {
            path: self.path,
            source,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), BlockError> {
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn io(&self, source: io::Error) -> BlockError {
        BlockError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Makes a synced temporary file the block: rename over `to`, then sync the directory so
/// the rename itself survives a crash.
pub(super) fn commit(tmp: &Path, to: &Path, dir: &Path) -> Result<(), BlockError> {
    std::fs::rename(tmp, to).map_err(|source| BlockError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BlockError::Io {
            path: dir.to_path_buf(),
            source,
        })
}
