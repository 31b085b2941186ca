//! Indexing throughput and search latency on a synthetic library, straight on the store (no
//! socket, no FUSE): `cargo run --release -p musicfs-indexd --example bench -- [TRACKS]`.
//!
//! Tracks are fed as fetchd's feeder sends them (batches of 2,000, one commit each); then ten
//! representative queries run 50 times each with the default limit of 1,000.

use std::time::{Duration, Instant};

use musicfs_indexd::search::search;
use musicfs_indexd::IndexStore;
use musicfs_ipc::{IndexBatch, IndexDoc, TrackId};

const BATCH: usize = 2000;
const RUNS: usize = 50;
const GENRES: [&str; 12] = [
    "Rock",
    "Pop",
    "Jazz",
    "Electronic",
    "Hip Hop",
    "Classical",
    "Folk",
    "Blues",
    "Metal",
    "Soul",
    "Reggae",
    "Ambient",
];
const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ra", "su", "te", "vo", "ne", "bri", "sha", "dor", "el", "fin", "gu", "hal",
    "jo", "ke", "lum", "mor", "nia", "öst", "pé", "qui", "zen",
];

/// A small deterministic generator (no dependency needed for synthetic names).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }

    fn word(&mut self) -> String {
        let mut word = String::new();
        for _ in 0..2 + self.next(2) {
            word.push_str(SYLLABLES[self.next(SYLLABLES.len())]);
        }
        let mut chars = word.chars();
        chars
            .next()
            .map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
    }

    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }
}

fn library(tracks: usize) -> Vec<IndexDoc> {
    let mut rng = Lcg(42);
    let artists: Vec<String> = (0..tracks / 100 + 1).map(|_| rng.words(2)).collect();
    let mut docs = Vec::with_capacity(tracks);
    let mut id = 0u64;
    while docs.len() < tracks {
        let artist = artists[rng.next(artists.len())].clone();
        let album_words = 1 + rng.next(3);
        let album = rng.words(album_words);
        let year = 1950 + rng.next(75) as u32;
        let genre = GENRES[rng.next(GENRES.len())].to_owned();
        for n in 1..=12u32 {
            id += 1;
            let title_words = 1 + rng.next(4);
            let title = rng.words(title_words);
            docs.push(IndexDoc {
                track: TrackId(id),
                artists: vec![artist.clone()],
                album_artists: Vec::new(),
                album: Some(album.clone()),
                title: Some(title.clone()),
                genres: vec![genre.clone()],
                composers: Vec::new(),
                year: Some(year),
                track_number: Some(n),
                format: "flac".into(),
                ext: "flac".into(),
                duration_ms: 200_000,
                origin: "/srv/music".into(),
                added_secs: 1_600_000_000 + id as i64,
                file_stem: format!("{n:02} {title}"),
            });
        }
    }
    docs.truncate(tracks);
    docs
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let tracks: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |n| n.parse().expect("TRACKS is a number"));
    let docs = library(tracks);
    let some_artist = docs[docs.len() / 2].artists[0].clone();
    let some_title = docs[docs.len() / 3].title.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();

    let start = Instant::now();
    let mut seq = 0;
    for (i, chunk) in docs.chunks(BATCH).enumerate() {
        let batch = IndexBatch {
            catalog_id: 1,
            reset: i == 0,
            from_seq: seq,
            to_seq: seq + chunk.len() as u64,
            upserts: chunk.to_vec(),
            removed: Vec::new(),
        };
        seq = store.apply(&batch).unwrap().seq;
    }
    let took = start.elapsed();
    println!(
        "indexed {tracks} tracks in {:.2} s: {:.0} tracks/s, {} commits",
        took.as_secs_f64(),
        tracks as f64 / took.as_secs_f64(),
        tracks.div_ceil(BATCH)
    );
    let bytes = dir_size(dir.path());
    println!(
        "index size {:.1} MB, {:.0} bytes/track",
        bytes as f64 / 1e6,
        bytes as f64 / tracks as f64
    );

    let queries = [
        some_artist.to_lowercase(),
        format!("\"{some_title}\""),
        "kalo*".to_owned(),
        "karalo~".to_owned(),
        "year:1990..1999".to_owned(),
        "genre:jazz".to_owned(),
        "genre:rock year:1970..1979 -kalo".to_owned(),
        "mira OR sute".to_owned(),
        "recent:200".to_owned(),
        "öst* pé*".to_owned(),
    ];
    let mut all = Vec::new();
    println!(
        "{:<40} {:>6} {:>9} {:>9}",
        "query", "hits", "p50 ms", "p99 ms"
    );
    for query in &queries {
        let mut times = Vec::with_capacity(RUNS);
        let mut hits = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            hits = search(&store, query, 1000).unwrap().len();
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "{query:<40} {hits:>6} {:>9.3} {:>9.3}",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "all queries: p50 {:.3} ms, p99 {:.3} ms",
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3
    );
}
