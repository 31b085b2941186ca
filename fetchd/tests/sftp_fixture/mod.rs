//! The folder the SFTP origin tests serve, and an origin for it on the test's sshd.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use musicfs_fetchd::origin::Found;
use musicfs_fetchd::sftp::SftpOrigin;
use musicfs_ipc::origin::OriginConfig;
use musicfs_tests::corpus::corpus_dir;
use musicfs_tests::noise::noise;
use musicfs_tests::sshd::Sshd;

/// Corpus files copied into the served folder, by the path they get there.
pub const FILES: &[(&str, &str)] = &[
    ("top.mp3", "audioscan/mp3/no-tags-no-xing-vbr.mp3"),
    (
        "Artist/Album/01 Large.flac",
        "audioscan/flac/picture-large.flac",
    ),
    ("Artist/Album/02 Noise.flac", "beets/whitenoise.flac"),
    (
        "Artist/Other/deep/tron.opus",
        "audioscan/opus/tron.6ch.tinypkts.opus",
    ),
    ("Artist/Other/pages.ogg", "audioscan/ogg/large-pagesize.ogg"),
];

/// A served folder: corpus files in nested dirs, a big file (pipelined reads), files that are
/// not audio, a symlinked directory and a symlink loop.
pub fn library() -> tempfile::TempDir {
    library_in(&std::env::temp_dir())
}

/// [`library`] in a new folder in `parent`.
pub fn library_in(parent: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(parent).unwrap();
    for (to, from) in FILES {
        let to = dir.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(corpus_dir().join(from), &to).unwrap();
    }
    std::fs::write(dir.path().join("big.wav"), noise(5_000_000, 7)).unwrap();
    std::fs::write(dir.path().join("Artist/Album/cover.jpg"), b"not audio").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not audio").unwrap();
    std::os::unix::fs::symlink("Artist/Other", dir.path().join("linked")).unwrap();
    std::os::unix::fs::symlink("../..", dir.path().join("Artist/Other/loop")).unwrap();
    dir
}

/// What a walk must find: every audio file, with the link's files under its name too.
pub fn expected(root: &Path) -> Vec<Found> {
    let mut paths: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
    paths.push("big.wav".into());
    paths.push("linked/deep/tron.opus".into());
    paths.push("linked/pages.ogg".into());
    let mut found: Vec<Found> = paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(root.join(&path)).unwrap();
            Found {
                path,
                size: meta.len(),
                // SFTP (v3) carries whole seconds.
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000,
            }
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

pub fn config(sshd: &Sshd, root: &Path) -> OriginConfig {
    let mut config = OriginConfig::from_url(sshd.url(root));
    config.identity_file = Some(sshd.identity_file());
    config.known_hosts = Some(sshd.known_hosts());
    config.timeout_seconds = Some(2);
    config
}

pub fn origin(config: &OriginConfig) -> io::Result<SftpOrigin> {
    SftpOrigin::new(config, &config.parsed().unwrap())
}

/// Reads `[offset, offset + len)` of an origin file, checking it against the local bytes.
pub fn check_read(
    file: &dyn musicfs_fetchd::origin::RangeRead,
    local: &[u8],
    offset: u64,
    len: usize,
) {
    let mut buf = vec![0xAA; len];
    let n = file.read_at(offset, &mut buf).unwrap();
    let start = (offset as usize).min(local.len());
    let want = &local[start..(start + len).min(local.len())];
    assert_eq!(n, want.len(), "length read at {offset}+{len}");
    assert!(buf[..n] == *want, "bytes read at {offset}+{len} differ");
}
