//! The thin fuser adapter: converts kernel requests into [`FsCore`] calls and the answers back
//! into replies. No filesystem logic lives here.
//!
//! What the kernel is told:
//! - Entries, attributes and directory listings stay cached (see [`TTL`]) until fetchd's
//!   namespace changes; then [`crate::invalidate`] drops them, within a second.
//! - Directories are `0o555`, files `0o444`, symlinks `0o777`, all owned by the user running
//!   mountd; `st_blksize` is 1 MiB so tools read in big blocks.
//! - Opened files may keep their page cache (`FOPEN_KEEP_CACHE`): bytes are immutable per track
//!   version, and the core withholds the flag when the version changed since the last open.
//! - Tracks on remote origins are opened with direct I/O (`FOPEN_DIRECT_IO`) until they are
//!   whole in the cache: the kernel's readahead would fetch megabytes behind a tag reader that
//!   takes in one cover (fetchd's own read-ahead serves players instead); shared mappings of
//!   them stay allowed (`FUSE_DIRECT_IO_ALLOW_MMAP`). Once whole, a track reads as a local one.
//! - Requests may carry up to [`MAX_IO`] bytes (sequential reads reach that size once `run` has
//!   raised the mount's readahead); readdirplus and parallel lookups are asked for.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use musicfs_ipc::{Attr, NodeKind};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::backend::Backend;
use crate::core::{DirPage, FsCore, FsError, WriteOp, Xattr};
use crate::errno::ToErrno;

/// How long the kernel may cache entries and attributes. Long, because the tree changes only
/// when fetchd's namespace does, and then [`crate::invalidate`] drops the kernel's caches.
pub const TTL: Duration = Duration::from_secs(3600);
/// Search results (`/.search`, `/.collections`) change with the index, not the tree: the kernel
/// keeps them only briefly.
pub const VIRTUAL_TTL: Duration = crate::views::FRESH_FOR;

fn ttl(ino: u64) -> &'static Duration {
    match crate::views::is_virtual(ino) {
        true => &VIRTUAL_TTL,
        false => &TTL,
    }
}
/// Largest read the kernel is asked to send in one request, and the block size `stat` reports.
pub const MAX_IO: u32 = 1 << 20;
/// Inode numbers are never reused for another node, so the generation is always 0.
const GENERATION: Generation = Generation(0);
/// Block size `statfs` reports.
const STATFS_BLOCK: u32 = 4096;
const NAME_MAX: u32 = 255;

pub struct FuseAdapter<B> {
    core: Arc<FsCore<B>>,
    uid: u32,
    gid: u32,
    /// The kernel agreed to skip opendir/releasedir (`FUSE_NO_OPENDIR_SUPPORT`).
    no_opendir: bool,
    /// Signalled when the session ends (unmounted, by us or from outside).
    ended: Option<oneshot::Sender<()>>,
}

impl<B: Backend> FuseAdapter<B> {
    /// Files appear owned by the user running mountd; `ended` fires when the session ends.
    pub fn new(core: Arc<FsCore<B>>, ended: oneshot::Sender<()>) -> Self {
        Self {
            core,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            ended: Some(ended),
            no_opendir: false,
        }
    }

    /// A page of a listing: through the handle from `opendir`, or (handle 0) without one.
    fn listing(&self, ino: INodeNo, fh: FileHandle, offset: u64) -> Result<DirPage, FsError> {
        match fh.0 {
            0 => self.core.readdir_unopened(ino.0, offset),
            fh => self.core.readdir(fh, offset),
        }
    }

    fn file_attr(&self, attr: &Attr) -> FileAttr {
        let (kind, perm, nlink) = match attr.kind {
            NodeKind::Dir => (FileType::Directory, 0o555, 2),
            NodeKind::File => (FileType::RegularFile, 0o444, 1),
            NodeKind::Symlink => (FileType::Symlink, 0o777, 1),
        };
        let mtime = system_time(attr.mtime_secs, attr.mtime_nanos);
        FileAttr {
            ino: INodeNo(attr.ino),
            size: attr.size,
            blocks: attr.size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: MAX_IO,
            flags: 0,
        }
    }

    fn refuse(&self, op: WriteOp) -> Errno {
        Errno::from_i32(self.core.refuse(op).errno())
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::File => FileType::RegularFile,
        NodeKind::Symlink => FileType::Symlink,
    }
}

/// The errno for a failed operation; failures that are not the caller's doing are logged.
fn errno(op: &'static str, err: &FsError) -> Errno {
    let code = err.errno();
    if code == libc::EIO {
        warn!(op, "{err}");
    } else {
        debug!(op, "{err}");
    }
    Errno::from_i32(code)
}

fn system_time(secs: i64, nanos: u32) -> SystemTime {
    let whole = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)
    } else {
        UNIX_EPOCH.checked_sub(whole)
    };
    time.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        .unwrap_or(UNIX_EPOCH)
}

