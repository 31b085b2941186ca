//! The shared corpus of real audio files (with its MANIFEST.tsv of tags as independent readers
//! see them) and synthetic libraries made by its `make-synthetic.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `MUSICFS_CORPUS`, else `../shared/corpus` next to the workspace.
pub fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("MUSICFS_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace().join("../shared/corpus"));
    assert!(
        dir.join("MANIFEST.tsv").exists(),
        "test corpus not found at {} (set MUSICFS_CORPUS)",
        dir.display()
    );
    dir
}

/// One row of MANIFEST.tsv, by column name.
#[derive(Debug, Clone)]
pub struct Row(HashMap<String, String>);

impl Row {
    pub fn get(&self, column: &str) -> &str {
        self.0.get(column).map(String::as_str).unwrap_or("")
    }
}

/// Undoes the manifest's escapes (`\t`, `\n`, `\\`, `\0`, `\xNN`).
fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).map_or('?', char::from));
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub fn read_manifest(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("manifest readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            Row(header
                .iter()
                .zip(line.split('\t'))
                .map(|(h, v)| (h.to_string(), unescape(v)))
                .collect())
        })
        .collect()
}

/// Formats the scanner must show (the core set), as named in MANIFEST.tsv.
pub const CORE_FORMATS: &[&str] = &[
    "mp3",
    "flac",
    "ogg-vorbis",
    "ogg-opus",
    "mp4-aac",
    "mp4-alac",
    "wav",
    "aiff",
    "wavpack",
    "ape",
];

/// A synthetic library of `n` tracks, generated once per target dir and reused (generation
/// takes ~11 ms per track). Concurrent tests wait for one another through a lock file.
pub fn synthetic_library(n: usize) -> PathBuf {
    let root = crate::workspace().join("target/test-libraries");
    std::fs::create_dir_all(&root).expect("create target/test-libraries");
    let dir = root.join(format!("synthetic-{n}"));
    let lock = std::fs::File::create(root.join(format!("synthetic-{n}.lock"))).expect("lock");
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .expect("lock synthetic library");
    if dir.join("MANIFEST.tsv").exists() {
        return dir;
    }
    let partial = root.join(format!("synthetic-{n}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let status = Command::new("bash")
        .arg(corpus_dir().join("make-synthetic.sh"))
        .arg(n.to_string())
        .arg(&partial)
        .status()
        .expect("run make-synthetic.sh");
    assert!(status.success(), "make-synthetic.sh {n} failed");
    std::fs::rename(&partial, &dir).expect("publish synthetic library");
    dir
}

/// A library of `count` FLAC tracks of `seconds` of pink noise each (noise does not compress, so
/// the tracks are big: about 0.15 MB per second), tagged `Noise/Long Noise (2024)/NN Noise NN`.
/// Generated once per target dir with ffmpeg and reused.
pub fn noise_library(count: usize, seconds: u32) -> PathBuf {
    let root = crate::workspace().join("target/test-libraries");
    std::fs::create_dir_all(&root).expect("create target/test-libraries");
    let dir = root.join(format!("noise-{count}x{seconds}s"));
    let lock =
        std::fs::File::create(root.join(format!("noise-{count}x{seconds}s.lock"))).expect("lock");
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .expect("lock noise library");
    if dir.join("done").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=count {
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "anoisesrc=d={seconds}:c=pink:a=0.2:r=44100:seed={i}"
            ))
            .args(["-ac", "2", "-metadata", "artist=Noise", "-metadata"])
            .arg("album=Long Noise")
            .args(["-metadata", "date=2024", "-metadata"])
            .arg(format!("title=Noise {i:02}"))
            .args(["-metadata", &format!("track={i}")])
            .arg(dir.join(format!("noise-{i:02}.flac")))
            .status()
            .expect("ffmpeg is installed (apt-get install ffmpeg)");
        assert!(status.success(), "ffmpeg failed making noise track {i}");
    }
    std::fs::write(dir.join("done"), b"").unwrap();
    dir
}

/// Where a noise track shows in the mount (default template).
pub fn noise_track_path(i: usize) -> String {
    format!("Noise/Long Noise (2024)/{i:02} Noise {i:02}.flac")
}

/// A small library of two real corpus FLACs, copied under `dir/lib` so a test may change it:
/// `a.flac` (Led Zeppelin, "Good Times Bad Times", with a picture) and `sub/b.flac` (The Prodigy).
pub fn two_flac_library(dir: &Path) -> PathBuf {
    let corpus = corpus_dir();
    let lib = dir.join("lib");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    for (from, to) in [
        ("audioscan/flac/picture.flac", "a.flac"),
        ("audioscan/flac/audio-data.flac", "sub/b.flac"),
    ] {
        std::fs::copy(corpus.join(from), lib.join(to)).unwrap();
    }
    lib
}
