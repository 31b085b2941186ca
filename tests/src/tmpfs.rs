//! A tmpfs mounted by a test (they run as root): a small disk to fill, or a removable one to
//! unmount and mount again.

use std::path::{Path, PathBuf};

/// A tmpfs of `bytes`, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, bytes: u64) -> Tmpfs {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(at).unwrap();
        let size = format!("size={bytes}");
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(size.as_str()),
        )
        .expect("mount a tmpfs (the end-to-end tests run as root)");
        Tmpfs(at.to_owned())
    }

    /// Fills the filesystem until `leave` bytes are free, or as near as it lets a file of its
    /// own grow (asking for all of it fails).
    pub fn fill(&self, leave: u64) -> PathBuf {
        let free = nix::sys::statvfs::statvfs(&self.0).unwrap();
        let free = free.blocks_available() as u64 * free.fragment_size() as u64;
        let filler = self.0.join("filler");
        let file = std::fs::File::create(&filler).unwrap();
        let mut len = free.saturating_sub(leave) as i64;
        while let Err(e) = nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, len)
        {
            assert!(e == nix::errno::Errno::ENOSPC && len > 0, "fill: {e}");
            len -= 4096;
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Tmpfs {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Unmounts it now (as pulling a disk out does, lazily if a file on it is open).
    pub fn unmount(self) {}

    /// Unmounts it as `umount` does: `EBUSY` while a file on it is open.
    pub fn try_unmount(&self) -> nix::Result<()> {
        nix::mount::umount2(&self.0, nix::mount::MntFlags::empty())
    }
}