fn reply_xattr(op: &'static str, result: Result<Xattr, FsError>, reply: ReplyXattr) {
    match result {
        Ok(Xattr::Size(size)) => reply.size(size),
        Ok(Xattr::Data(data)) => reply.data(&data),
        Err(err) => reply.error(errno(op, &err)),
    }
}

impl<B: Backend> Filesystem for FuseAdapter<B> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // The kernel caps readahead at what it offered (128 KiB by default); `run` raises it
        // afterwards through sysfs where it may.
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            debug!("kernel allows at most {max} bytes of readahead");
            let _ = config.set_max_readahead(max);
        }
        // max_write also sets max_pages, which bounds every request, reads included. (The
        // max_read mount option only lowers that bound, so it is not set.)
        let _ = config.set_max_write(MAX_IO);
        for wanted in [
            InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // Tracks opened with direct I/O may still be mapped shared (read-only here).
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ] {
            if let Err(missing) = config.add_capabilities(wanted) {
                debug!("kernel lacks {missing:?}");
            }
        }
        // Directories need no open/release round trip: listings are snapshots anyway, and
        // without opendir the kernel caches them (FOPEN_CACHE_DIR) by default.
        self.no_opendir = config
            .add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            .is_ok();
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(());
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _answering = self.core.answering(parent.0);
        match self.core.lookup(parent.0, name) {
            Ok(attr) => reply.entry(ttl(attr.ino), &self.file_attr(&attr), GENERATION),
            Err(err) => reply.error(errno("lookup", &err)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _answering = self.core.answering(ino.0);
        match self.core.getattr(ino.0) {
            Ok(attr) => reply.attr(ttl(attr.ino), &self.file_attr(&attr)),
            Err(err) => reply.error(errno("getattr", &err)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _answering = self.core.answering(ino.0);
        match self.core.readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(err) => reply.error(errno("readlink", &err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.open(ino.0, flags.0) {
            Ok(opened) => {
                let flags = if opened.direct {
                    FopenFlags::FOPEN_DIRECT_IO
                } else if opened.keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(opened.fh), flags);
            }
            Err(err) => reply.error(errno("open", &err)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.core.read(fh.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(err) => reply.error(errno("read", &err)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir {
            // ENOSYS once tells the kernel never to send opendir/releasedir again.
            reply.error(Errno::ENOSYS);
            return;
        }
        match self.core.opendir(ino.0) {
            // The kernel may keep listings too; invalidation drops them when the tree changes.
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(err) => reply.error(errno("opendir", &err)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _answering = self.core.answering(ino.0);
        match self.listing(ino, fh, offset) {
            Ok(page) => {
                for (next, entry) in page.iter() {
                    let kind = file_type(entry.attr.kind);
                    if reply.add(INodeNo(entry.attr.ino), next, kind, &entry.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(err) => reply.error(errno("readdir", &err)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _answering = self.core.answering(ino.0);
        let page = self
            .listing(ino, fh, offset)
            .and_then(|page| self.core.readdirplus(ino.0, page));
        match page {
            Ok(page) => {
                for (next, entry) in page.iter() {
                    let attr = self.file_attr(&entry.attr);
                    let ttl = ttl(attr.ino.0);
                    if reply.add(attr.ino, next, &entry.name, ttl, &attr, GENERATION) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(err) => reply.error(errno("readdirplus", &err)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.core.statfs() {
            Ok(stats) => {
                let blocks = stats.bytes.div_ceil(u64::from(STATFS_BLOCK));
                let block = STATFS_BLOCK;
                reply.statfs(blocks, 0, 0, stats.files, 0, block, NAME_MAX, block);
            }
            Err(err) => reply.error(errno("statfs", &err)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr("getxattr", self.core.getxattr(ino.0, name, size), reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr("listxattr", self.core.listxattr(ino.0, size), reply);
    }

    // Everything below would modify the filesystem: refused with EROFS.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(self.refuse(WriteOp::SetAttr));
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.refuse(WriteOp::MkNod));
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.refuse(WriteOp::MkDir));
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.refuse(WriteOp::Unlink));
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.refuse(WriteOp::RmDir));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(self.refuse(WriteOp::Symlink));
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(self.refuse(WriteOp::Rename));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(self.refuse(WriteOp::Link));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(self.refuse(WriteOp::Write));
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(self.refuse(WriteOp::Create));
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(self.refuse(WriteOp::SetXattr));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.refuse(WriteOp::RemoveXattr));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(self.refuse(WriteOp::Fallocate));
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(self.refuse(WriteOp::CopyFileRange));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_converts_before_and_after_the_epoch() {
        let after = system_time(1_700_000_000, 5);
        assert_eq!(
            after.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 5)
        );
        let before = system_time(-10, 500_000_000);
        assert_eq!(
            UNIX_EPOCH.duration_since(before).unwrap(),
            Duration::from_millis(9_500)
        );
    }
}
