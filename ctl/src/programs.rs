//! Finding the programs the supervisor runs: the worker binaries (next to `musicfsctl`, else on
//! `PATH`) and helpers such as `fusermount3` (on `PATH`).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

/// Paths of the four binaries `musicfsctl mount` starts.
#[derive(Debug, Clone)]
pub struct Programs {
    pub fetchd: PathBuf,
    pub indexd: PathBuf,
    pub plugind: PathBuf,
    pub mountd: PathBuf,
}

impl Programs {
    /// Looks for every worker binary next to the running executable, then on `PATH`.
    pub fn locate() -> anyhow::Result<Self> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_owned));
        let path_var = std::env::var_os("PATH");
        let find = |name: &str| {
            find_program(name, exe_dir.as_deref(), path_var.as_deref()).ok_or_else(|| {
                let here = exe_dir.as_deref().unwrap_or(Path::new("musicfsctl's folder"));
                anyhow!(
                    "cannot find {name} in {} or on PATH; install all MusicFS binaries in one folder",
                    here.display()
                )
            })
        };
        Ok(Self {
            fetchd: find("musicfs-fetchd")?,
            indexd: find("musicfs-indexd")?,
            plugind: find("musicfs-plugind")?,
            mountd: find("musicfs-mountd")?,
        })
    }
}

/// `name` in `first_dir` if it is an executable file there, else the first match on `path_var`.
pub fn find_program(
    name: &str,
    first_dir: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Option<PathBuf> {
    let path_dirs = path_var.map(|p| std::env::split_paths(p).collect::<Vec<_>>());
    first_dir
        .into_iter()
        .map(Path::to_owned)
        .chain(path_dirs.into_iter().flatten())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Looks `name` up on the current `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    find_program(name, None, std::env::var_os("PATH").as_deref())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn prefers_the_first_dir_then_path_and_skips_non_executables() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        touch(&a.path().join("tool"), 0o644);
        touch(&b.path().join("tool"), 0o755);
        let path_var = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(
            find_program("tool", None, Some(&path_var)),
            Some(b.path().join("tool"))
        );
        touch(&a.path().join("tool"), 0o755);
        assert_eq!(
            find_program("tool", Some(b.path()), Some(&path_var)),
            Some(b.path().join("tool"))
        );
        assert_eq!(
            find_program("missing", Some(a.path()), Some(&path_var)),
            None
        );
    }
}
