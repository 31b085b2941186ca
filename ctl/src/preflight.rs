//! Everything `musicfsctl mount` checks before it starts anything. Each failure is one line that
//! says what to do, and a failed check leaves nothing behind: no socket, no child, no held lock.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use musicfs_ipc::config::Config;
use musicfs_ipc::layout::StateDir;
use musicfs_ipc::origin::{OriginConfig, OriginUrl};

use crate::cli::MountArgs;
use crate::lock::{self, StateLock};
use crate::mounts::{self, MountPointState};
use crate::programs::{self, Programs};

const FUSE_DEVICE: &str = "/dev/fuse";

/// Everything the supervisor needs, checked. Holding it holds the state dir's lock.
#[derive(Debug)]
pub struct MountPlan {
    pub state: StateDir,
    pub config_file: Option<PathBuf>,
    pub config: Config,
    /// The command-line origins: local folders absolute and symlink-free, URLs as given;
    /// without duplicates. (The config's origins reach fetchd through the config file.)
    pub origins: Vec<String>,
    /// Absolute; an empty directory not inside any origin.
    pub mountpoint: PathBuf,
    pub programs: Programs,
    pub lock: StateLock,
}

/// Runs every check in an order that creates nothing until the cheap checks have passed.
pub fn prepare(args: &MountArgs, state_root: &Path) -> anyhow::Result<MountPlan> {
    let config_file = args.config.as_deref().map(absolute).transpose()?;
    let config = Config::load(config_file.as_deref()).map_err(|e| anyhow!("{e}; fix the file"))?;
    let (cli_origins, mountpoint) = args.split();
    let (origins, local) = check_origins(cli_origins, &config)?;
    let mountpoint = check_mountpoint_exists(mountpoint)?;
    check_outside_origins(&mountpoint, &local)?;
    if !Path::new(FUSE_DEVICE).exists() {
        bail!("{FUSE_DEVICE} is missing; load the fuse module (modprobe fuse), or give a container the device (--device /dev/fuse)");
    }
    if programs::on_path("fusermount3").is_none() {
        bail!("fusermount3 is not on PATH; install fuse3 (apt-get install fuse3)");
    }
    let programs = Programs::locate()?;
    let state = StateDir::new(absolute(state_root)?);
    let new_state_dir = !state.root().exists();
    let lock = lock_state_dir(&state)?;
    let mountpoint_ready =
        clear_stale_mount(&mountpoint).and_then(|()| check_mountpoint_empty(&mountpoint));
    if let Err(e) = mountpoint_ready {
        drop(lock);
        if new_state_dir {
            remove_new_state_dir(&state);
        }
        return Err(e);
    }
    Ok(MountPlan {
        state,
        config_file,
        config,
        origins,
        mountpoint,
        programs,
        lock,
    })
}

/// Checks each origin: the command line's (returned canonical and de-duplicated, in order) and
/// the config's local folders (all local folders are returned second). Remote origins are
/// checked for what can be known without connecting; fetchd reports one that does not answer.
pub fn check_origins(
    cli: &[PathBuf],
    config: &Config,
) -> anyhow::Result<(Vec<String>, Vec<PathBuf>)> {
    let mut checked = Vec::new();
    let mut local = Vec::new();
    for origin in cli {
        let text = origin.to_string_lossy();
        let spec = OriginConfig::from_url(text.as_ref());
        let name = match spec.parsed() {
            Ok(OriginUrl::Local(path)) => {
                let path = check_origin(&path)?;
                local.push(path.clone());
                path.to_string_lossy().into_owned()
            }
            Ok(_) => {
                spec.check().map_err(|e| anyhow!("{e}"))?;
                text.into_owned()
            }
            Err(e) => bail!("{e}"),
        };
        if !checked.contains(&name) {
            checked.push(name);
        }
    }
    for origin in &config.origins {
        if let Ok(OriginUrl::Local(path)) = origin.0.parsed() {
            // A folder the config names may be on a disk not mounted now (a typo on the
            // command line is refused, above).
            if !path.exists() && path.is_absolute() {
                tracing::warn!(
                    "origin {} does not exist now (a disk not mounted?); its tracks stay \
                     listed, and it is read once it appears",
                    path.display()
                );
                continue;
            }
            local.push(check_origin(&path)?);
        }
    }
    if checked.is_empty() && config.origins.is_empty() {
        bail!("no origin given; name at least one music folder or URL before the mount point (or set `origins` in the config)");
    }
    Ok((checked, local))
}

