//! The one place where errors become errno values. Every match is exhaustive, so a new error
//! variant does not compile until someone decides what the kernel should see for it.

use libc::c_int;
use musicfs_ipc::{FetchError, IndexError};

use crate::backend::BackendError;
use crate::core::FsError;

/// The errno a failed filesystem operation returns to the caller.
pub trait ToErrno {
    fn errno(&self) -> c_int;
}

impl ToErrno for FetchError {
    fn errno(&self) -> c_int {
        match self {
            FetchError::NotFound | FetchError::NoSuchPath(_) | FetchError::NoSuchOrigin(_) => {
                libc::ENOENT
            }
            FetchError::NotADirectory => libc::ENOTDIR,
            FetchError::IsADirectory => libc::EISDIR,
            FetchError::NotASymlink => libc::EINVAL,
            FetchError::NoAttribute => libc::ENODATA,
            FetchError::Stale => libc::ESTALE,
            FetchError::OriginUnavailable(_)
            | FetchError::OriginChanged(_)
            | FetchError::Cache(_)
            | FetchError::Catalog(_) => libc::EIO,
        }
    }
}

impl ToErrno for IndexError {
    fn errno(&self) -> c_int {
        match self {
            // A query that does not parse names nothing.
            IndexError::BadQuery(_) | IndexError::NoSuchCollection(_) => libc::ENOENT,
            // The index is being built: try again shortly.
            IndexError::NotReady(_) => libc::EAGAIN,
            IndexError::BuiltinCollection(_) => libc::EPERM,
            IndexError::Index(_) => libc::EIO,
        }
    }
}

impl ToErrno for BackendError {
    fn errno(&self) -> c_int {
        match self {
            BackendError::Fetch(err) => err.errno(),
            BackendError::Unavailable(_) | BackendError::Protocol(_) => libc::EIO,
            BackendError::Index(err) => err.errno(),
        }
    }
}

impl ToErrno for FsError {
    fn errno(&self) -> c_int {
        match self {
            FsError::Backend(err) => err.errno(),
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle => libc::EBADF,
            FsError::BufferTooSmall => libc::ERANGE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_errors_map_to_their_errno() {
        let cases = [
            (FetchError::NotFound, libc::ENOENT),
            (FetchError::NoSuchPath("A/B".into()), libc::ENOENT),
            (FetchError::NoSuchOrigin("s3://x".into()), libc::ENOENT),
            (FetchError::NotADirectory, libc::ENOTDIR),
            (FetchError::IsADirectory, libc::EISDIR),
            (FetchError::NotASymlink, libc::EINVAL),
            (FetchError::NoAttribute, libc::ENODATA),
            (FetchError::Stale, libc::ESTALE),
            (FetchError::OriginUnavailable("sftp".into()), libc::EIO),
            (FetchError::OriginChanged("size".into()), libc::EIO),
            (FetchError::Cache("disk".into()), libc::EIO),
            (FetchError::Catalog("lmdb".into()), libc::EIO),
        ];
        for (err, errno) in cases {
            assert_eq!(err.errno(), errno, "{err:?}");
            assert_eq!(FsError::from(err).errno(), errno);
        }
    }

    #[test]
    fn an_unreachable_or_confused_fetchd_is_eio() {
        let unavailable = FsError::from(BackendError::Unavailable("timeout".into()));
        let protocol = FsError::from(BackendError::Protocol("version".into()));
        assert_eq!(unavailable.errno(), libc::EIO);
        assert_eq!(protocol.errno(), libc::EIO);
    }

    #[test]
    fn local_errors() {
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
        assert_eq!(FsError::BadHandle.errno(), libc::EBADF);
        assert_eq!(FsError::BufferTooSmall.errno(), libc::ERANGE);
    }
}
