//! What an origin is to fetchd ([`Origin`]: list, stat, open for positioned reads) and the
//! readers built on it. Every byte read from any origin goes through [`OriginFile`], which counts
//! it; tag scans read through a block cache ([`TagReader`]) so no byte is fetched twice.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::health::unreachable;

/// Extensions of files the scanner looks at; everything else in an origin is ignored.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "mp3", "mp2", "flac", "ogg", "oga", "opus", "spx", "m4a", "m4b", "mp4", "aac", "alac", "wav",
    "aif", "aiff", "aifc", "wv", "ape", "mpc", "wma", "asf", "dsf", "dff", "id3", "tta", "tak",
    "ofr", "ofs",
];

pub fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether `rel`, a name a remote listing gave, can be a relative path: `/`-separated, no
/// empty, `.` or `..` components, no NUL, no component longer than a file name may be.
pub fn check_relative(rel: &str) -> Result<(), &'static str> {
    if rel.is_empty() {
        return Err("the name is empty (it names the origin's root itself)");
    }
    for part in rel.split('/') {
        match part {
            "" => {
                return Err(
                    "the name has an empty path component (a leading, trailing or doubled '/')",
                )
            }
            "." | ".." => return Err("the name has a '.' or '..' path component"),
            _ if part.contains('\0') => return Err("the name contains a NUL character"),
            _ if part.len() > 255 => return Err("the name has a component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// Directories deeper than this below a remote origin's root are not walked: a loop the server
/// does not show as one (a symlink it resolves itself, as `rclone serve --copy-links` does, or
/// a bind mount) would otherwise be walked for ever, and one with branches grows exponentially
/// with depth. Libraries are a handful of folders deep.
pub const MAX_DEPTH: usize = 16;
/// Directories one walk of a remote origin lists at most.
pub const MAX_DIRS: usize = 200_000;
/// Why a directory past [`MAX_DEPTH`] or [`MAX_DIRS`] is not listed.
pub const TOO_DEEP: &str =
    "not listed: too deep, or too many directories (a loop the server does not show as one?)";

/// Reads from origins since start: all origins together, and bytes by origin name.
#[derive(Debug, Default)]
pub struct OriginStats {
    pub files_opened: AtomicU64,
    pub bytes_read: AtomicU64,
    per_origin: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl OriginStats {
    /// The byte counter of one origin (made on first use).
    fn counter(&self, origin: &str) -> Arc<AtomicU64> {
        let mut all = self.per_origin.lock().expect("origin stats lock poisoned");
        if let Some(counter) = all.get(origin) {
            return counter.clone();
        }
        let counter = Arc::new(AtomicU64::new(0));
        all.insert(origin.to_owned(), counter.clone());
        counter
    }

    /// Bytes read from each origin that was read from, by name.
    pub fn bytes_per_origin(&self) -> Vec<(String, u64)> {
        let all = self.per_origin.lock().expect("origin stats lock poisoned");
        let mut out: Vec<(String, u64)> = all
            .iter()
            .map(|(name, n)| (name.clone(), n.load(Ordering::Relaxed)))
            .collect();
        out.sort();
        out
    }
}

/// A file found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
}

/// What a walk found: every audio file, and the entries that could not be listed or named,
/// with the reason.
pub type Listing = (Vec<Found>, Vec<(String, String)>);

/// A place music lives: a local folder, an SFTP server, an S3 bucket. Every call is bounded by
/// the origin's timeout; none may block forever.
pub trait Origin: Send + Sync + std::fmt::Debug {
    /// The origin's name in the catalog and in status (its path or URL; never a secret).
    fn name(&self) -> &str;
    /// Every audio file below the origin's root. `Err` means the origin could not be listed
    /// at all (unreachable): the scanner then keeps everything it knew about it.
    fn walk(&self) -> io::Result<Listing>;
    /// Size and mtime of a file now.
    fn stat(&self, rel: &str) -> io::Result<(u64, i128)>;
    /// Opens a file for positioned reads.
    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>>;
    /// A cheap request that succeeds only if the origin answers now (health checks).
    fn probe(&self) -> io::Result<()>;
    /// The folder to watch with inotify, for origins on this machine.
    fn local_root(&self) -> Option<&Path> {
        None
    }
}

/// Positioned reads of one open origin file.
pub trait RangeRead: Send {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; fewer bytes only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// An open origin file whose reads are counted (in all and for its origin).
pub struct OriginFile {
    inner: Box<dyn RangeRead>,
    stats: Arc<OriginStats>,
    origin_bytes: Arc<AtomicU64>,
}

impl OriginFile {
    pub fn open(origin: &dyn Origin, rel: &str, stats: &Arc<OriginStats>) -> io::Result<Self> {
        let inner = origin.open(rel)?;
        stats.files_opened.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            inner,
            stats: stats.clone(),
            origin_bytes: stats.counter(origin.name()),
        })
    }

    pub fn len(&self) -> u64 {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `[offset, offset + len)` (short only at the end of the file).
    pub fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        let n = self.read_into(offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn read_into(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_at(offset, buf)?;
        self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        self.origin_bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// A block-cached view for the tag scanner.
    pub fn tags(&self) -> TagReader<'_> {
        TagReader {
            file: self,
            blocks: RefCell::new(HashMap::new()),
            failed: RefCell::new(None),
        }
    }

    /// The whole file, front to back (chunking a track).
    pub fn stream(self) -> Stream {
        Stream { file: self, pos: 0 }
    }
}

/// Granularity of origin reads made for the tag scanner.
const BLOCK: u64 = 16 * 1024;

/// An origin file read in [`BLOCK`]s, each fetched once, for every cursor made from it.
pub struct TagReader<'a> {
    file: &'a OriginFile,
    blocks: RefCell<HashMap<u64, Rc<[u8]>>>,
    /// A read failed as reads fail when the origin does not answer (see
    /// [`TagReader::failed`]).
    failed: RefCell<Option<io::Error>>,
}

impl TagReader<'_> {
    /// A new reader positioned at the start.
    pub fn cursor(&self) -> BlockCursor<'_> {
        BlockCursor { file: self, pos: 0 }
    }

    /// Reads the blocks covering the file's first `len` bytes that are not read yet (players
    /// read the head in small pieces, which the kernel's read-ahead turns into 32 KiB).
    pub fn read_head(&self, len: u64) -> io::Result<()> {
        let end = len.min(self.file.len());
        for index in 0..end.div_ceil(BLOCK) {
            self.block(index)?;
        }
        Ok(())
    }

    /// Reads the file's last 16 KiB too (where ID3v1 and APE tags live, and where players
    /// and tag readers probe), the blocks not read yet.
    pub fn read_tail(&self) -> io::Result<()> {
        let len = self.file.len();
        if len == 0 {
            return Ok(());
        }
        for index in len.saturating_sub(BLOCK) / BLOCK..=(len - 1) / BLOCK {
            self.block(index)?;
        }
        Ok(())
    }

    /// Takes the error of a read that failed as reads fail when the origin does not answer
    /// ([`unreachable`]: not the file gone, refused or malformed), if one did: what the tag
    /// library made of the file may then say nothing about the file.
    pub fn failed(&self) -> Option<io::Error> {
        self.failed.take()
    }

    /// Every block read so far, by offset, in order.
    pub fn blocks(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out: Vec<(u64, Vec<u8>)> = self
            .blocks
            .borrow()
            .iter()
            .map(|(index, bytes)| (index * BLOCK, bytes.to_vec()))
            .collect();
        out.sort_by_key(|(offset, _)| *offset);
        out
    }

    fn block(&self, index: u64) -> io::Result<Rc<[u8]>> {
        if let Some(block) = self.blocks.borrow().get(&index) {
            return Ok(block.clone());
        }
        let start = index * BLOCK;
        let len = BLOCK.min(self.file.len().saturating_sub(start)) as usize;
        let block: Rc<[u8]> = match self.file.read_range(start, len) {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                if unreachable(&e) {
                    *self.failed.borrow_mut() = Some(io::Error::new(e.kind(), e.to_string()));
                }
                return Err(e);
            }
        };
        self.blocks.borrow_mut().insert(index, block.clone());
        Ok(block)
    }
}

