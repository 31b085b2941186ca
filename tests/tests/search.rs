//! Search through the mount and from the command line, with queries whose answers the corpus
//! manifest gives; collections; and indexd killed while searches run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::layout::{StateDir, INDEXD};
use musicfs_ipc::IndexClient;
use musicfs_tests::corpus::{corpus_dir, read_manifest, two_flac_library};
use musicfs_tests::mount::Mount;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn ctl(mount: &Mount, args: &[&str]) -> Output {
    mount.ctl(args)
}

/// Waits until indexd has indexed the catalog (a search answers).
fn wait_indexed(mount: &Mount) {
    wait_for_hits(mount, "a*");
}

/// Waits until `query` finds something.
fn wait_for_hits(mount: &Mount, query: &str) {
    mount.status(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = ctl(mount, &["search", "--json", query]);
        if out.status.success() {
            let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if hits.as_array().is_some_and(|a| !a.is_empty()) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "index never became ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The corpus files (by sha256) that a query directory's symlinks lead to.
fn results(mount: &Mount, query: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let dir = mount.path(".search").join(query);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let link = entry.path();
        let target = std::fs::read_link(&link)?;
        assert!(
            target.is_relative(),
            "{} -> {}",
            link.display(),
            target.display()
        );
        let resolved = dir.join(&target);
        assert!(
            resolved.is_file(),
            "{} -> {} does not resolve",
            link.display(),
            target.display()
        );
        out.push((entry.file_name().to_string_lossy().into_owned(), resolved));
    }
    out.sort();
    Ok(out)
}

fn sha_of_rows(
    rows: &[musicfs_tests::corpus::Row],
    pick: impl Fn(&musicfs_tests::corpus::Row) -> bool,
) -> Vec<String> {
    rows.iter()
        .filter(|r| pick(r))
        .map(|r| r.get("sha256").to_owned())
        .collect()
}

fn shas(found: &[(String, PathBuf)]) -> Vec<String> {
    found
        .iter()
        .map(|(_, p)| musicfs_tests::sha256_file(p).unwrap())
        .collect()
}

#[test]
fn queries_with_known_answers_through_the_mount_and_the_command_line() {
    let corpus = corpus_dir();
    let rows = read_manifest(&corpus.join("MANIFEST.tsv"));
    let mount = Mount::start(&[&corpus]);
    wait_indexed(&mount);

    // Diacritics folded: `nesbo` finds `Jo Nesbø`, `pate` finds `pâté`.
    let nesbo = shas(&results(&mount, "artist:nesbo").unwrap());
    for sha in sha_of_rows(&rows, |r| r.get("artist").contains("Nesbø")) {
        assert!(nesbo.contains(&sha), "artist:nesbo misses a Nesbø track");
    }
    let pate = results(&mount, "pate").unwrap();
    assert!(pate.len() >= 4, "pate found {pate:?}");
    // Names are ranked `NNN Artist - Title.ext`.
    assert!(pate[0].0.starts_with("001 pâté - "), "{}", pate[0].0);

    // Phrase, year range, NOT.
    let zeppelin = shas(&results(&mount, "artist:\"led zeppelin\"").unwrap());
    let good_times = sha_of_rows(&rows, |r| r.get("title") == "Good Times Bad Times");
    assert!(good_times.iter().all(|s| zeppelin.contains(s)));
    let sixties = shas(&results(&mount, "year:1960..1969").unwrap());
    assert!(good_times.iter().all(|s| sixties.contains(s)));
    let without = shas(&results(&mount, "artist:\"led zeppelin\" -\"good times\"").unwrap());
    assert!(good_times.iter().all(|s| !without.contains(s)));

    // A query that does not parse names nothing; the command line says why.
    let err = results(&mount, "title:(").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let out = ctl(&mount, &["search", "title:("]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad query"),
        "{out:?}"
    );

    // musicfsctl search gives the same answer as the directory, with paths.
    let out = ctl(&mount, &["search", "--json", "pate"]);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits.as_array().unwrap().len(), pate.len());
    let path = hits[0]["path"].as_str().unwrap();
    assert!(mount.path(path).is_file(), "{path}");
}

/// The same files on two origins show once in the tree, so once in search results too; each
/// result's attributes, as `ls -l` sees them, agree with its target.
#[test]
fn a_track_on_two_origins_is_found_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = two_flac_library(&dir.path().join("first"));
    let second = two_flac_library(&dir.path().join("second"));
    let mount = Mount::start(&[&first, &second]);
    let query = "zeppelin OR prodigy";
    wait_for_hits(&mount, query);
    let found = results(&mount, query).unwrap();
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    let mut unranked: Vec<&str> = names.iter().map(|n| &n[4..]).collect();
    unranked.sort();
    assert_eq!(
        unranked,
        [
            "Led Zeppelin - Good Times Bad Times.flac",
            "The Prodigy - Omen Reprise.flac"
        ],
        "{names:?}"
    );
    let listing = mount.path(".search").join(query);
    for name in names {
        let link = listing.join(name);
        let target = std::fs::read_link(&link).unwrap();
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink());
        assert_eq!(meta.len(), target.as_os_str().len() as u64, "{name}");
    }
}

