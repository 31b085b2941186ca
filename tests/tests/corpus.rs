//! The shared corpus of real audio files, mounted through the real binaries on a real FUSE
//! mount: every usable file appears once where its tags say, reads back byte-identical, and
//! real players and tools read it through the mount as they read the original.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use musicfs_tests::corpus::{corpus_dir, read_manifest, Row, CORE_FORMATS};
use musicfs_tests::mount::Mount;
use musicfs_tests::sha256_file;

fn files_below(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk the mount"))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// Tag text as it must appear in a file name (the scanner's rules, restated independently).
fn as_name(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '\0')
        .map(|c| match c {
            '/' => '∕',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim().to_owned();
    match trimmed.starts_with('.') {
        true => format!("_{trimmed}"),
        false => trimmed,
    }
}

/// The first of a tag's values, and whether the manifest cut it (`…[+N chars]`): a cut value
/// is only known as a prefix.
fn first_value(value: &str) -> Option<(&str, bool)> {
    let v = value.split(" || ").next()?.trim();
    match v.split_once("…[+") {
        Some((prefix, _)) => Some((prefix, true)),
        None => (!v.is_empty()).then_some((v, false)),
    }
}

fn is_shown_category(row: &Row) -> bool {
    CORE_FORMATS.contains(&row.get("format"))
        && matches!(row.get("category"), "tagged" | "untagged")
}

/// The tags one independent reader saw: mutagen (`artist`, ...) or ffprobe (`ff_artist`, ...).
struct Seen<'a> {
    artist: &'a str,
    album: &'a str,
    title: &'a str,
    track: &'a str,
}

fn readers(row: &Row) -> [Seen<'_>; 2] {
    [
        Seen {
            artist: row.get("artist"),
            album: row.get("album"),
            title: row.get("title"),
            track: row.get("track"),
        },
        Seen {
            artist: row.get("ff_artist"),
            album: row.get("ff_album"),
            title: row.get("ff_title"),
            track: row.get("ff_track"),
        },
    ]
}

/// Checks where a file sits against one reader's view of its tags; returns what is wrong.
/// Only what the reader saw is checked (the scanner may read tag blocks a reader ignores).
/// Long names are cut at NAME_MAX, so a long title only has to match as far as the name goes.
fn placement_errors(seen: &Seen, rel: &str) -> Vec<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut errors = Vec::new();
    let [artist_dir, album_dir, file] = parts[..] else {
        return vec![format!("{rel}: expected Artist/Album/File")];
    };
    if first_value(seen.artist).is_some() && artist_dir == "Unknown Artist" {
        errors.push(format!(
            "{rel}: tagged artist {:?} but shown under Unknown Artist",
            seen.artist
        ));
    }
    if let Some((album, _)) = first_value(seen.album) {
        let album = as_name(album);
        let cut = album_dir.len() > 200 && album.starts_with(album_dir);
        if !(album_dir.starts_with(&album) || cut) {
            errors.push(format!("{rel}: album dir should start with {album:?}"));
        }
    }
    if let Some((title, _)) = first_value(seen.title) {
        let title = as_name(title);
        let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
        let shown_title = stem.split_once(' ').map_or(stem, |(_, t)| t);
        let cut = file.len() > 200 && title.starts_with(shown_title.trim_end());
        if !file.contains(&title) && !cut {
            errors.push(format!(
                "{rel}: file name should contain the title {title:?}"
            ));
        }
    }
    let track =
        first_value(seen.track).and_then(|(t, _)| t.split('/').next()?.trim().parse::<u32>().ok());
    if let Some(n) = track.filter(|n| *n > 0) {
        if !file.contains(&format!("{n:02} ")) {
            errors.push(format!("{rel}: file name should carry track number {n:02}"));
        }
    }
    errors
}

/// A file is where its tags say if it matches what either independent reader saw.
fn misplaced(row: &Row, rel: &str) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for seen in readers(row) {
        let errors = placement_errors(&seen, rel);
        if errors.is_empty() {
            return None;
        }
        all.extend(errors);
    }
    Some(all)
}

/// The `user.musicfs.has_cover` attribute of a file in the mount.
fn has_cover(path: &Path) -> String {
    let name = c"user.musicfs.has_cover";
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut value = [0u8; 8];
    // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert!(n >= 0, "getxattr: {}", std::io::Error::last_os_error());
    String::from_utf8_lossy(&value[..n as usize]).into_owned()
}

