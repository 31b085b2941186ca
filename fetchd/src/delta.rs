//! Delta sync: when a file changes only in its tags, its audio bytes are the same bytes at a
//! shifted offset. For formats whose tags sit in front of the audio (FLAC metadata blocks,
//! ID3v2) and optionally behind it (ID3v1), or beside it (an MP4's `moov` before or after its
//! one `mdat`), the audio region of the old and the new version is
//! found from a few header bytes; if both regions are the same length and samples of the new
//! one (start, middle, end) equal the old bytes, the new version is seeded from the old
//! version's chunks and only the tag block and the region's edge pages are fetched.
//!
//! The samples are a check, not a proof: a new version whose audio differs only between the
//! samples, with the same length, would be seeded with the old audio. Tag editors rewrite the
//! tag block and copy the audio through, which is the case this is for.

use std::io;

/// Bytes compared at each sample point.
pub const SAMPLE: u64 = 16 * 1024;
/// Metadata blocks or tags followed before giving up (a hostile file cannot loop us).
const MAX_BLOCKS: usize = 4096;

/// `[start, end)` of the audio in a file of `size` bytes, read through `read(offset, len)`.
pub fn audio_region(
    size: u64,
    read: &mut dyn FnMut(u64, u64) -> io::Result<Vec<u8>>,
) -> Option<(u64, u64)> {
    let head = read(0, 8).ok()?;
    if head.get(4..8) == Some(b"ftyp") {
        return mp4_media_data(size, read);
    }
    let magic = head.get(..4)?;
    if magic == b"fLaC" {
        let mut at = 4u64;
        for _ in 0..MAX_BLOCKS {
            let header = read(at, 4).ok()?;
            if header.len() < 4 {
                return None;
            }
            let len = u64::from(u32::from_be_bytes([0, header[1], header[2], header[3]]));
            at += 4 + len;
            if header[0] & 0x80 != 0 {
                return (at <= size).then_some((at, size));
            }
        }
        return None;
    }
    if magic.starts_with(b"ID3") {
        let mut at = 0u64;
        for _ in 0..MAX_BLOCKS {
            let header = read(at, 10).ok()?;
            if header.len() < 10 || !header.starts_with(b"ID3") {
                break;
            }
            let syncsafe = header[6..10]
                .iter()
                .fold(0u64, |n, b| (n << 7) | u64::from(b & 0x7f));
            let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
            at += 10 + syncsafe + footer;
        }
        let mut end = size;
        if size >= at + 128 && read(size - 128, 3).ok()? == b"TAG" {
            end -= 128;
        }
        return (at < end).then_some((at, end));
    }
    None
}

/// The content of an MP4's only top-level `mdat` atom (its audio; the tags are in `moov`).
fn mp4_media_data(
    size: u64,
    read: &mut dyn FnMut(u64, u64) -> io::Result<Vec<u8>>,
) -> Option<(u64, u64)> {
    let mut at = 0u64;
    let mut found = None;
    for _ in 0..MAX_BLOCKS {
        if at >= size {
            return found;
        }
        let header = read(at, 16).ok()?;
        let (len, header_len) = match u32::from_be_bytes(bytes(&header, 0)?) {
            0 => (size - at, 8),
            1 => (u64::from_be_bytes(bytes(&header, 8)?), 16),
            len => (u64::from(len), 8),
        };
        if len < header_len || len > size - at {
            return None;
        }
        if header.get(4..8)? == b"mdat" {
            if found.is_some() {
                return None; // several media data atoms: not a layout this knows
            }
            found = Some((at + header_len, at + len));
        }
        at += len;
    }
    None
}

/// The `N` bytes of `data` from `at`.
fn bytes<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at + N)?.try_into().ok()
}

/// Where the old audio lands in the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub old_start: u64,
    pub new_start: u64,
    pub len: u64,
}

