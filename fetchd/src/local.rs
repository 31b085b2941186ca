//! Local origins: folders of audio files, read with positioned reads.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::origin::{is_audio, Found, Listing, Origin, RangeRead};

#[derive(Debug)]
pub struct LocalOrigin {
    name: String,
    root: PathBuf,
}

impl LocalOrigin {
    pub fn new(root: &Path) -> io::Result<Self> {
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
        })
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

impl Origin for LocalOrigin {
    /// The origin's name in the catalog and in status: its absolute path.
    fn name(&self) -> &str {
        &self.name
    }

    /// Every audio file below the root (following symlinks, loops skipped), and the entries
    /// that could not be listed or named, with the reason.
    fn walk(&self) -> io::Result<Listing> {
        // A root that has gone (an unmounted disk) is an unreachable origin, not an empty one.
        std::fs::read_dir(&self.root)?;
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
        Ok((found, failed))
    }

    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let meta = std::fs::metadata(self.root.join(rel))?;
        Ok((meta.len(), mtime_ns(&meta)))
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let file = File::open(self.root.join(rel))?;
        let len = file.metadata()?.len();
        Ok(Box::new(LocalFile { file, len }))
    }

    fn probe(&self) -> io::Result<()> {
        std::fs::read_dir(&self.root).map(drop)
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

struct LocalFile {
    file: File,
    len: u64,
}

impl RangeRead for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}
