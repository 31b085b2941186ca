//! TrackReader against real local origins in a temp dir.

use super::*;
use crate::chunks::AVG_CHUNK;
use crate::origin::OriginStats;
use crate::track::{Location, TrackInfo};
use musicfs_ipc::origin::OriginConfig;
use musicfs_tests::noise::noise;
use std::sync::atomic::Ordering;

fn layout(lens: &[u32]) -> Layout {
    let chunks = lens.iter().map(|l| (*l, u128::from(*l))).collect();
    Layout::new(Manifest { version: 1, chunks })
}

struct Fixture {
    dir: tempfile::TempDir,
    reader: TrackReader,
    catalog: Catalog,
    origins: Arc<Origins>,
    stats: Arc<OriginStats>,
}

impl Fixture {
    /// Origins `music0..musicN`, each holding the same files.
    fn new(origins: usize, files: &[(&str, &[u8])]) -> Self {
        Self::with_budget(origins, files, None)
    }

    fn with_budget(origins: usize, files: &[(&str, &[u8])], budget: Option<u64>) -> Self {
        let mut limits = crate::cache::Limits::unlimited();
        limits.budget = budget;
        Self::with_limits(origins, files, limits)
    }

    fn with_limits(origins: usize, files: &[(&str, &[u8])], limits: crate::cache::Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut configs = Vec::new();
        for o in 0..origins {
            let music = dir.path().join(format!("music{o}"));
            std::fs::create_dir(&music).unwrap();
            for (name, data) in files {
                std::fs::write(music.join(name), data).unwrap();
            }
            let mut config = OriginConfig::from_url(music.to_str().unwrap());
            config.priority = o as i32;
            configs.push(config);
        }
        let stats = Arc::new(OriginStats::default());
        let origins = Arc::new(Origins::open(&configs, stats.clone()).unwrap());
        let catalog = Catalog::open(&dir.path().join("catalog")).unwrap();
        let store = Arc::new(ChunkStore::open_with(&dir.path().join("chunks"), limits).unwrap());
        let reader = TrackReader::new(
            catalog.clone(),
            store,
            origins.clone(),
            dir.path().join("staging"),
        )
        .unwrap();
        let fixture = Self {
            dir,
            reader,
            catalog,
            origins,
            stats,
        };
        for (name, _) in files {
            fixture.catalogue(name);
        }
        fixture
    }

    /// (Re)catalogues a file on every origin; returns the first origin's track.
    fn catalogue(&self, name: &str) -> TrackRef {
        let mut upserts = Vec::new();
        for origin in self.origins.iter() {
            let (size, mtime_ns) = origin.stat(name).unwrap();
            let location = Location {
                origin: origin.name().to_owned(),
                path: name.into(),
            };
            upserts.push((location, size, mtime_ns, TrackInfo::default()));
        }
        let first = upserts[0].0.clone();
        self.catalog
            .apply(crate::catalog::Batch {
                upserts,
                ..Default::default()
            })
            .unwrap();
        let (id, record) = self.catalog.track_at(&first).unwrap().unwrap();
        TrackRef {
            id,
            version: record.version,
        }
    }

    fn track(&self, name: &str) -> TrackRef {
        let location = Location {
            origin: self.origins.origin(0).name().to_owned(),
            path: name.into(),
        };
        let (id, record) = self.catalog.track_at(&location).unwrap().unwrap();
        TrackRef {
            id,
            version: record.version,
        }
    }

    fn origin_bytes(&self) -> u64 {
        self.stats.bytes_read.load(Ordering::Relaxed)
    }

    fn read_all(&self, track: TrackRef, piece: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let got = self.reader.read(track, out.len() as u64, piece).unwrap();
            if got.is_empty() {
                return out;
            }
            out.extend(got);
        }
    }
}

#[test]
fn a_sequential_read_fetches_each_byte_once_then_the_track_is_cut_into_chunks() {
    let data = noise(3_000_000, 1);
    let f = Fixture::new(1, &[("a.flac", &data)]);
    let track = f.track("a.flac");
    assert_eq!(f.read_all(track, 128 * 1024), data);
    f.reader.wait_ingested();
    assert_eq!(
        f.origin_bytes(),
        data.len() as u64,
        "read-ahead fetched twice"
    );
    assert!(
        f.reader.layouts.get(&track).is_some(),
        "not cut into chunks"
    );
    let (chunks, bytes) = f.reader.store.usage();
    assert!(
        chunks >= data.len() as u64 / u64::from(MAX_CHUNK) && bytes == data.len() as u64,
        "{chunks} chunks, {bytes} bytes"
    );
    // Served from chunks now: the origin is not asked again.
    assert_eq!(
        f.reader.read(track, 999_990, 100).unwrap(),
        data[999_990..1_000_090]
    );
    assert_eq!(f.origin_bytes(), data.len() as u64);
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("staging"))
            .unwrap()
            .count(),
        0,
        "staging file left behind"
    );
}