#[test]
fn every_usable_file_appears_once_where_its_tags_say_and_reads_back_identical() {
    let corpus = corpus_dir();
    let rows = read_manifest(&corpus.join("MANIFEST.tsv"));
    let mount = Mount::start(&[&corpus]);
    mount.status(true);

    let mut by_hash: HashMap<String, Vec<String>> = HashMap::new();
    for file in files_below(&mount.mountpoint) {
        let rel = file
            .strip_prefix(&mount.mountpoint)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        by_hash
            .entry(sha256_file(&file).expect("read through the mount"))
            .or_default()
            .push(rel);
    }
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *copies.entry(row.get("sha256")).or_default() += 1;
    }
    let mut errors = Vec::new();
    let mut checked = 0;
    for row in rows.iter().filter(|r| is_shown_category(r)) {
        checked += 1;
        let found = by_hash.get(row.get("sha256")).cloned().unwrap_or_default();
        let same_content = copies[row.get("sha256")];
        if found.is_empty() {
            errors.push(format!(
                "{} ({}) is missing from the mount",
                row.get("path"),
                row.get("format")
            ));
            continue;
        }
        if found.len() > same_content {
            errors.push(format!(
                "{} appears {} times: {found:?}",
                row.get("path"),
                found.len()
            ));
        }
        let placements: Vec<Option<Vec<String>>> =
            found.iter().map(|rel| misplaced(row, rel)).collect();
        if placements.iter().all(Option::is_some) {
            errors.extend(placements.into_iter().flatten().flatten());
        }
        // A cover, where both readers agree whether there is one (the scan notes it without
        // reading it).
        let cover = |seen: &str| {
            seen.starts_with("yes")
                .then_some("1")
                .or((seen == "no").then_some("0"))
        };
        if let (Some(a), Some(b)) = (cover(row.get("has_cover")), cover(row.get("ff_cover"))) {
            let shown = has_cover(&mount.mountpoint.join(&found[0]));
            if a == b && shown != a {
                errors.push(format!(
                    "{}: has_cover {shown}, both readers say {a}",
                    row.get("path")
                ));
            }
        }
    }
    assert!(
        checked > 250,
        "manifest should list over 250 usable core-format files, saw {checked}"
    );
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn malformed_and_suspect_files_crash_nothing_and_are_reported() {
    let corpus = corpus_dir();
    let rows = read_manifest(&corpus.join("MANIFEST.tsv"));
    let mount = Mount::start(&[&corpus]);
    let before = mount.status(false);
    let status = mount.status(true);
    // No worker died while scanning the hostile files.
    for (a, b) in before["workers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(status["workers"].as_array().unwrap())
    {
        assert_eq!(
            a["pid"], b["pid"],
            "worker {} restarted during the scan",
            a["name"]
        );
        assert_eq!(
            b["healthy"], true,
            "worker {} unhealthy: {}",
            b["name"], b["detail"]
        );
    }
    let listed: HashMap<String, (String, bool)> = status["catalog"]["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["path"].as_str().unwrap().to_owned(),
                (
                    u["reason"].as_str().unwrap().to_owned(),
                    u["shown"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    let shown: std::collections::HashSet<String> = files_below(&mount.mountpoint)
        .iter()
        .map(|f| sha256_file(f).unwrap())
        .collect();
    let mut errors = Vec::new();
    for row in rows.iter().filter(|r| r.get("category") == "malformed") {
        let path = row.get("path");
        match listed.get(path) {
            Some((reason, _)) if !reason.is_empty() => {}
            _ if shown.contains(row.get("sha256")) => {
                // Parsed cleanly by the tag library: shown like any other file.
            }
            _ => errors.push(format!("malformed {path} is neither reported nor shown")),
        }
    }
    for (path, (reason, is_shown)) in &listed {
        assert!(!reason.is_empty(), "{path} listed without a reason");
        let row = rows
            .iter()
            .find(|r| r.get("path") == path)
            .expect("listed file is in the corpus");
        if *is_shown {
            assert!(
                shown.contains(row.get("sha256")),
                "{path} is reported as shown but is not in the mount"
            );
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        listed.len() >= 20,
        "expected the corpus's unsupported and broken files to be listed, got {}",
        listed.len()
    );
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:format_tags",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed (apt-get install ffmpeg)");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn ffprobe_reports_the_same_tags_and_duration_through_the_mount() {
    let corpus = corpus_dir();
    let rows = read_manifest(&corpus.join("MANIFEST.tsv"));
    let mount = Mount::start(&[&corpus]);
    mount.status(true);
    let mut by_hash: HashMap<String, PathBuf> = HashMap::new();
    for file in files_below(&mount.mountpoint) {
        by_hash.insert(sha256_file(&file).unwrap(), file);
    }
    let mut compared = 0;
    let mut errors = Vec::new();
    for row in rows
        .iter()
        .filter(|r| is_shown_category(r) && r.get("category") == "tagged")
    {
        let Some(through_mount) = by_hash.get(row.get("sha256")) else {
            continue;
        };
        let original = ffprobe(&corpus.join(row.get("path")));
        let mounted = ffprobe(through_mount);
        compared += 1;
        if original != mounted {
            errors.push(format!(
                "{}: original {original} vs mount {mounted}",
                row.get("path")
            ));
        }
    }
    assert!(compared > 150, "compared only {compared} files");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn mpv_plays_a_file_through_the_mount_to_its_end() {
    let corpus = corpus_dir();
    let mount = Mount::start(&[&corpus]);
    mount.status(true);
    let rows = read_manifest(&corpus.join("MANIFEST.tsv"));
    let row = rows
        .iter()
        .find(|r| r.get("path") == "audioscan/flac/picture.flac")
        .expect("corpus has audioscan/flac/picture.flac");
    let target = files_below(&mount.mountpoint)
        .into_iter()
        .find(|f| sha256_file(f).unwrap() == row.get("sha256"))
        .expect("the file is in the mount");
    let out = Command::new("mpv")
        .args([
            "--no-config",
            "--ao=null",
            "--vo=null",
            "--msg-level=all=info",
        ])
        .arg(&target)
        .output()
        .expect("mpv is installed (apt-get install mpv)");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mpv failed: {log}");
    assert!(
        log.contains("Exiting... (End of file)"),
        "mpv did not play to the end: {log}"
    );
}
