use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;

/// `n` distinct bytes derived from `seed`.
fn chunk(seed: u64, n: usize) -> (u128, Vec<u8>) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    (chunk_hash(&bytes), bytes)
}

fn limits(budget: Option<u64>) -> Limits {
    Limits {
        budget,
        min_free: 0,
        ..Limits::unlimited()
    }
}

/// Sum of the sizes of every file under the store's dir: chunk folders first, then `tmp`, so
/// a file renamed out of `tmp` while the walk runs is never counted twice.
fn bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    folders.sort_by_key(|p| p.ends_with("tmp"));
    for folder in folders {
        for file in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            total += file.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

#[test]
fn put_get_roundtrip_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let data = b"some audio bytes".to_vec();
    let h = chunk_hash(&data);
    assert_eq!(store.get(h).unwrap(), None);
    store.put(h, &data).unwrap();
    store.put(h, &data).unwrap();
    assert_eq!(store.get(h).unwrap(), Some(data));
    assert_eq!(store.usage(), (1, 16));
    let reopened = ChunkStore::open(dir.path()).unwrap();
    assert_eq!(reopened.usage(), (1, 16));
}

#[test]
fn corrupt_chunk_is_dropped_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let data = vec![7u8; 4096];
    let h = chunk_hash(&data);
    store.put(h, &data).unwrap();
    let path = store.path(h);
    let mut bad = data.clone();
    bad[100] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(store.get(h).unwrap(), None);
    assert!(!path.exists());
    assert_eq!(store.usage(), (0, 0));
    store.put(h, &data).unwrap();
    assert_eq!(store.get(h).unwrap(), Some(data));
}

#[test]
fn get_into_appends_an_intact_chunk_and_leaves_the_buffer_alone_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let (h, data) = chunk(3, 5000);
    let mut out = b"before".to_vec();
    assert!(!store.get_into(h, &mut out).unwrap(), "not stored yet");
    assert_eq!(out, b"before");
    store.put(h, &data).unwrap();
    assert!(store.get_into(h, &mut out).unwrap());
    assert_eq!(out, [&b"before"[..], &data].concat());
    // Corrupt on disk: dropped, and nothing of it stays in the buffer.
    let mut bad = data.clone();
    bad[4000] ^= 1;
    std::fs::write(store.path(h), &bad).unwrap();
    out.truncate(6);
    assert!(!store.get_into(h, &mut out).unwrap());
    assert_eq!(out, b"before");
    assert!(!store.path(h).exists());
}

#[test]
fn concurrent_puts_over_a_tiny_budget_never_exceed_it_on_disk_or_on_the_books() {
    const BUDGET: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ChunkStore::open_with(dir.path(), limits(Some(BUDGET))).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (store, done, dir) = (store.clone(), done.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) {
                // With the lock held nothing is admitted or evicted: what is on disk is at
                // most what is recorded plus what is being written, and that fits the budget.
                let held = store.lock();
                let books = held.lru.usage().1 + held.writing;
                let disk = bytes_on_disk(&dir);
                drop(held);
                assert!(books <= BUDGET, "books say {books} > {BUDGET}");
                assert!(disk <= books, "{disk} bytes on disk, {books} on the books");
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        })
    };
    let writers: Vec<_> = (0..6u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..120u64 {
                    let seed = t * 1000 + i;
                    let size = MIN_CHUNK as usize
                        + (seed as usize * 7919) % (MAX_CHUNK - MIN_CHUNK) as usize;
                    let (hash, bytes) = chunk(seed, size);
                    // Never refused: with nothing pinned a writer waits for the writes in
                    // flight (whose bytes may fill the budget) rather than fail.
                    store.put(hash, &bytes).unwrap();
                    assert!(store.usage().1 <= BUDGET);
                    // Some reads of recent chunks: hits refresh recency.
                    if i % 3 == 0 {
                        store.get(hash).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(sampler.join().unwrap() > 0);
    let (chunks, bytes) = store.usage();
    assert!(bytes <= BUDGET && bytes > BUDGET / 2, "{bytes}");
    assert_eq!(bytes, bytes_on_disk(dir.path()));
    let reopened = ChunkStore::open(dir.path()).unwrap();
    assert_eq!(reopened.usage(), (chunks, bytes));
}

#[test]
fn a_writer_waits_for_room_held_by_writes_in_flight_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ChunkStore::open_with(dir.path(), limits(Some(60_000))).unwrap());
    let (a, b) = (chunk(50, 40_000), chunk(51, 30_000));
    // A write of 40 KB is in flight: 20 KB of room, and nothing held to evict yet.
    store.lock().writing += 40_000;
    let writer = {
        let (store, b) = (store.clone(), b.clone());
        std::thread::spawn(move || store.put(b.0, &b.1))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !writer.is_finished(),
        "the put did not wait: {:?}",
        writer.join()
    );
    // The write in flight ends; its chunk is held, and evictable for the waiting one.
    store.write_file(a.0, &a.1).unwrap();
    {
        let mut held = store.lock();
        held.writing -= 40_000;
        held.lru.insert(a.0, 40_000);
    }
    store.written.notify_all();
    writer.join().unwrap().unwrap();
    assert_eq!(store.missing(&[a.0, b.0]), [a.0]);
    assert_eq!(store.usage(), (1, 30_000));
}

