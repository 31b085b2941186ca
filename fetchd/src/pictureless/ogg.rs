//! Ogg Vorbis and Opus keep covers in their comment packet, as `METADATA_BLOCK_PICTURE` (or the
//! older `COVERART`) comments: base64 text, a third larger than the picture, that lofty reads
//! whole with the packet. The view keeps every page where it is and the file's length: each
//! such comment's key is shown as `XX…X=` (a key lofty keeps as an item nobody asks for, so the
//! value is never decoded) and its value as zeros, never read. Finding them reads the headers
//! of the pages the comment packet spans and the start of each comment, none of a cover.

use std::io;

use super::{le32, ReadAt, Segment, MAX_FRAMES};

/// Pages followed to the end of the comment packet before giving up.
const MAX_PAGES: usize = 4096;
/// The comment keys whose values are covers, with their `=`.
const COVER_KEYS: [&[u8]; 2] = [b"METADATA_BLOCK_PICTURE=", b"COVERART="];

/// Where the bytes of one packet are in the file: `(file offset, length)` pieces, in order.
#[derive(Debug, Default)]
struct Packet {
    pieces: Vec<(u64, u64)>,
    len: u64,
}

impl Packet {
    fn push(&mut self, at: u64, len: u64) {
        match self.pieces.last_mut() {
            Some((start, n)) if *start + *n == at => *n += len,
            _ => self.pieces.push((at, len)),
        }
        self.len += len;
    }

    /// The file ranges that hold the packet's bytes `[from, from + len)`.
    fn ranges(&self, from: u64, len: u64) -> Vec<(u64, u64)> {
        let (mut from, end) = (from, from + len);
        let mut out = Vec::new();
        let mut piece_start = 0;
        for &(at, n) in &self.pieces {
            let piece_end = piece_start + n;
            if from < end && from < piece_end {
                let take = end.min(piece_end) - from;
                out.push((at + (from - piece_start), take));
                from += take;
            }
            piece_start = piece_end;
        }
        out
    }

    /// The packet's bytes `[from, from + len)`; `None` if it is shorter.
    fn read(&self, file: &mut impl ReadAt, from: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
        if from.checked_add(len).is_none_or(|end| end > self.len) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(len as usize);
        for (at, n) in self.ranges(from, len) {
            let Some(bytes) = file.exactly(at, n as usize)? else {
                return Ok(None);
            };
            out.extend(bytes);
        }
        Ok(Some(out))
    }

    fn u32_at(&self, file: &mut impl ReadAt, from: u64) -> io::Result<Option<u64>> {
        let bytes = self.read(file, from, 4)?;
        Ok(bytes.map(|b| u64::from(le32(&b))))
    }
}

/// The file with the covers in its comment packet left out; `None` if it is not an Ogg Vorbis
/// or Opus file with such a comment, or not one this follows (several streams interleaved).
pub(super) fn ogg_without_pictures(
    file: &mut impl ReadAt,
    file_len: u64,
) -> io::Result<Option<Vec<Segment>>> {
    if file.exactly(0, 4)?.is_none_or(|magic| magic != b"OggS") {
        return Ok(None);
    }
    let Some(packet) = comment_packet(file, file_len)? else {
        return Ok(None);
    };
    let signature = match packet.read(file, 0, 8)? {
        Some(s) if s == b"OpusTags" => 8,
        Some(s) if &s[..7] == b"\x03vorbis" => 7,
        _ => return Ok(None),
    };
    let Some(vendor) = packet.u32_at(file, signature)? else {
        return Ok(None);
    };
    let at = signature + 4 + vendor;
    let Some(count) = packet.u32_at(file, at)? else {
        return Ok(None);
    };
    // (key, value) of each cover comment, as (packet offset, length).
    let mut covers = Vec::new();
    let mut at = at + 4;
    for _ in 0..count.min(MAX_FRAMES as u64) {
        let Some(len) = packet.u32_at(file, at)? else {
            return Ok(None);
        };
        let start = at + 4;
        let Some(head) = packet.read(file, start, len.min(COVER_KEYS[0].len() as u64))? else {
            return Ok(None);
        };
        let key = COVER_KEYS
            .iter()
            .find(|key| head.len() >= key.len() && head[..key.len()].eq_ignore_ascii_case(key));
        if let Some(key) = key {
            let key_len = key.len() as u64;
            covers.push(((start, key_len), (start + key_len, len - key_len)));
        }
        at = start + len;
    }
    if covers.is_empty() {
        return Ok(None);
    }
    let mut shown: Vec<(u64, Segment)> = Vec::new();
    for ((key_at, key_len), (value_at, value_len)) in covers {
        let mut key = vec![b'X'; key_len as usize - 1];
        key.push(b'=');
        let mut used = 0;
        for (at, n) in packet.ranges(key_at, key_len) {
            shown.push((at, Segment::Bytes(key[used..used + n as usize].to_vec())));
            used += n as usize;
        }
        shown.extend(
            (packet.ranges(value_at, value_len).into_iter()).map(|(at, n)| (at, Segment::Zeros(n))),
        );
    }
    shown.sort_by_key(|(at, _)| *at);
    let mut segments = Vec::new();
    let mut at = 0;
    for (start, segment) in shown {
        if start > at {
            segments.push(Segment::File {
                at,
                len: start - at,
            });
        }
        at = start + segment.len();
        segments.push(segment);
    }
    segments.push(Segment::File {
        at,
        len: file_len.saturating_sub(at),
    });
    Ok(Some(segments))
}

