//! Cutting a file into content-defined chunks (FastCDC 2020, [`MIN_CHUNK`], [`AVG_CHUNK`],
//! [`MAX_CHUNK`]). The file is read in large windows and each chunk is handed out as a slice of
//! the window, so no byte is copied after the read that brings it in.
//!
//! The cut points are FastCDC's own, the same as its `StreamCDC` gives: where a chunk ends
//! depends only on the bytes from its start to at most [`MAX_CHUNK`] after it, so a chunk is cut
//! only once that much of the window follows its start (or the file ends there). `StreamCDC`
//! was used before and costs five more passes over every byte (its reader's buffer, a copy of
//! each chunk, and moving the rest of its 256 KiB buffer down after every chunk); chunk stores
//! cut by it keep their chunks (`cargo run --release -p musicfs-fetchd --example cut_bench`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use fastcdc::v2020::FastCDC;

use crate::chunks::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};

/// Bytes read from the file at a time.
const WINDOW: usize = 4 << 20;

/// Calls `each` with every chunk of `file`, in order, and returns how many bytes it read.
pub fn each_chunk(file: &File, mut each: impl FnMut(&[u8])) -> io::Result<u64> {
    let max = MAX_CHUNK as usize;
    let mut window = vec![0u8; WINDOW];
    let (mut start, mut len, mut read, mut eof) = (0usize, 0usize, 0u64, false);
    loop {
        if !eof && len - start < max {
            window.copy_within(start..len, 0);
            (len, start) = (len - start, 0);
            while len < WINDOW {
                let n = read_at(file, &mut window[len..], read)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                len += n;
                read += n as u64;
            }
        }
        if start == len {
            return Ok(read);
        }
        let cdc = FastCDC::new(&window[..len], MIN_CHUNK as usize, AVG_CHUNK as usize, max);
        // Cut while at least a whole maximal chunk follows the start, or the file ends here.
        while start < len && (eof || len - start >= max) {
            let (_, end) = cdc.cut(start, len - start);
            each(&window[start..end]);
            start = end;
        }
    }
}

fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, at) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use fastcdc::v2020::StreamCDC;
    use musicfs_tests::noise::noise;

    use super::*;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn cut(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let read = each_chunk(&file_of(bytes), |c| chunks.push(c.to_vec())).unwrap();
        assert_eq!(read, bytes.len() as u64);
        chunks
    }

    fn stream_cut(bytes: &[u8]) -> Vec<Vec<u8>> {
        StreamCDC::new(
            bytes,
            MIN_CHUNK as usize,
            AVG_CHUNK as usize,
            MAX_CHUNK as usize,
        )
        .map(|c| c.unwrap().data)
        .collect()
    }

    #[test]
    fn chunks_are_cut_where_fastcdcs_stream_cutter_cuts_them() {
        // Sizes around the window and chunk limits, and a long run of zeros (cut at the maximum).
        let mut zeros = noise(3 << 20, 7);
        zeros[1 << 20..(1 << 20) + (3 << 18)].fill(0);
        let cases = [
            noise(0, 1),
            noise(1, 1),
            noise(MIN_CHUNK as usize - 1, 2),
            noise(MAX_CHUNK as usize + 1, 3),
            noise(WINDOW - 1, 4),
            noise(WINDOW, 5),
            noise(WINDOW + MAX_CHUNK as usize / 2, 6),
            noise(3 * WINDOW + 12_345, 8),
            zeros,
        ];
        for bytes in &cases {
            let chunks = cut(bytes);
            assert_eq!(chunks, stream_cut(bytes), "{} bytes", bytes.len());
            assert_eq!(chunks.concat(), *bytes);
        }
        assert!(
            cut(&cases[7]).len() > 100,
            "a 12 MB file is cut into many chunks"
        );
    }

    #[test]
    fn an_edit_moves_only_the_chunks_around_it() {
        let before = noise(6 << 20, 9);
        let mut after = before.clone();
        after.splice(5000..5000, *b"a longer tag block");
        let (old, new) = (cut(&before), cut(&after));
        let shared = new.iter().filter(|c| old.contains(c)).count();
        assert!(shared + 2 >= new.len(), "{shared} of {} kept", new.len());
    }
}