#[test]
fn the_least_recently_used_chunk_is_evicted_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open_with(dir.path(), limits(Some(60_000))).unwrap();
    let [a, b, c, d, e] = [1, 2, 3, 4, 5].map(|s| chunk(s, 20_000));
    for (h, bytes) in [&a, &b, &c] {
        store.put(*h, bytes).unwrap();
    }
    assert_eq!(store.get(a.0).unwrap().as_deref(), Some(&a.1[..]));
    store.put(d.0, &d.1).unwrap();
    assert_eq!(store.missing(&[a.0, b.0, c.0, d.0]), [b.0]);
    // Putting a chunk already held counts as a use too.
    store.put(c.0, &c.1).unwrap();
    store.put(e.0, &e.1).unwrap();
    assert_eq!(store.missing(&[a.0, c.0, d.0, e.0]), [a.0]);
    assert_eq!(store.usage(), (3, 60_000));
    assert!(!store.path(a.0).exists() && !store.path(b.0).exists());
}

#[test]
fn pinned_chunks_survive_and_a_budget_full_of_pins_refuses_puts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open_with(dir.path(), limits(Some(60_000))).unwrap();
    let all: Vec<_> = (10..20).map(|s| chunk(s, 20_000)).collect();
    // Pins may name chunks before they arrive.
    store.protect([all[0].0, all[1].0]);
    for (h, bytes) in &all {
        store.put(*h, bytes).unwrap();
    }
    assert!(store.contains(all[0].0) && store.contains(all[1].0));
    assert_eq!(store.missing(&[all[9].0]), []);
    assert_eq!(store.usage(), (3, 60_000));
    assert_eq!(store.pinned_usage(), (2, 40_000));
    store.protect([all[9].0]);
    let (h, bytes) = chunk(99, 20_000);
    let err = store.put(h, &bytes).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert!(err.to_string().contains("pinned"), "{err}");
    assert_eq!(store.usage(), (3, 60_000));
    // Unpinned, they are evictable again, oldest first.
    store.set_protected([all[9].0].into());
    store.put(h, &bytes).unwrap();
    assert_eq!(store.missing(&[all[0].0, all[1].0]), [all[0].0]);
    let (big, bytes) = chunk(98, 70_000);
    let err = store.put(big, &bytes).unwrap_err();
    assert!(
        err.to_string().contains("larger than the cache budget"),
        "{err}"
    );
}

/// A store keeping `min_free` free on a disk whose free space is what the returned number says
/// (1 GiB to start with).
fn store_with_floor(dir: &Path, min_free: u64) -> (ChunkStore, Arc<AtomicU64>) {
    let free = Arc::new(AtomicU64::new(1 << 30));
    let reported = free.clone();
    let limits = Limits {
        budget: None,
        min_free,
        free_space: Arc::new(move |_| Ok(reported.load(Ordering::Relaxed))),
    };
    (ChunkStore::open_with(dir, limits).unwrap(), free)
}