/// An origin must exist and be a directory this user can list.
pub fn check_origin(origin: &Path) -> anyhow::Result<PathBuf> {
    let shown = origin.display();
    let meta = std::fs::metadata(origin).map_err(|e| match e.kind() {
        ErrorKind::NotFound => anyhow!("origin {shown} does not exist; check the path"),
        _ => anyhow!("origin {shown} cannot be opened ({e}); check its permissions"),
    })?;
    if !meta.is_dir() {
        bail!("origin {shown} is not a directory; give the folder that holds the music");
    }
    std::fs::read_dir(origin).map_err(|e| {
        anyhow!("origin {shown} is not readable ({e}); fix its permissions or run as a user who can read it")
    })?;
    origin
        .canonicalize()
        .with_context(|| format!("cannot resolve origin {shown}"))
}

/// The mount point must exist and be a directory; a stale FUSE mount there passes (it is cleaned
/// once the lock is held). Returns its absolute path as mountinfo shows it.
pub fn check_mountpoint_exists(mountpoint: &Path) -> anyhow::Result<PathBuf> {
    let shown = mountpoint.display();
    let resolved = resolve_mountpoint(mountpoint)
        .map_err(|e| anyhow!("mount point {shown} cannot be resolved ({e}); check the path"))?;
    match std::fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => Ok(resolved),
        Ok(_) => bail!("mount point {shown} is not a directory; give an empty directory"),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(resolved),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("mount point {shown} does not exist; create it (mkdir -p {shown})")
        }
        Err(e) => bail!("mount point {shown} cannot be opened ({e}); check its permissions"),
    }
}

/// Absolute and symlink-free, without touching the mount point itself (it may be a dead mount).
fn resolve_mountpoint(mountpoint: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(mountpoint)?;
    let is_symlink = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !is_symlink => Ok(parent.canonicalize()?.join(name)),
        _ => path.canonicalize(),
    }
}

/// Mounting inside an origin would make the scanner walk the mount itself.
pub fn check_outside_origins(mountpoint: &Path, origins: &[PathBuf]) -> anyhow::Result<()> {
    match origins.iter().find(|origin| mountpoint.starts_with(origin)) {
        Some(origin) => bail!(
            "mount point {} is inside origin {}; choose a mount point outside the music folders",
            mountpoint.display(),
            origin.display()
        ),
        None => Ok(()),
    }
}

/// Creates the state dir and takes its lock (held for the supervisor's life).
pub fn lock_state_dir(state: &StateDir) -> anyhow::Result<StateLock> {
    let root = state.root().display();
    std::fs::create_dir_all(state.root()).map_err(|e| {
        anyhow!("cannot create state dir {root} ({e}); pass a writable --state-dir")
    })?;
    let path = state.lock_file();
    match lock::try_acquire(&path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => {
            let pid = lock::holder_pid(&path).map_or("unknown".to_owned(), |p| p.to_string());
            bail!("another musicfs is already running on state dir {root} (pid {pid}); stop it first or pass another --state-dir")
        }
        Err(e) => bail!(
            "cannot lock {} ({e}); pass a writable --state-dir",
            path.display()
        ),
    }
}

/// Undoes [`lock_state_dir`] for a state dir this run created, so a failed check leaves nothing.
fn remove_new_state_dir(state: &StateDir) {
    let _ = std::fs::remove_file(state.lock_file());
    let _ = std::fs::remove_dir(state.root());
}

/// Detaches a stale FUSE mount left at the mount point (saying so); refuses a live MusicFS mount.
pub fn clear_stale_mount(mountpoint: &Path) -> anyhow::Result<()> {
    let shown = mountpoint.display();
    match mounts::probe(mountpoint) {
        MountPointState::Free => Ok(()),
        MountPointState::LiveMusicfs => bail!(
            "{shown} is already a live musicfs mount (another state dir?); stop that instance or unmount it (fusermount3 -u {shown})"
        ),
        MountPointState::Stale => {
            mounts::lazy_unmount(mountpoint)
                .with_context(|| format!("cannot clean the stale mount at {shown}"))?;
            eprintln!("musicfs: cleaned a stale mount at {shown} (lazy unmount)");
            Ok(())
        }
    }
}