#[test]
fn collections_built_in_and_saved() {
    let corpus = corpus_dir();
    let mount = Mount::start(&[&corpus]);
    wait_indexed(&mount);
    let collections = mount.path(".collections");
    let listed = musicfs_tests::sorted_names;
    let names = listed(&collections);
    for builtin in ["Recently Added", "1960s", "Blues"] {
        assert!(
            names.iter().any(|n| n == builtin),
            "{builtin} missing from {names:?}"
        );
    }
    assert!(!listed(&collections.join("1960s")).is_empty());

    let out = ctl(
        &mount,
        &["collection", "add", "Zeppelin", "artist:zeppelin"],
    );
    assert!(out.status.success(), "{out:?}");
    let zeppelin = listed(&collections.join("Zeppelin"));
    assert!(
        zeppelin.iter().any(|n| n.contains("Good Times Bad Times")),
        "{zeppelin:?}"
    );
    let list = String::from_utf8(ctl(&mount, &["collection", "list"]).stdout).unwrap();
    assert!(list.contains("Zeppelin\tartist:zeppelin\tsaved"), "{list}");

    let out = ctl(&mount, &["collection", "add", "Broken", "title:("]);
    assert!(
        !out.status.success(),
        "a query that does not parse was saved"
    );

    assert!(ctl(&mount, &["collection", "remove", "Zeppelin"])
        .status
        .success());
    std::thread::sleep(Duration::from_millis(1100)); // the kernel keeps results a second
    assert!(!collections.join("Zeppelin").exists());
    assert!(
        !ctl(&mount, &["collection", "remove", "1960s"])
            .status
            .success(),
        "removed a built-in"
    );
}

#[test]
fn killing_indexd_during_searches_never_disturbs_browsing_and_needs_no_rebuild() {
    let corpus = corpus_dir();
    let mount = Mount::start(&[&corpus]);
    wait_indexed(&mount);
    let state = StateDir::new(&mount.state_dir);
    let index =
        Reconnecting::<IndexClient>::new(INDEXD, state.socket(INDEXD), Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = || {
        rt.block_on(index.call(|c, ctx| async move { c.indexed_up_to(ctx).await }))
            .unwrap()
            .unwrap()
    };
    let before = held();

    let stop = Arc::new(AtomicBool::new(false));
    let browse = {
        let (root, stop) = (mount.mountpoint.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut listings = 0;
            while !stop.load(Ordering::Relaxed) {
                for artist in std::fs::read_dir(&root).expect("browsing failed") {
                    std::fs::read_dir(artist.unwrap().path())
                        .expect("browsing failed")
                        .count();
                }
                listings += 1;
            }
            listings
        })
    };
    let search = {
        let (dir, stop) = (mount.path(".search"), stop.clone());
        std::thread::spawn(move || {
            let mut answered = HashMap::from([(true, 0), (false, 0)]);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // A new query each time, so the kernel's one-second cache does not answer.
                n += 1;
                let ok = std::fs::read_dir(dir.join(format!("a* -zzz{n}"))).is_ok();
                *answered.get_mut(&ok).unwrap() += 1;
            }
            answered
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let status = mount.status(false);
    let indexd = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "indexd")
        .unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    kill(Pid::from_raw(indexd), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    // Search answers again shortly, from the index as it was: no rebuild.
    loop {
        let out = ctl(&mount, &["search", "--json", "a*"]);
        if out.status.success() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "search did not come back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let back_after = killed.elapsed();
    assert_eq!(
        held(),
        before,
        "the restarted indexd lost what it had committed"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let listings = browse.join().expect("browsing saw an error");
    let answered = search.join().unwrap();
    eprintln!(
        "search back after {back_after:?}; browsing listings {listings}; searches {answered:?}"
    );
    assert!(listings > 0);
    assert!(answered[&true] > 0);
}