#[test]
fn a_random_read_of_an_uncached_track_fetches_little_more_than_asked() {
    let data = noise(5_000_000, 2);
    let f = Fixture::new(1, &[("a.flac", &data)]);
    let track = f.track("a.flac");
    let (offset, len) = (2_000_123u64, 65_536u32);
    let got = f.reader.read(track, offset, len).unwrap();
    assert_eq!(got, data[offset as usize..offset as usize + len as usize]);
    f.reader.wait_ingested();
    let fetched = f.origin_bytes();
    assert!(
        fetched <= u64::from(len) * 3 / 2,
        "{fetched} bytes fetched for {len}"
    );
    // The bytes were kept: the same read, and one inside it, fetch nothing more.
    assert_eq!(f.reader.read(track, offset, len).unwrap(), got);
    let inside = (offset as usize + 100)..(offset as usize + 1100);
    assert_eq!(
        f.reader.read(track, inside.start as u64, 1000).unwrap(),
        data[inside]
    );
    assert_eq!(f.origin_bytes(), fetched);
}

#[test]
fn the_hit_ratio_counts_reads_answered_locally_and_reads_that_waited_for_an_origin() {
    let data = noise(3_000_000, 7);
    let f = Fixture::new(1, &[("a.flac", &data)]);
    let track = f.track("a.flac");
    assert_eq!(f.reader.hits_and_misses(), (0, 0));
    // Not cut yet: the first read goes to the origin, the same bytes again come staged.
    f.reader.read(track, 1_000_000, 65_536).unwrap();
    assert_eq!(f.reader.hits_and_misses(), (0, 1));
    f.reader.read(track, 1_000_000, 65_536).unwrap();
    f.reader.read(track, 1_000_100, 1_000).unwrap();
    assert_eq!(f.reader.hits_and_misses(), (2, 1));

    // Cut into chunks: served from them, and a lost chunk fetched again is a miss.
    f.read_all(track, 1 << 20);
    f.reader.wait_ingested();
    assert!(
        f.reader.layouts.get(&track).is_some(),
        "not cut into chunks"
    );
    let before = f.reader.hits_and_misses();
    f.reader.read(track, 0, 4096).unwrap();
    assert_eq!(f.reader.hits_and_misses(), (before.0 + 1, before.1));
    for dir in std::fs::read_dir(f.dir.path().join("chunks")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert_eq!(f.reader.read(track, 0, 4096).unwrap(), data[..4096]);
    assert_eq!(f.reader.hits_and_misses(), (before.0 + 1, before.1 + 1));
}

#[test]
fn a_changed_origin_file_is_never_served_as_the_old_version() {
    let data = noise(1_000_000, 3);
    let f = Fixture::new(1, &[("a.flac", &data)]);
    let track = f.track("a.flac");
    std::fs::write(f.dir.path().join("music0/a.flac"), b"retagged").unwrap();
    assert!(matches!(
        f.reader.read(track, 0, 10),
        Err(FetchError::OriginChanged(_))
    ));
    let stale = TrackRef {
        version: track.version + 100,
        ..track
    };
    assert_eq!(f.reader.read(stale, 0, 10), Err(FetchError::Stale));
}

#[test]
fn reads_fail_over_to_another_origin_and_fail_fast_when_none_answers() {
    let data = noise(2_000_000, 4);
    let f = Fixture::new(2, &[("a.flac", &data)]);
    let track = f.track("a.flac");
    let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
    f.origins.health(0).failed(&timeout);
    assert_eq!(f.reader.read(track, 0, 1000).unwrap(), data[..1000]);
    // The preferred origin is gone for real: the copy on the other still serves.
    std::fs::remove_dir_all(f.dir.path().join("music0")).unwrap();
    f.origins.health(0).succeeded();
    assert_eq!(
        f.reader.read(track, 500_000, 1000).unwrap(),
        data[500_000..501_000]
    );
    f.origins.health(1).failed(&timeout);
    f.origins.health(0).failed(&timeout);
    assert!(matches!(
        f.reader.read(track, 1_500_000, 1000),
        Err(FetchError::OriginUnavailable(_))
    ));
}

/// A FLAC-shaped file: metadata blocks with a comment of `comment` bytes, then `audio`.
fn flac(comment: usize, audio: &[u8]) -> Vec<u8> {
    let mut f = b"fLaC".to_vec();
    f.extend([0x00, 0, 0, 34]);
    f.extend([0u8; 34]);
    let len = comment as u32;
    f.extend([0x84, (len >> 16) as u8, (len >> 8) as u8, len as u8]);
    f.extend(std::iter::repeat_n(b'c', comment));
    f.extend(audio);
    f
}

#[test]
fn a_retagged_track_fetches_only_its_tags_and_the_edges_of_its_audio() {
    let audio = noise(30_000_000, 5);
    let old = flac(5_000, &audio);
    let f = Fixture::new(1, &[("a.flac", &old)]);
    let track = f.track("a.flac");
    assert_eq!(f.read_all(track, 1 << 20), old);
    f.reader.wait_ingested();
    let before = f.origin_bytes();
    // Retag: a longer comment shifts the audio by 7,000 bytes.
    let new = flac(12_000, &audio);
    let path = f.dir.path().join("music0/a.flac");
    std::fs::write(&path, &new).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    let retagged = f.catalogue("a.flac");
    assert_eq!(retagged.id, track.id);
    assert_ne!(retagged.version, track.version);
    assert_eq!(f.read_all(retagged, 128 * 1024), new);
    f.reader.wait_ingested();
    let refetched = f.origin_bytes() - before;
    let tag_block = 4 + 38 + 4 + 12_000;
    assert!(
        refetched < 2 * u64::from(AVG_CHUNK) + tag_block,
        "{refetched} bytes fetched again"
    );
}

/// An M4A-shaped file: `ftyp`, a `moov` of `tags` bytes, then the `mdat` holding `audio`; or,
/// as most encoders write it, the `moov` last.
fn mp4(tags: usize, audio: &[u8], moov_first: bool) -> Vec<u8> {
    let atom = |kind: &[u8], body: &[u8]| {
        [&(body.len() as u32 + 8).to_be_bytes()[..], kind, body].concat()
    };
    let ftyp = atom(b"ftyp", b"M4A \0\0\0\0");
    let moov = atom(b"moov", &vec![b't'; tags]);
    let mdat = atom(b"mdat", audio);
    match moov_first {
        true => [ftyp, moov, mdat].concat(),
        false => [ftyp, mdat, moov].concat(),
    }
}

#[test]
fn a_retagged_m4a_fetches_only_its_movie_atom_and_the_edges_of_its_audio() {
    for moov_first in [true, false] {
        let audio = noise(20_000_000, 6);
        let old = mp4(5_000, &audio, moov_first);
        let f = Fixture::new(1, &[("a.m4a", &old)]);
        let track = f.track("a.m4a");
        assert_eq!(f.read_all(track, 1 << 20), old);
        f.reader.wait_ingested();
        let before = f.origin_bytes();
        let new = mp4(12_000, &audio, moov_first);
        let path = f.dir.path().join("music0/a.m4a");
        std::fs::write(&path, &new).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let retagged = f.catalogue("a.m4a");
        assert_ne!(retagged.version, track.version);
        assert_eq!(f.read_all(retagged, 128 * 1024), new);
        f.reader.wait_ingested();
        let refetched = f.origin_bytes() - before;
        assert!(
            refetched < 2 * u64::from(AVG_CHUNK) + 16 + 12_008 + 16,
            "moov first: {moov_first}: {refetched} bytes fetched again"
        );
    }
}

#[test]
fn reads_within_the_kept_head_and_tail_need_no_staging_file_and_no_origin() {
    let data = noise(200_000, 3);
    let f = Fixture::new(1, &[("a.flac", &data)]);
    let track = f.track("a.flac");
    let record = f.catalog.track(track.id).unwrap().unwrap();
    // What a remote scan keeps: the first 32 KiB and the last 16 KiB.
    let mut blocks = Vec::new();
    for (start, len) in [(0u64, 32_768u32), (200_000 - 16_384, 16_384)] {
        let bytes = &data[start as usize..start as usize + len as usize];
        let hash = chunk_hash(bytes);
        f.reader.store.put(hash, bytes).unwrap();
        blocks.push((start, len, hash));
    }
    let head = crate::catalog::Head {
        size: record.size,
        mtime_ns: record.mtime_ns,
        blocks,
    };
    f.catalog
        .apply(crate::catalog::Batch {
            heads: vec![(record.location.clone(), head)],
            ..Default::default()
        })
        .unwrap();
    let staged = || {
        std::fs::read_dir(f.dir.path().join("staging"))
            .unwrap()
            .count()
    };

    assert_eq!(f.reader.read(track, 0, 16_384).unwrap(), data[..16_384]);
    assert_eq!(
        f.reader.read(track, 8_000, 24_768).unwrap(),
        data[8_000..32_768]
    );
    // Past the end of the file the answer is cut there.
    assert_eq!(
        f.reader.read(track, 199_900, 4_096).unwrap(),
        data[199_900..]
    );
    assert_eq!((f.origin_bytes(), staged()), (0, 0));

    // A read reaching past the kept head goes through a staging file and the origin.
    assert_eq!(
        f.reader.read(track, 30_000, 8_192).unwrap(),
        data[30_000..38_192]
    );
    assert!(f.origin_bytes() > 0);
    assert_eq!(staged(), 1);
}

#[test]
fn playing_a_track_warms_the_head_of_the_next_and_a_tag_read_warms_nothing() {
    let (one, two) = (noise(4_000_000, 6), noise(4_000_000, 7));
    let f = Fixture::new(1, &[("1.flac", &one), ("2.flac", &two)]);
    let (first, second) = (f.track("1.flac"), f.track("2.flac"));
    f.reader
        .set_next_track(Box::new(move |id| (id == first.id).then_some(second)));
    // A tag reader: one read at the head. Nothing is read ahead or warmed.
    f.reader.read(first, 0, 16 * 1024).unwrap();
    f.reader.wait_ingested();
    assert_eq!(f.origin_bytes(), 16 * 1024);
    // A player goes on reading: the next track's head is fetched before it is asked for.
    f.reader.read(first, 16 * 1024, 128 * 1024).unwrap();
    f.reader.wait_ingested();
    let warmed = f.origin_bytes();
    f.reader.read(second, 0, FIRST_WINDOW as u32).unwrap();
    assert_eq!(
        f.origin_bytes(),
        warmed,
        "the next track's head was not warm"
    );
}

#[test]
fn byte_ranges_map_to_the_chunks_that_cover_them() {
    let l = layout(&[100, 50, 200]); // [0,100) [100,150) [150,350)
    assert_eq!(l.covering(0, 1), 0..1);
    assert_eq!(l.covering(0, 100), 0..1);
    assert_eq!(l.covering(99, 101), 0..2);
    assert_eq!(l.covering(100, 150), 1..2);
    assert_eq!(l.covering(120, 350), 1..3);
    assert_eq!(l.covering(349, 350), 2..3);
    assert_eq!(l.covering(0, 350), 0..3);
}

/// The disk blocks the staging files hold (they are sparse: only fetched bytes take room).
fn staged_blocks(f: &Fixture) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(f.dir.path().join("staging"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks())
        .sum()
}

/// The chunk store's free-disk floor holds for staging files too. With the disk at the floor
/// and no chunk to evict, reads are answered from the origin without staging their bytes,
/// whether none, some or all of the range asked for is staged already; with room again,
/// staging goes on.
#[test]
fn staging_keeps_the_free_disk_floor_and_reads_go_on_without_it() {
    let data = noise(1_000_000, 3);
    let free = Arc::new(std::sync::atomic::AtomicU64::new(1 << 40));
    let reported = free.clone();
    let limits = crate::cache::Limits {
        budget: None,
        min_free: 1 << 20,
        free_space: Arc::new(move |_| Ok(reported.load(Ordering::Relaxed))),
    };
    let f = Fixture::with_limits(1, &[("a.flac", &data)], limits);
    let track = f.track("a.flac");
    let read = |offset: usize, len: usize| {
        let got = f.reader.read(track, offset as u64, len as u32).unwrap();
        assert!(got == data[offset..offset + len], "bytes at {offset}+{len}");
    };
    read(0, 65536);
    let staged = staged_blocks(&f);
    assert!(staged > 0);

    free.store(1 << 20, Ordering::Relaxed);
    read(32768, 131072);
    read(500_000, 65536);
    let fetched = f.origin_bytes();
    read(0, 65536);
    assert_eq!(
        f.origin_bytes(),
        fetched,
        "a staged range went to the origin"
    );
    assert_eq!(
        staged_blocks(&f),
        staged,
        "staged below the free-disk floor"
    );

    // A sequential reader at the floor: no read-ahead is fetched only to be dropped.
    let before = f.origin_bytes();
    for at in (600_000..1_000_000 - 131_072).step_by(131_072) {
        read(at, 131_072);
    }
    f.reader.wait_ingested();
    let fetched = f.origin_bytes() - before;
    assert!(
        fetched < 3 * 131_072 + 65_536,
        "{fetched} bytes fetched for 393216 read"
    );

    free.store(1 << 40, Ordering::Relaxed);
    read(500_000, 65536);
    assert!(staged_blocks(&f) > staged, "nothing staged with room again");
}
