//! State left damaged: a catalog file LMDB cannot read is set aside, with the reason logged,
//! and rebuilt from the origins; the mount comes up and the library plays.

use std::os::unix::fs::FileExt;

use musicfs_tests::albums::*;
use musicfs_tests::mount::Mount;

#[test]
fn a_catalog_lmdb_cannot_read_is_set_aside_and_the_mount_comes_up() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let (mnt, log) = (tmp.path().join("mnt"), tmp.path().join("mount.log"));
    std::fs::create_dir_all(&mnt).unwrap();
    let state = tmp.path().join("state");
    let kept = paths_under(KEPT);
    let expected = origin_hashes(&lib, &kept);
    let mount = Mount::start_logged(&[&lib], &state, &mnt, &[], &log);
    mount.status(true);
    assert_eq!(read_all_at_once(&mount, &kept), expected);
    settle(&mount);
    assert!(mount.stop().success());

    // Its first pages (LMDB's meta pages) overwritten: "not an LMDB file".
    let catalog = state.join("catalog");
    let data = std::fs::OpenOptions::new()
        .write(true)
        .open(catalog.join("data.mdb"))
        .unwrap();
    data.write_all_at(&[0x5a; 8192], 0).unwrap();
    drop(data);

    let mount = Mount::start_logged(&[&lib], &state, &mnt, &[], &log);
    mount.status(true);
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &kept), expected);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("set aside as"), "no reason logged:\n{text}");
    let aside = std::fs::read_dir(&catalog)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("data.mdb.damaged-")
        })
        .count();
    assert_eq!(aside, 1);
}
