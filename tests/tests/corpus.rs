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

fn first_value(value: &str) -> Option<&str> {
    let v = value.split(" || ").next()?.trim();
    (!v.is_empty() && !v.contains("…[+")).then_some(v)
}

fn is_shown_category(row: &Row) -> bool {
    CORE_FORMATS.contains(&row.get("format"))
        && matches!(row.get("category"), "tagged" | "untagged")
}

/// Checks where a file sits against its manifest tags; returns what is wrong.
fn placement_errors(row: &Row, rel: &str) -> Vec<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut errors = Vec::new();
    let [artist_dir, album_dir, file] = parts[..] else {
        return vec![format!("{rel}: expected Artist/Album/File")];
    };
    match first_value(row.get("artist")) {
        None => {}
        Some(_) if artist_dir == "Unknown Artist" => errors.push(format!(
            "{rel}: tagged artist {:?} but shown under Unknown Artist",
            row.get("artist")
        )),
        Some(_) => {}
    }
    let album = first_value(row.get("album")).map(as_name);
    let expected_album = album.clone().unwrap_or_else(|| "Unknown Album".into());
    if !album_dir.starts_with(&expected_album) {
        errors.push(format!(
            "{rel}: album dir should start with {expected_album:?}"
        ));
    }
    let title = first_value(row.get("title"))
        .map(as_name)
        .unwrap_or_else(|| {
            let name = Path::new(row.get("path"))
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            as_name(&name)
        });
    if !file.contains(&title) {
        errors.push(format!(
            "{rel}: file name should contain the title {title:?}"
        ));
    }
    if let Some(n) =
        first_value(row.get("track")).and_then(|t| t.split('/').next()?.trim().parse::<u32>().ok())
    {
        if n > 0 && !file.contains(&format!("{n:02} ")) {
            errors.push(format!("{rel}: file name should carry track number {n:02}"));
        }
    }
    errors
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
        if !found
            .iter()
            .any(|rel| placement_errors(row, rel).is_empty())
        {
            errors.extend(placement_errors(row, &found[0]));
        }
    }
    assert!(
        checked > 300,
        "manifest should list over 300 usable core-format files, saw {checked}"
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
            _ if shown.contains(row.get("sha256")) && CORE_FORMATS.contains(&row.get("format")) => {
                // Parsed cleanly by the tag library and playable: shown, nothing to report.
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
