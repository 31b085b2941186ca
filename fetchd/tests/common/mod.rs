//! Checks the remote-origin tests share.

use std::collections::BTreeMap;

use musicfs_fetchd::origin::{Found, Origin};

/// Walks `origin`, asserts it lists exactly `audio` (path → bytes) with nothing failed, and
/// returns what it found.
pub fn walk_lists_exactly(origin: &dyn Origin, audio: &BTreeMap<String, Vec<u8>>) -> Vec<Found> {
    let (found, failed) = origin.walk().expect("walk");
    assert!(failed.is_empty(), "{failed:?}");
    let listed: BTreeMap<String, u64> = found.iter().map(|f| (f.path.clone(), f.size)).collect();
    let expected: BTreeMap<String, u64> = audio
        .iter()
        .map(|(p, d)| (p.clone(), d.len() as u64))
        .collect();
    assert_eq!(listed, expected);
    found
}
