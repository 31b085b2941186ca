//! musicfs-ipc: everything that crosses a process boundary in MusicFS.
//!
//! It owns the tarpc service traits ([`services`]), every type and error sent over a socket
//! ([`types`], [`error`]), the MessagePack codec ([`codec`]), the self-reconnecting client
//! ([`client`]) and the small plumbing every worker shares: taking its listening socket the way
//! systemd hands it over ([`listen`]), the state-dir layout ([`layout`]), logging ([`logging`]),
//! the allocator settings of the processes that move track bytes ([`memory`]) and the sandbox
//! each process enters before it serves ([`sandbox`]).
//! It never depends on a process crate.

pub mod blocking;
pub mod client;
pub mod codec;
pub mod config;
pub mod error;
pub mod layout;
pub mod listen;
pub mod logging;
pub mod memory;
pub mod origin;
pub mod peer;
pub mod s3_role;
pub mod s3_target;
pub mod s3_workload;
pub mod sandbox;
pub mod server;
pub mod services;
pub mod sftp_target;
pub mod size;
pub mod ssh_config;
pub mod ssh_match_local;
pub mod types;

pub use error::{FetchError, IndexError, WorkerError};
pub use services::{
    Fetch, FetchAdmin, FetchAdminClient, FetchClient, Index, IndexClient, Worker, WorkerClient,
};
pub use types::*;

/// Version of the wire protocol; both ends compare it in the handshake and refuse to talk on a
/// mismatch instead of misreading each other.
pub const PROTOCOL_VERSION: u32 = 4;

#[doc(hidden)]
pub mod __reexport {
    pub use futures;
    pub use tarpc;
}