/// The second packet of the file's stream (Vorbis's and Opus's comment packet), found from the
/// page headers; `None` if the pages end first, or another stream's pages come between.
fn comment_packet(file: &mut impl ReadAt, file_len: u64) -> io::Result<Option<Packet>> {
    let (mut at, mut packet_index) = (0, 0);
    let mut packet = Packet::default();
    let mut stream = None;
    for _ in 0..MAX_PAGES {
        let Some(header) = file.exactly(at, 27)? else {
            return Ok(None);
        };
        let serial = [header[14], header[15], header[16], header[17]];
        if &header[..4] != b"OggS" || header[4] != 0 || stream.is_some_and(|s| s != serial) {
            return Ok(None);
        }
        stream = Some(serial);
        let Some(lacing) = file.exactly(at + 27, usize::from(header[26]))? else {
            return Ok(None);
        };
        let mut body = at + 27 + lacing.len() as u64;
        for lace in lacing {
            let lace = u64::from(lace);
            if packet_index == 1 && lace > 0 {
                packet.push(body, lace);
            }
            body += lace;
            if lace < 255 {
                packet_index += 1;
                if packet_index == 2 {
                    return Ok(Some(packet));
                }
            }
        }
        if body >= file_len {
            return Ok(None);
        }
        at = body;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read, Seek, SeekFrom};
    use std::ops::Range;

    use super::super::Pictureless;

    /// An Ogg stream of `packets`: the first alone on its page, the others laced onto pages of
    /// at most `laces` segments (CRCs left zero: nothing here checks them).
    fn ogg(packets: &[Vec<u8>], laces: usize) -> Vec<u8> {
        let lacing = |packet: &[u8]| {
            let mut out = vec![255u8; packet.len() / 255];
            out.push((packet.len() % 255) as u8);
            out
        };
        let mut pages: Vec<(Vec<u8>, Vec<u8>)> = vec![(lacing(&packets[0]), packets[0].clone())];
        let (mut segs, mut body) = (Vec::new(), Vec::new());
        for packet in &packets[1..] {
            let mut at = 0;
            for lace in lacing(packet) {
                if segs.len() == laces {
                    pages.push((std::mem::take(&mut segs), std::mem::take(&mut body)));
                }
                segs.push(lace);
                body.extend(&packet[at..at + usize::from(lace)]);
                at += usize::from(lace);
            }
        }
        pages.push((segs, body));
        let mut out = Vec::new();
        for (seq, (segs, body)) in pages.into_iter().enumerate() {
            out.extend(b"OggS\0\0");
            out.extend([0u8; 8]); // granule position
            out.extend(7u32.to_le_bytes()); // stream serial
            out.extend((seq as u32).to_le_bytes());
            out.extend([0u8; 4]); // CRC
            out.push(segs.len() as u8);
            out.extend(segs);
            out.extend(body);
        }
        out
    }

    fn comments(signature: &[u8], comments: &[&[u8]]) -> Vec<u8> {
        let mut out = signature.to_vec();
        out.extend(6u32.to_le_bytes());
        out.extend(b"vendor");
        out.extend((comments.len() as u32).to_le_bytes());
        for c in comments {
            out.extend((c.len() as u32).to_le_bytes());
            out.extend(*c);
        }
        out
    }

    /// A reader that notes whether any read took in a cover byte (`Q`) within `forbidden`.
    struct Watched {
        inner: Cursor<Vec<u8>>,
        forbidden: Range<u64>,
        touched: std::rc::Rc<std::cell::Cell<bool>>,
    }

    impl Read for Watched {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.inner.position();
            let n = self.inner.read(buf)?;
            let cover_byte = (at..)
                .zip(&buf[..n])
                .any(|(i, &b)| b == b'Q' && self.forbidden.contains(&i));
            self.touched.set(self.touched.get() | cover_byte);
            Ok(n)
        }
    }

    impl Seek for Watched {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(to)
        }
    }

    /// The view of `file`, whether it left a cover out, and whether reading it (the view made
    /// and read whole) touched `forbidden`.
    fn view(file: &[u8], forbidden: Range<u64>) -> (Vec<u8>, bool, bool) {
        let touched = std::rc::Rc::default();
        let watched = Watched {
            inner: Cursor::new(file.to_vec()),
            forbidden,
            touched: std::rc::Rc::clone(&touched),
        };
        let mut view = Pictureless::new(watched).unwrap();
        let mut out = Vec::new();
        view.read_to_end(&mut out).unwrap();
        (out, view.skipped_pictures(), touched.get())
    }

    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    }

    #[test]
    fn a_vorbis_cover_spanning_pages_is_renamed_and_never_read() {
        let cover = [b"METADATA_BLOCK_PICTURE=".as_slice(), &[b'Q'; 20_000]].concat();
        let packets = [
            b"\x01vorbis-id".to_vec(),
            comments(b"\x03vorbis", &[b"TITLE=Omen", &cover, b"ARTIST=Someone"]),
            b"\x05vorbis-setup".to_vec(),
            vec![9; 3000],
        ];
        let file = ogg(&packets, 16);
        let key_at = find(&file, b"METADATA_BLOCK_PICTURE=");
        let last_q = file.iter().rposition(|&b| b == b'Q').unwrap();
        let (seen, skipped, touched) = view(&file, key_at as u64 + 23..last_q as u64 + 1);
        assert!(skipped);
        assert!(!touched, "a cover byte was read");
        assert_eq!(seen.len(), file.len());
        assert_eq!(&seen[key_at..key_at + 23], b"XXXXXXXXXXXXXXXXXXXXXX=");
        // Every byte of the cover is a zero now; every other byte (page headers within the
        // cover included) is the file's.
        for (i, (&was, &is)) in file.iter().zip(&seen).enumerate() {
            match (i < key_at || i > last_q, was) {
                (true, _) => assert_eq!(was, is, "byte {i}"),
                (false, b'Q') => assert_eq!(is, 0, "byte {i}"),
                (false, _) if i >= key_at + 23 => assert_eq!(was, is, "page header byte {i}"),
                _ => {}
            }
        }
        assert!(find(&seen, b"ARTIST=Someone") > last_q);
    }

    #[test]
    fn an_opus_coverart_comment_is_left_out_too() {
        let cover = [b"coverart=".as_slice(), &[b'Q'; 700]].concat();
        let packets = [
            b"OpusHead-id".to_vec(),
            comments(b"OpusTags", &[&cover, b"TITLE=Omen"]),
            vec![9; 100],
        ];
        let file = ogg(&packets, 255);
        let key_at = find(&file, b"coverart=");
        // The first 23 bytes of each comment are read, to know its key.
        let (seen, skipped, touched) = view(&file, key_at as u64 + 23..key_at as u64 + 709);
        assert!(skipped && !touched);
        assert_eq!(&seen[key_at..key_at + 9], b"XXXXXXXX=");
        assert!(seen[key_at + 9..key_at + 709].iter().all(|&b| b == 0));
        assert_eq!(seen[key_at + 709..], file[key_at + 709..]);
    }

    #[test]
    fn damaged_files_give_a_view_or_the_file_never_a_panic() {
        let cover = [b"METADATA_BLOCK_PICTURE=".as_slice(), &[b'Q'; 3000]].concat();
        let packets = [
            b"\x01vorbis-id".to_vec(),
            comments(b"\x03vorbis", &[b"TITLE=Omen", &cover]),
            vec![9; 300],
        ];
        let file = ogg(&packets, 4);
        let mut noise = 7u64;
        for cut in (0..file.len()).step_by(7) {
            let (seen, _, _) = view(&file[..cut], 0..0);
            assert_eq!(seen.len(), cut);
        }
        for _ in 0..2000 {
            noise = noise
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut damaged = file.clone();
            let at = (noise >> 33) as usize % damaged.len();
            damaged[at] = (noise >> 13) as u8;
            let (seen, _, _) = view(&damaged, 0..0);
            assert_eq!(seen.len(), damaged.len());
        }
    }

    #[test]
    fn ogg_files_without_covers_or_not_followed_are_untouched() {
        let plain = ogg(
            &[
                b"\x01vorbis-id".to_vec(),
                comments(b"\x03vorbis", &[b"TITLE=Omen"]),
                vec![9; 10],
            ],
            255,
        );
        let flac = ogg(
            &[
                b"\x7fFLAC-id".to_vec(),
                comments(b"\x84\0\0\0", &[b"METADATA_BLOCK_PICTURE=QQ"]),
                vec![9; 10],
            ],
            255,
        );
        // A comment count far beyond the packet.
        let mut lying = comments(b"\x03vorbis", &[b"METADATA_BLOCK_PICTURE=QQ"]);
        lying[7 + 4 + 6..7 + 4 + 6 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let lying = ogg(&[b"\x01vorbis-id".to_vec(), lying, vec![9; 10]], 255);
        let mut cut = ogg(
            &[
                b"\x01vorbis-id".to_vec(),
                comments(b"\x03vorbis", &[&[b'Q'; 3000]]),
                vec![9; 10],
            ],
            4,
        );
        cut.truncate(cut.len() / 2);
        for file in [plain, flac, lying, cut] {
            let (seen, skipped, _) = view(&file, 0..0);
            assert_eq!((seen, skipped), (file, false));
        }
    }
}