#[test]
fn the_free_disk_floor_is_kept_with_a_fake_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let (store, free) = store_with_floor(dir.path(), 100_000);
    let all: Vec<_> = (20..24).map(|s| chunk(s, 20_000)).collect();
    for (h, bytes) in &all[..3] {
        store.put(*h, bytes).unwrap();
    }
    assert_eq!(store.usage(), (3, 60_000));
    // 10 KB short of the floor once the next chunk is written: the oldest chunk goes.
    free.store(110_000, Ordering::Relaxed);
    store.put(all[3].0, &all[3].1).unwrap();
    assert_eq!(
        store.missing(&all.iter().map(|c| c.0).collect::<Vec<_>>()),
        [all[0].0]
    );
    // Short by more than everything evictable: refused.
    store.protect([all[1].0]);
    free.store(50_000, Ordering::Relaxed);
    let (h, bytes) = chunk(25, 20_000);
    let err = store.put(h, &bytes).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(store.usage(), (1, 20_000));
}

#[test]
fn recency_survives_a_restart_through_mtimes_and_hits_refresh_them() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c, d] = [31, 32, 33, 34].map(|s| chunk(s, 20_000));
    let ago = |mins: u64| SystemTime::now() - Duration::from_secs(mins * 60);
    {
        let store = ChunkStore::open(dir.path()).unwrap();
        for (h, bytes) in [&a, &b, &c] {
            store.put(*h, bytes).unwrap();
        }
        for (h, mins) in [(a.0, 180), (b.0, 60), (c.0, 120)] {
            let file = std::fs::File::options()
                .write(true)
                .open(store.path(h))
                .unwrap();
            file.set_modified(ago(mins)).unwrap();
        }
        // A hit on an old chunk moves its mtime to now.
        store.get(b.0).unwrap().unwrap();
        let mtime = std::fs::metadata(store.path(b.0))
            .unwrap()
            .modified()
            .unwrap();
        assert!(mtime > ago(1));
    }
    // A lower budget at start evicts the oldest (a); the next put evicts c, older than b.
    let store = ChunkStore::open_with(dir.path(), limits(Some(40_000))).unwrap();
    assert_eq!(store.missing(&[a.0, b.0, c.0]), [a.0]);
    store.put(d.0, &d.1).unwrap();
    assert_eq!(store.missing(&[b.0, c.0, d.0]), [c.0]);
}

#[test]
fn remove_and_clear_keep_usage_accurate_and_spare_pins() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path()).unwrap();
    let all: Vec<_> = (40..43).map(|s| chunk(s, 10_000)).collect();
    for (h, bytes) in &all {
        store.put(*h, bytes).unwrap();
    }
    store.protect([all[1].0]);
    assert_eq!(store.clear().unwrap(), (2, 20_000));
    assert_eq!(store.usage(), (1, 10_000));
    assert_eq!(store.get(all[1].0).unwrap().as_deref(), Some(&all[1].1[..]));
    store.remove(all[1].0).unwrap();
    store.remove(all[1].0).unwrap();
    assert_eq!(store.usage(), (0, 0));
    assert_eq!(store.pinned_usage(), (0, 0));
    assert_eq!(bytes_on_disk(dir.path()), 0);
}

#[test]
fn room_reserved_for_staging_keeps_the_floor_for_every_writer_until_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, free) = store_with_floor(dir.path(), 100_000);
    let all: Vec<_> = (30..34).map(|s| chunk(s, 20_000)).collect();
    for (h, bytes) in &all[..3] {
        store.put(*h, bytes).unwrap();
    }
    let hashes: Vec<u128> = all.iter().map(|c| c.0).collect();
    // 130 KB free: 30 KB of staging fits above the floor, 50 KB evicts the oldest chunk.
    free.store(130_000, Ordering::Relaxed);
    drop(store.reserve_disk(30_000).unwrap());
    assert_eq!(store.usage(), (3, 60_000));
    let room = store.reserve_disk(50_000).unwrap();
    assert_eq!(store.missing(&hashes[..3]), [hashes[0]]);
    // While they are being written, a chunk put counts them against the floor too (the fake
    // free space does not grow as chunks go): 100 + 50 + 20 - 130 KB = 40 KB, two chunks.
    store.put(all[3].0, &all[3].1).unwrap();
    assert_eq!(store.missing(&hashes), &hashes[..3]);
    drop(room);
    // Given back: room for 30 KB again without evicting.
    drop(store.reserve_disk(30_000).unwrap());
    assert_eq!(store.usage(), (1, 20_000));
    // Nothing evictable left (pinned): refused.
    store.protect([hashes[3]]);
    free.store(100_000, Ordering::Relaxed);
    let err = store.reserve_disk(1).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
}
