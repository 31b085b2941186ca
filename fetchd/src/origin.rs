//! Local origins: folders of audio files. The only place fetchd opens origin files, so every
//! byte read from an origin is counted here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Extensions of files the scanner looks at; everything else in an origin is ignored.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "mp3", "mp2", "flac", "ogg", "oga", "opus", "spx", "m4a", "m4b", "mp4", "aac", "alac", "wav",
    "aif", "aiff", "aifc", "wv", "ape", "mpc", "wma", "asf", "dsf", "dff", "id3", "tta", "tak",
    "ofr", "ofs",
];

/// Reads from origins since start.
#[derive(Debug, Default)]
pub struct OriginStats {
    pub files_opened: AtomicU64,
    pub bytes_read: AtomicU64,
}

/// A file found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
}

#[derive(Debug)]
pub struct LocalOrigin {
    name: String,
    root: PathBuf,
    stats: Arc<OriginStats>,
}

impl LocalOrigin {
    pub fn new(root: &Path, stats: Arc<OriginStats>) -> io::Result<Self> {
        let root = root
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("origin {}: {e}", root.display())))?;
        if !root.is_dir() {
            return Err(io::Error::other(format!(
                "origin {} is not a directory",
                root.display()
            )));
        }
        Ok(Self {
            name: root.display().to_string(),
            root,
            stats,
        })
    }

    /// The origin's name in the catalog and in status: its absolute path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every audio file below the root (following symlinks, loops skipped), and the entries
    /// that could not be listed or named, with the reason.
    pub fn walk(&self) -> (Vec<Found>, Vec<(String, String)>) {
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for entry in walkdir::WalkDir::new(&self.root).follow_links(true) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e
                        .path()
                        .map(|p| self.relative(p))
                        .unwrap_or_else(|| self.name.clone());
                    failed.push((path, format!("cannot list: {e}")));
                    continue;
                }
            };
            if !entry.file_type().is_file() || !is_audio(entry.path()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let Some(rel) = rel.to_str() else {
                failed.push((
                    rel.to_string_lossy().into_owned(),
                    "file name is not valid UTF-8; rename it to be listed".into(),
                ));
                continue;
            };
            match entry.metadata() {
                Ok(meta) => found.push(Found {
                    path: rel.to_owned(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                }),
                Err(e) => failed.push((rel.to_owned(), format!("cannot stat: {e}"))),
            }
        }
        (found, failed)
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Opens a file for the tag scanner. Reads go through a block cache shared by every
    /// cursor made from it, so several parse attempts read each origin byte at most once.
    pub fn open(&self, rel: &str) -> io::Result<CachedFile> {
        let file = File::open(self.root.join(rel))?;
        let len = file.metadata()?.len();
        self.stats.files_opened.fetch_add(1, Ordering::Relaxed);
        Ok(CachedFile {
            file,
            len,
            blocks: RefCell::new(HashMap::new()),
            stats: self.stats.clone(),
        })
    }

    /// Opens a file to stream all of it (chunking a track); reads are counted.
    pub fn stream(&self, rel: &str) -> io::Result<CountingReader> {
        let file = File::open(self.root.join(rel))?;
        Ok(CountingReader {
            file,
            stats: self.stats.clone(),
        })
    }

    /// Size and mtime of a file now.
    pub fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let meta = std::fs::metadata(self.root.join(rel))?;
        Ok((meta.len(), mtime_ns(&meta)))
    }

    /// Bytes `[offset, offset + len)` of a file (short only at end of file).
    pub fn read_range(&self, rel: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let file = File::open(self.root.join(rel))?;
        read_counted(&file, offset, len, &self.stats)
    }
}

/// Bytes `[offset, offset + len)` of `file` (short only at its end), added to `stats`.
fn read_counted(file: &File, offset: u64, len: usize, stats: &OriginStats) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    stats.bytes_read.fetch_add(done as u64, Ordering::Relaxed);
    Ok(buf)
}

pub fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// A whole-file reader whose reads are added to the origin's byte counter.
pub struct CountingReader {
    file: File,
    stats: Arc<OriginStats>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Granularity of origin reads made for the tag scanner.
const BLOCK: u64 = 16 * 1024;

/// An origin file read in [`BLOCK`]s, each fetched once and counted in the origin's stats.
pub struct CachedFile {
    file: File,
    len: u64,
    blocks: RefCell<HashMap<u64, Rc<[u8]>>>,
    stats: Arc<OriginStats>,
}

impl CachedFile {
    /// A new reader positioned at the start.
    pub fn cursor(&self) -> BlockCursor<'_> {
        BlockCursor { file: self, pos: 0 }
    }

    fn block(&self, index: u64) -> io::Result<Rc<[u8]>> {
        if let Some(block) = self.blocks.borrow().get(&index) {
            return Ok(block.clone());
        }
        let start = index * BLOCK;
        let len = BLOCK.min(self.len.saturating_sub(start)) as usize;
        let block: Rc<[u8]> = read_counted(&self.file, start, len, &self.stats)?.into();
        self.blocks.borrow_mut().insert(index, block.clone());
        Ok(block)
    }
}

/// A `Read + Seek` view of a [`CachedFile`].
pub struct BlockCursor<'a> {
    file: &'a CachedFile,
    pos: u64,
}

impl Read for BlockCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.file.len || buf.is_empty() {
            return Ok(0);
        }
        let block = self.file.block(self.pos / BLOCK)?;
        let from = (self.pos % BLOCK) as usize;
        if from >= block.len() {
            return Ok(0);
        }
        let n = buf.len().min(block.len() - from);
        buf[..n].copy_from_slice(&block[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlockCursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.file.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_share_blocks_and_count_each_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("a.mp3"), &data).unwrap();
        let stats = Arc::new(OriginStats::default());
        let origin = LocalOrigin::new(dir.path(), stats.clone()).unwrap();
        let file = origin.open("a.mp3").unwrap();
        for _ in 0..3 {
            let mut c = file.cursor();
            let mut head = vec![0; 20_000];
            c.read_exact(&mut head).unwrap();
            assert_eq!(head, data[..20_000]);
            c.seek(SeekFrom::End(-10)).unwrap();
            let mut tail = Vec::new();
            c.read_to_end(&mut tail).unwrap();
            assert_eq!(tail, data[data.len() - 10..]);
        }
        // Two head blocks and one tail block, read once however many cursors asked.
        let read = stats.bytes_read.load(Ordering::Relaxed);
        assert_eq!(read, 2 * BLOCK + (data.len() as u64 % BLOCK));
        assert_eq!(stats.files_opened.load(Ordering::Relaxed), 1);
    }
}