/// The shift between two versions' audio regions, if they hold the same number of bytes.
pub fn shift(old: (u64, u64), new: (u64, u64)) -> Option<Shift> {
    let len = old.1.checked_sub(old.0)?;
    (len > 0 && new.1.checked_sub(new.0)? == len).then_some(Shift {
        old_start: old.0,
        new_start: new.0,
        len,
    })
}

/// Offsets (relative to the region) and lengths of the samples compared.
pub fn samples(len: u64) -> Vec<(u64, u64)> {
    let n = SAMPLE.min(len);
    let mut out = vec![(0, n), (len / 2 - (len / 2).min(n / 2), n), (len - n, n)];
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> impl FnMut(u64, u64) -> io::Result<Vec<u8>> + '_ {
        move |offset, len| {
            let start = (offset as usize).min(bytes.len());
            let end = (start + len as usize).min(bytes.len());
            Ok(bytes[start..end].to_vec())
        }
    }

    #[test]
    fn flac_audio_starts_after_the_last_metadata_block() {
        let mut f = b"fLaC".to_vec();
        f.extend([0x00, 0, 0, 34]);
        f.extend([0u8; 34]);
        f.extend([0x84, 0, 0, 10]); // last block: vorbis comment, 10 bytes
        f.extend([1u8; 10]);
        let audio_at = f.len() as u64;
        f.extend([0xff; 1000]);
        let size = f.len() as u64;
        assert_eq!(audio_region(size, &mut reader(&f)), Some((audio_at, size)));
    }

    #[test]
    fn mp3_audio_lies_between_id3v2_and_id3v1() {
        let mut f = b"ID3\x04\x00\x00".to_vec();
        f.extend([0, 0, 1, 0]); // syncsafe 128
        f.extend([0u8; 128]);
        f.extend([0xff; 500]);
        f.extend(b"TAG");
        f.extend([0u8; 125]);
        let size = f.len() as u64;
        assert_eq!(audio_region(size, &mut reader(&f)), Some((138, size - 128)));
    }

    fn atom(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&(body.len() as u32 + 8).to_be_bytes()[..], kind, body].concat()
    }

    #[test]
    fn mp4_audio_is_the_media_data_wherever_the_movie_atom_is() {
        let ftyp = atom(b"ftyp", b"M4A \0\0\0\0");
        let moov = atom(b"moov", &[3; 300]);
        let mdat = atom(b"mdat", &[0xAA; 1000]);
        let front = [ftyp.clone(), moov.clone(), mdat.clone()].concat();
        let start = (ftyp.len() + moov.len() + 8) as u64;
        let size = front.len() as u64;
        assert_eq!(audio_region(size, &mut reader(&front)), Some((start, size)));
        let back = [ftyp.clone(), mdat.clone(), moov].concat();
        let start = (ftyp.len() + 8) as u64;
        assert_eq!(
            audio_region(back.len() as u64, &mut reader(&back)),
            Some((start, start + 1000))
        );
        // Two media data atoms, or an atom longer than the file: no region.
        let two = [back.clone(), mdat].concat();
        assert_eq!(audio_region(two.len() as u64, &mut reader(&two)), None);
        let mut long = back;
        long.truncate(long.len() - 1);
        assert_eq!(audio_region(long.len() as u64, &mut reader(&long)), None);
    }

    #[test]
    fn other_formats_and_truncated_headers_give_nothing() {
        assert_eq!(audio_region(4, &mut reader(b"OggS")), None);
        let truncated = b"fLaC\x00\x00\x00\x22";
        assert_eq!(audio_region(8, &mut reader(truncated)), None);
    }

    #[test]
    fn shifts_need_equal_lengths_and_samples_cover_start_middle_end() {
        assert_eq!(
            shift((100, 1100), (300, 1300)),
            Some(Shift {
                old_start: 100,
                new_start: 300,
                len: 1000
            })
        );
        assert_eq!(shift((100, 1100), (300, 1301)), None);
        let s = samples(1 << 20);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], (0, SAMPLE));
        assert_eq!(s[2], ((1 << 20) - SAMPLE, SAMPLE));
        assert_eq!(samples(100), [(0, 100)]);
    }
}
