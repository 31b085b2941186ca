//! Cutting a staged track into chunks, as fetchd does once a track is complete:
//! `cargo run --release -p musicfs-fetchd --example cut_bench`.
//!
//! A 64 MiB file of noise (audio does not repeat either) in the page cache is cut into
//! FastCDC chunks and each chunk hashed (XXH3-128), two ways in turns: FastCDC's `StreamCDC`
//! reading through a 1 MiB `BufReader` (how fetchd cut until this bench was written), and
//! `musicfs_fetchd::cdc::each_chunk` (large windows, chunks as slices of them). Both must give
//! the same chunks. Then the whole cut as fetchd makes it: `each_chunk` with every chunk
//! written to a fresh chunk store on this disk. Prints MB/s, median of the rounds.

use std::io::Write;
use std::time::Instant;

use fastcdc::v2020::StreamCDC;
use musicfs_fetchd::cdc::each_chunk;
use musicfs_fetchd::chunks::{chunk_hash, ChunkStore, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
use musicfs_tests::noise::noise;

const SIZE: usize = 64 << 20;
const ROUNDS: usize = 7;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("staged");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&noise(SIZE, 42)))
        .expect("writing the file");
    let file = std::fs::File::open(&path).expect("opening the file");

    let (mut stream, mut windows, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, a_chunks) = timed(|| stream_cut(&path));
        let (b, b_chunks) = timed(|| {
            let mut chunks = Vec::new();
            each_chunk(&file, |c| chunks.push((c.len(), chunk_hash(c)))).expect("cut");
            chunks
        });
        assert_eq!(a_chunks, b_chunks, "both ways give the same chunks");
        let store_dir = dir.path().join(format!("chunks-{round}"));
        let store = ChunkStore::open(&store_dir).expect("chunk store");
        let (c, ()) = timed(|| {
            each_chunk(&file, |c| store.put(chunk_hash(c), c).expect("put")).expect("cut");
        });
        std::fs::remove_dir_all(&store_dir).expect("removing the store");
        stream.push(a);
        windows.push(b);
        stored.push(c);
    }
    println!(
        "cutting and hashing a {} MiB file, median of {ROUNDS} rounds in turns:",
        SIZE >> 20
    );
    println!(
        "  StreamCDC through a 1 MiB BufReader   {:7.0} MB/s",
        rate(&mut stream)
    );
    println!(
        "  each_chunk (windows, chunk slices)   {:7.0} MB/s",
        rate(&mut windows)
    );
    println!(
        "  each_chunk, chunks written to a store {:6.0} MB/s",
        rate(&mut stored)
    );
}

fn stream_cut(path: &std::path::Path) -> Vec<(usize, u128)> {
    let file = std::fs::File::open(path).expect("opening the file");
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    StreamCDC::new(
        reader,
        MIN_CHUNK as usize,
        AVG_CHUNK as usize,
        MAX_CHUNK as usize,
    )
    .map(|c| {
        let c = c.expect("cut");
        (c.length, chunk_hash(&c.data))
    })
    .collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64(), out)
}

fn rate(seconds: &mut [f64]) -> f64 {
    seconds.sort_by(f64::total_cmp);
    SIZE as f64 / 1e6 / seconds[seconds.len() / 2]
}