/// A `Read + Seek` view of a [`TagReader`].
pub struct BlockCursor<'a> {
    file: &'a TagReader<'a>,
    pos: u64,
}

impl Read for BlockCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.file.file.len() || buf.is_empty() {
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
            SeekFrom::End(d) => self.file.file.len().checked_add_signed(d),
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

/// Sequential reads over an [`OriginFile`].
pub struct Stream {
    file: OriginFile,
    pos: u64,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_into(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalOrigin;

    #[test]
    fn cursors_share_blocks_and_count_each_byte_once() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("a.mp3"), &data).unwrap();
        let stats = Arc::new(OriginStats::default());
        let origin = LocalOrigin::new(dir.path()).unwrap();
        let file = OriginFile::open(&origin, "a.mp3", &stats).unwrap();
        let tags = file.tags();
        for _ in 0..3 {
            let mut c = tags.cursor();
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

    #[test]
    fn a_stream_reads_the_whole_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.path().join("b.flac"), &data).unwrap();
        let stats = Arc::new(OriginStats::default());
        let origin = LocalOrigin::new(dir.path()).unwrap();
        let mut all = Vec::new();
        OriginFile::open(&origin, "b.flac", &stats)
            .unwrap()
            .stream()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, data);
        assert_eq!(stats.bytes_read.load(Ordering::Relaxed), data.len() as u64);
    }

    #[test]
    fn bytes_are_counted_per_origin_too() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(one.path().join("a.mp3"), vec![1u8; 1000]).unwrap();
        std::fs::write(two.path().join("b.mp3"), vec![2u8; 3000]).unwrap();
        let stats = Arc::new(OriginStats::default());
        let (o1, o2) = (
            LocalOrigin::new(one.path()).unwrap(),
            LocalOrigin::new(two.path()).unwrap(),
        );
        for _ in 0..2 {
            let file = OriginFile::open(&o1, "a.mp3", &stats).unwrap();
            file.read_range(0, 600).unwrap();
        }
        OriginFile::open(&o2, "b.mp3", &stats)
            .unwrap()
            .read_range(0, 5000)
            .unwrap();
        let mut expected = vec![(o1.name().to_owned(), 1200), (o2.name().to_owned(), 3000)];
        expected.sort();
        assert_eq!(stats.bytes_per_origin(), expected);
        assert_eq!(stats.bytes_read.load(Ordering::Relaxed), 4200);
    }
}