/// The kernel would hide whatever is in the mount point; require it empty.
pub fn check_mountpoint_empty(mountpoint: &Path) -> anyhow::Result<()> {
    let shown = mountpoint.display();
    let mut entries = std::fs::read_dir(mountpoint).map_err(|e| {
        anyhow!("mount point {shown} cannot be listed ({e}); check its permissions")
    })?;
    if entries.next().is_some() {
        bail!("mount point {shown} is not empty; mount on an empty directory");
    }
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: anyhow::Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn remote_origin_urls_are_checked_without_connecting() {
        let config = Config::default();
        let urls = [
            PathBuf::from("sftp://me@nas/music"),
            PathBuf::from("s3://bucket/music"),
        ];
        let (checked, local) = check_origins(&urls, &config).unwrap();
        assert_eq!(checked, ["sftp://me@nas/music", "s3://bucket/music"]);
        assert!(local.is_empty());
        let err = message(check_origins(
            &[PathBuf::from("sftp://me:pw@nas/m")],
            &config,
        ));
        assert!(err.contains("password") && !err.contains("pw@"), "{err}");
        let err = message(check_origins(&[PathBuf::from("gopher://nas/m")], &config));
        assert!(err.contains("unknown scheme"), "{err}");
    }

    #[test]
    fn origins_must_be_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(message(check_origin(&missing)).contains("does not exist"));
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(message(check_origin(&file)).contains("is not a directory"));
        assert_eq!(
            check_origin(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn origins_are_deduplicated_and_at_least_one_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let twice = [dir.path().to_owned(), dir.path().join(".")];
        let config = Config::default();
        assert_eq!(check_origins(&twice, &config).unwrap().0.len(), 1);
        assert!(message(check_origins(&[], &config)).contains("no origin given"));
    }

    #[test]
    fn mountpoint_must_exist_be_a_directory_and_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("mnt");
        assert!(message(check_mountpoint_exists(&missing)).contains("mkdir -p"));
        std::fs::write(&missing, "x").unwrap();
        assert!(message(check_mountpoint_exists(&missing)).contains("not a directory"));
        std::fs::remove_file(&missing).unwrap();
        std::fs::create_dir(&missing).unwrap();
        let resolved = check_mountpoint_exists(&missing).unwrap();
        assert_eq!(resolved, dir.path().canonicalize().unwrap().join("mnt"));
        check_mountpoint_empty(&resolved).unwrap();
        std::fs::write(resolved.join("song.mp3"), "x").unwrap();
        assert!(message(check_mountpoint_empty(&resolved)).contains("is not empty"));
    }

    #[test]
    fn mountpoint_inside_an_origin_is_refused() {
        let origins = [PathBuf::from("/srv/music")];
        let inside = check_outside_origins(Path::new("/srv/music/mnt"), &origins);
        assert!(message(inside).contains("inside origin"));
        check_outside_origins(Path::new("/srv/musicfs"), &origins).unwrap();
    }

    #[test]
    fn second_instance_on_a_state_dir_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let _held = lock_state_dir(&state).unwrap();
        let err = message(lock_state_dir(&state));
        let pid = std::process::id();
        assert!(err.starts_with(&format!(
            "another musicfs is already running on state dir {} (pid {pid})",
            state.root().display()
        )));
    }

    #[test]
    fn failed_checks_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state_root = dir.path().join("state");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let args = |paths: Vec<PathBuf>, config: Option<PathBuf>| MountArgs { config, paths };

        let err = message(prepare(
            &args(vec![dir.path().join("nope"), mnt.clone()], None),
            &state_root,
        ));
        assert!(err.contains("does not exist"), "{err}");

        let config = dir.path().join("musicfs.toml");
        std::fs::write(&config, "retry_seconds = 0\n").unwrap();
        let err = message(prepare(
            &args(vec![dir.path().to_owned(), mnt.clone()], Some(config)),
            &state_root,
        ));
        assert!(err.contains("retry_seconds"), "{err}");

        let err = message(prepare(&args(vec![mnt.clone()], None), &state_root));
        assert!(err.contains("no origin given"), "{err}");
        assert!(!state_root.exists());
    }
}
