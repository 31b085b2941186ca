//! The house rules of DESIGN.md that a compiler does not check.

use std::path::Path;

const PROCESS_CRATES: &[&str] = &["mountd", "fetchd", "indexd", "plugind", "ctl"];

/// Process crates talk only through `ipc`: none may depend on another.
#[test]
fn process_crates_never_depend_on_each_other() {
    let root = musicfs_tests::workspace();
    for krate in PROCESS_CRATES {
        let manifest = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap();
        let doc: toml::Table = manifest.parse().unwrap();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = doc.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for (name, spec) in deps {
                let path = spec.get("path").and_then(|p| p.as_str()).unwrap_or("");
                for other in PROCESS_CRATES.iter().filter(|o| *o != krate) {
                    let by_name = name == &format!("musicfs-{other}") || name == other;
                    let by_path = Path::new(path).file_name().is_some_and(|f| f == *other);
                    assert!(
                        !by_name && !by_path,
                        "{krate} depends on {other} ({section}.{name})"
                    );
                }
            }
        }
    }
}

/// `ipc` is the shared contract; it depends on no process crate either.
#[test]
fn ipc_depends_on_no_process_crate() {
    let manifest =
        std::fs::read_to_string(musicfs_tests::workspace().join("ipc/Cargo.toml")).unwrap();
    for krate in PROCESS_CRATES {
        assert!(
            !manifest.contains(&format!("musicfs-{krate}")),
            "ipc depends on {krate}"
        );
    }
}

/// Every `main.rs` stays short: logic lives in libraries that tests can drive.
#[test]
fn main_files_are_short() {
    for krate in PROCESS_CRATES {
        let main = musicfs_tests::workspace().join(krate).join("src/main.rs");
        let lines = std::fs::read_to_string(&main).unwrap().lines().count();
        assert!(lines <= 60, "{} has {lines} lines", main.display());
    }
}
