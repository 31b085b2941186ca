//! Typed errors that cross the wire. mountd maps [`FetchError`] to errno in exactly one place.

use serde::{Deserialize, Serialize};

/// What a fetchd call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FetchError {
    #[error("no such entry")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("not a symbolic link")]
    NotASymlink,
    #[error("no such attribute")]
    NoAttribute,
    #[error("the track changed since it was opened")]
    Stale,
    #[error("origin unavailable: {0}")]
    OriginUnavailable(String),
    #[error("origin data does not match the catalog: {0}")]
    OriginChanged(String),
    #[error("local cache failure: {0}")]
    Cache(String),
    #[error("catalog failure: {0}")]
    Catalog(String),
    /// A path given to an admin call (pin, prefetch) names nothing in the mount.
    #[error("no such path in the mount: {0}")]
    NoSuchPath(String),
    /// An origin named in an admin call (rescan) is not configured; says which are.
    #[error("no such origin: {0}")]
    NoSuchOrigin(String),
}

/// What an indexd call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum IndexError {
    /// The index is being (re)built; searches answer again once it is.
    #[error("the index is not ready: {0}")]
    NotReady(String),
    /// The query does not parse; the message says where and why.
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("no such collection: {0}")]
    NoSuchCollection(String),
    /// Built-in collections cannot be removed or replaced.
    #[error("collection {0} is built in")]
    BuiltinCollection(String),
    #[error("index failure: {0}")]
    Index(String),
}

/// Errors of the small worker services (indexd, plugind) that answer only health for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WorkerError {
    #[error("not ready: {0}")]
    NotReady(String),
}
