//! Placeholder until the sftp origin lands (being written now).

use std::io;

use musicfs_ipc::origin::{OriginConfig, OriginUrl};

#[derive(Debug)]
pub struct SftpOrigin;

impl SftpOrigin {
    pub fn new(config: &OriginConfig, _url: &OriginUrl) -> io::Result<Self> {
        Err(io::Error::other(format!(
            "origin {}: not supported yet",
            config.url
        )))
    }
}

impl crate::origin::Origin for SftpOrigin {
    fn name(&self) -> &str {
        ""
    }
    fn walk(&self) -> io::Result<crate::origin::Listing> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn stat(&self, _rel: &str) -> io::Result<(u64, i128)> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn open(&self, _rel: &str) -> io::Result<Box<dyn crate::origin::RangeRead>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn probe(&self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
