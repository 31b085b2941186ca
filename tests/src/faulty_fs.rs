//! A FUSE file system for tests of a local origin kept on a network mount (NFS, SMB) that
//! fails: it shows a real folder read-only, except that listing a folder, or looking up or
//! reading a file, named in its [`Faults`] fails with the errno given there (`EIO`, as a soft
//! NFS mount whose server stopped answering), or listing or reading it blocks ([`STALL`]).
//! Mounted in the test's own process; unmounted when dropped.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

/// Folders whose listing fails and files whose lookup and reads fail (relative to the shown
/// folder), with the errno; or [`STALL`].
pub type Faults = Arc<Mutex<HashMap<PathBuf, i32>>>;

/// A folder's listing or a file's reads block until its fault is taken away, as on an NFS mount (`hard`, the
/// default) whose server went away. (The file system answers one request at a time, so
/// everything else waits too, as it does there.)
pub const STALL: i32 = -1;

pub struct FaultyFs {
    _session: fuser::BackgroundSession,
}

impl FaultyFs {
    /// Shows `source` at `mountpoint`; listing a folder in `faults` fails.
    pub fn mount(source: &Path, mountpoint: &Path, faults: Faults) -> Self {
        let fs = Mirror {
            source: source.to_owned(),
            faults,
            inodes: Mutex::new(vec![PathBuf::new()]),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![MountOption::RO, MountOption::FSName("faulty".into())];
        let session = fuser::spawn_mount(fs, mountpoint, &config).expect("mount the faulty fs");
        Self { _session: session }
    }
}

/// The mirror; inode `n + 1` is the relative path `inodes[n]` (the root is inode 1).
struct Mirror {
    source: PathBuf,
    faults: Faults,
    inodes: Mutex<Vec<PathBuf>>,
}

const TTL: Duration = Duration::from_secs(0);

impl Mirror {
    /// The errno listing or reading `rel` fails with, if any; blocks while it is [`STALL`].
    fn fault(&self, rel: &Path) -> Option<i32> {
        loop {
            match self.faults.lock().unwrap().get(rel).copied() {
                Some(STALL) => std::thread::sleep(Duration::from_millis(10)),
                fault => return fault,
            }
        }
    }

    fn rel(&self, ino: INodeNo) -> Option<PathBuf> {
        let inodes = self.inodes.lock().unwrap();
        inodes.get(ino.0.checked_sub(1)? as usize).cloned()
    }

    fn ino(&self, rel: &Path) -> INodeNo {
        let mut inodes = self.inodes.lock().unwrap();
        let n = match inodes.iter().position(|p| p == rel) {
            Some(n) => n,
            None => {
                inodes.push(rel.to_owned());
                inodes.len() - 1
            }
        };
        INodeNo(n as u64 + 1)
    }

    fn attr(&self, rel: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::metadata(self.source.join(rel)).map_err(errno)?;
        let mtime = UNIX_EPOCH + Duration::new(meta.mtime() as u64, meta.mtime_nsec() as u32);
        let (kind, perm) = match meta.is_dir() {
            true => (FileType::Directory, 0o555),
            false => (FileType::RegularFile, 0o444),
        };
        Ok(FileAttr {
            ino: self.ino(rel),
            size: meta.len(),
            blocks: meta.len().div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(nix::errno::Errno::EIO as i32))
}

impl Filesystem for Mirror {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.rel(parent) else {
            return reply.error(Errno::ENOENT);
        };
        let rel = dir.join(name);
        match self.attr(&rel) {
            Ok(attr) if attr.kind == FileType::RegularFile => {
                match self.faults.lock().unwrap().get(&rel) {
                    Some(&code) if code != STALL => reply.error(Errno::from_i32(code)),
                    _ => reply.entry(&TTL, &attr, Generation(0)),
                }
            }
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self
            .rel(ino)
            .ok_or(Errno::ENOENT)
            .and_then(|r| self.attr(&r))
        {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(rel) = self.rel(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.fault(&rel) {
            Some(code) => reply.error(Errno::from_i32(code)),
            None => reply.opened(FileHandle(0), FopenFlags::empty()),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(rel) = self.rel(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let entries = match std::fs::read_dir(self.source.join(&rel)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        let mut names: Vec<(std::ffi::OsString, bool)> = entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))
            .collect();
        names.sort();
        for (i, (name, dir)) in names.into_iter().enumerate().skip(offset as usize) {
            let kind = match dir {
                true => FileType::Directory,
                false => FileType::RegularFile,
            };
            if reply.add(self.ino(&rel.join(&name)), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.rel(ino) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(rel) = self.rel(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(code) = self.fault(&rel) {
            return reply.error(Errno::from_i32(code));
        }
        let mut buf = vec![0; size as usize];
        let read =
            std::fs::File::open(self.source.join(rel)).and_then(|f| f.read_at(&mut buf, offset));
        match read {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(e)),
        }
    }
}
