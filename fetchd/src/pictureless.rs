//! A file as the tag readers see it during a scan: the same file, with its embedded covers left
//! out. lofty and rust-id3 read an ID3v2 tag whole, and lofty an MP4's `ilst` whole, covers
//! included, so a remote scan used to fetch every embedded cover (often 100 KB to a few MB a
//! track). Only the headers around a cover are read to find it; whether one was left out is
//! kept for `has_cover`.
//! - An ID3v2.2/2.3/2.4 tag at the start of the file is shown rebuilt without its `PIC`/`APIC`
//!   frames (and without an extended header, whose CRC would no longer hold). Tags this does
//!   not take apart (v2.2/v2.3 with whole-tag unsynchronisation, v2.2 compression) pass
//!   through untouched; a frame the walk does not understand is kept with all after it.
//! - An MP4's `moov.udta.meta.ilst.covr` atoms are shown as `free` atoms of the same size, full
//!   of zeros that are never read from the origin (nothing moves, so no offset changes).
//! - An Ogg Vorbis or Opus file's cover comments are shown renamed, their values as zeros
//!   ([`ogg`]; nothing moves either), and so are the cover items of an APEv2 tag at the end of
//!   a file ([`ape`]), also behind a leading ID3v2 tag (an MP3 with covers in both its tags).
//!
//! (A FLAC's PICTURE blocks need none of this: lofty seeks past them, see `tags.rs` and
//! `covers.rs`.)

use std::io::{self, Read, Seek, SeekFrom};

mod ape;
mod ogg;

/// Frames or atoms followed in one tag or atom before giving up (a hostile file cannot make us
/// walk for ever).
const MAX_FRAMES: usize = 4096;
/// The most of a tag kept in memory (lofty's own limit for one allocation): a larger one is
/// passed through, for the tag readers' limits to deal with.
const MAX_KEPT: u64 = 16 << 20;

/// A stretch of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `len` bytes of the file from `at`.
    File {
        at: u64,
        len: u64,
    },
    Bytes(Vec<u8>),
    Zeros(u64),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::File { len, .. } | Segment::Zeros(len) => *len,
            Segment::Bytes(bytes) => bytes.len() as u64,
        }
    }
}

pub struct Pictureless<R> {
    inner: R,
    /// The view, in order, each with where it starts in the view.
    segments: Vec<(u64, Segment)>,
    len: u64,
    pos: u64,
    skipped: bool,
}

impl<R: Read + Seek> Pictureless<R> {
    /// The view of `inner`; the file itself if it has no cover this can leave out.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let file_len = inner.seek(SeekFrom::End(0))?;
        let whole = || {
            vec![Segment::File {
                at: 0,
                len: file_len,
            }]
        };
        let found = match id3v2_without_pictures(&mut inner, file_len) {
            // An MP3 may keep a cover in an APEv2 tag at its end too.
            Ok(Some(head)) => match ape::ape_without_pictures(&mut inner, file_len) {
                Ok(Some(tail)) => Ok(Some(within(head, &tail))),
                _ => Ok(Some(head)),
            },
            Ok(None) => match mp4_without_covers(&mut inner, file_len) {
                Ok(None) => match ogg::ogg_without_pictures(&mut inner, file_len) {
                    Ok(None) => ape::ape_without_pictures(&mut inner, file_len),
                    other => other,
                },
                other => other,
            },
            Err(e) => Err(e),
        };
        let (segments, skipped) = match found {
            Ok(Some(segments)) => (segments, true),
            _ => (whole(), false),
        };
        let mut at = 0;
        let segments = segments
            .into_iter()
            .filter(|s| s.len() > 0)
            .map(|s| {
                let start = at;
                at += s.len();
                (start, s)
            })
            .collect();
        Ok(Self {
            inner,
            segments,
            len: at,
            pos: 0,
            skipped,
        })
    }

    /// Whether a cover was left out.
    pub fn skipped_pictures(&self) -> bool {
        self.skipped
    }
}

/// `outer` with each stretch of the file it shows as `inner` shows it (`inner` keeps the
/// file's length, so its positions are the file's).
fn within(outer: Vec<Segment>, inner: &[Segment]) -> Vec<Segment> {
    let mut out = Vec::new();
    for segment in outer {
        let Segment::File { at: from, len } = segment else {
            out.push(segment);
            continue;
        };
        let to = from + len;
        let mut start = 0;
        for piece in inner {
            let end = start + piece.len();
            let (a, b) = (start.max(from), end.min(to));
            if a < b {
                out.push(match piece {
                    Segment::File { at, .. } => Segment::File {
                        at: at + (a - start),
                        len: b - a,
                    },
                    Segment::Bytes(bytes) => {
                        Segment::Bytes(bytes[(a - start) as usize..(b - start) as usize].to_vec())
                    }
                    Segment::Zeros(_) => Segment::Zeros(b - a),
                });
            }
            start = end;
        }
    }
    out
}

/// The file with the ID3v2 tag at its start rebuilt without its `APIC` (v2.2: `PIC`) frames;
/// `None` if there is no such frame, or the tag is not one this takes apart.
fn id3v2_without_pictures(
    file: &mut impl ReadAt,
    file_len: u64,
) -> io::Result<Option<Vec<Segment>>> {
    let Some(header) = file.exactly(0, 10)? else {
        return Ok(None);
    };
    let (major, flags) = (header[3], header[5]);
    let whole_unsync = major <= 3 && flags & 0x80 != 0;
    // v2.2's 0x40 is compression (which nothing writes); v2.3's and v2.4's an extended header.
    let compressed = major == 2 && flags & 0x40 != 0;
    if &header[..3] != b"ID3" || !(2..=4).contains(&major) || whole_unsync || compressed {
        return Ok(None);
    }
    // v2.2 frames: a 3-letter id and a 3-byte size; later: 4 letters, 4 bytes, 2 of flags.
    let (frame_header, id_len, picture) = match major {
        2 => (6, 3, &b"PIC"[..]),
        _ => (10, 4, &b"APIC"[..]),
    };
    let body_end = 10 + syncsafe(&header[6..10]);
    let footer = if major == 4 && flags & 0x10 != 0 {
        10
    } else {
        0
    };
    if body_end + footer > file_len {
        return Ok(None);
    }
    // An extended header (a CRC of the frames, which leaving some out would break; v2.4's
    // restrictions) is left out of the rebuilt tag. v2.3 gives its size without its own 4
    // bytes, v2.4 with them, as a syncsafe number.
    let mut at = 10;
    if major >= 3 && flags & 0x40 != 0 {
        let Some(size) = file.exactly(10, 4)? else {
            return Ok(None);
        };
        at += match major {
            3 => 4 + u64::from(u32::from_be_bytes([size[0], size[1], size[2], size[3]])),
            _ => syncsafe(&size),
        };
        if at > body_end {
            return Ok(None);
        }
    }
    let mut frames = Vec::new();
    let mut skipped = false;
    let mut frames_seen = 0;
    while at + frame_header <= body_end {
        let Some(frame) = file.exactly(at, frame_header as usize)? else {
            return Ok(None);
        };
        if frame[0] == 0 {
            break; // padding
        }
        let size = match major {
            2 => u64::from(u32::from_be_bytes([0, frame[3], frame[4], frame[5]])),
            3 => u64::from(u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])),
            _ => syncsafe(&frame[4..8]),
        };
        let end = at + frame_header + size;
        let plain = frame[..id_len]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        frames_seen += 1;
        if !plain || end > body_end || frames_seen > MAX_FRAMES {
            // Not a frame this walk understands (iTunes writes `TST ` and the like): the rest
            // of the tag is kept as it is, for the tag readers to make of it what they can.
            break;
        }
        if &frame[..id_len] == picture {
            skipped = true;
        } else if frames.len() as u64 + (end - at) > MAX_KEPT {
            return Ok(None);
        } else {
            match file.exactly(at, (end - at) as usize)? {
                Some(bytes) => frames.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
        at = end;
    }
    if !skipped {
        return Ok(None);
    }
    if at + frame_header <= body_end && file.exactly(at, 1)?.is_some_and(|b| b[0] != 0) {
        if frames.len() as u64 + (body_end - at) > MAX_KEPT {
            return Ok(None);
        }
        match file.exactly(at, (body_end - at) as usize)? {
            Some(rest) => frames.extend_from_slice(&rest),
            None => return Ok(None),
        }
    }
    let size = frames.len();
    let mut tag = vec![b'I', b'D', b'3', major, header[4], flags & !0x50];
    tag.extend((0..4).rev().map(|i| ((size >> (7 * i)) & 0x7f) as u8));
    tag.extend(frames);
    let replaced = body_end + footer;
    Ok(Some(vec![
        Segment::Bytes(tag),
        Segment::File {
            at: replaced,
            len: file_len - replaced,
        },
    ]))
}

/// The file with each cover atom of an MP4 (`moov.udta.meta.ilst.covr`) shown as a `free` atom
/// of zeros; `None` if it has none (or is no MP4).
fn mp4_without_covers(file: &mut impl ReadAt, file_len: u64) -> io::Result<Option<Vec<Segment>>> {
    if file.exactly(4, 4)?.is_none_or(|kind| kind != b"ftyp") {
        return Ok(None);
    }
    let top = atoms(file, 0, file_len)?;
    let mut covers = Vec::new();
    for moov in top.iter().filter(|a| &a.kind == b"moov") {
        for udta in children(file, moov, b"udta")? {
            for meta in children(file, &udta, b"meta")? {
                // A full `meta` atom has 4 bytes of version and flags before its children.
                let full = file
                    .exactly(meta.content + 4, 4)?
                    .is_some_and(|next| !matches!(&next[..], b"hdlr" | b"ilst" | b"mhdr"));
                let meta = Atom {
                    content: meta.content + if full { 4 } else { 0 },
                    ..meta
                };
                for ilst in children(file, &meta, b"ilst")? {
                    covers.extend(children(file, &ilst, b"covr")?);
                }
            }
        }
    }
    if covers.is_empty() {
        return Ok(None);
    }
    let mut segments = Vec::new();
    let mut at = 0;
    for cover in covers {
        segments.push(Segment::File {
            at,
            len: cover.start - at,
        });
        let header = cover.content - cover.start;
        let Some(mut renamed) = file.exactly(cover.start, header as usize)? else {
            return Ok(None);
        };
        renamed[4..8].copy_from_slice(b"free");
        segments.push(Segment::Bytes(renamed));
        segments.push(Segment::Zeros(cover.end - cover.content));
        at = cover.end;
    }
    segments.push(Segment::File {
        at,
        len: file_len - at,
    });
    Ok(Some(segments))
}

/// An MP4 atom: where it starts, where its content starts (after the header) and ends.
#[derive(Debug, Clone, Copy)]
struct Atom {
    kind: [u8; 4],
    start: u64,
    content: u64,
    end: u64,
}

/// The atoms in `[start, end)`, from their headers; the walk stops at one that does not fit.
fn atoms(file: &mut impl ReadAt, start: u64, end: u64) -> io::Result<Vec<Atom>> {
    let mut out = Vec::new();
    let mut at = start;
    while at + 8 <= end && out.len() < MAX_FRAMES {
        let Some(header) = file.exactly(at, 8)? else {
            break;
        };
        let kind = [header[4], header[5], header[6], header[7]];
        let (len, header_len) =
            match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
                0 => (end - at, 8),
                1 => match file.exactly(at + 8, 8)? {
                    Some(wide) => (u64::from_be_bytes(wide.try_into().unwrap_or_default()), 16),
                    None => break,
                },
                len => (u64::from(len), 8),
            };
        if len < header_len || len > end - at {
            break;
        }
        out.push(Atom {
            kind,
            start: at,
            content: at + header_len,
            end: at + len,
        });
        at += len;
    }
    Ok(out)
}

/// The children of `parent` of the given kind.
fn children(file: &mut impl ReadAt, parent: &Atom, kind: &[u8; 4]) -> io::Result<Vec<Atom>> {
    let all = atoms(file, parent.content, parent.end)?;
    Ok(all.into_iter().filter(|a| &a.kind == kind).collect())
}

/// An ID3v2 syncsafe integer: 7 bits a byte, most significant first.
pub(crate) fn syncsafe(b: &[u8]) -> u64 {
    b.iter().fold(0, |n, &b| (n << 7) | u64::from(b & 0x7f))
}

/// A little-endian `u32` from the first 4 bytes of `b` (Ogg comment and APEv2 item lengths).
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Positioned reads of exactly `len` bytes (`None` past the end).
trait ReadAt {
    fn exactly(&mut self, at: u64, len: usize) -> io::Result<Option<Vec<u8>>>;
}

impl<R: Read + Seek> ReadAt for R {
    fn exactly(&mut self, at: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        self.seek(SeekFrom::Start(at))?;
        let mut buf = vec![0; len];
        match self.read_exact(&mut buf) {
            Ok(()) => Ok(Some(buf)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<R: Read + Seek> Read for Pictureless<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let index = self
            .segments
            .partition_point(|(start, _)| *start <= self.pos);
        let Some((start, segment)) = index.checked_sub(1).and_then(|i| self.segments.get(i)) else {
            return Ok(0);
        };
        let into = self.pos - start;
        let want = (segment.len() - into).min(buf.len() as u64) as usize;
        let n = match segment {
            Segment::File { at, .. } => {
                self.inner.seek(SeekFrom::Start(at + into))?;
                self.inner.read(&mut buf[..want])?
            }
            Segment::Bytes(bytes) => {
                buf[..want].copy_from_slice(&bytes[into as usize..into as usize + want]);
                want
            }
            Segment::Zeros(_) => {
                buf[..want].fill(0);
                want
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Pictureless<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn frame(major: u8, id: &[u8], body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let size = match major {
            2 => (n as u32).to_be_bytes()[1..].to_vec(),
            3 => (n as u32).to_be_bytes().to_vec(),
            _ => (0..4)
                .rev()
                .map(|i| ((n >> (7 * i)) & 0x7f) as u8)
                .collect(),
        };
        let flags: &[u8] = if major == 2 { &[] } else { &[0, 0] };
        [id, &size, flags, body].concat()
    }

    fn tag(major: u8, flags: u8, frames: &[Vec<u8>], padding: usize) -> Vec<u8> {
        let body: Vec<u8> = frames
            .concat()
            .into_iter()
            .chain(vec![0; padding])
            .collect();
        let n = body.len();
        let mut out = vec![b'I', b'D', b'3', major, 0, flags];
        out.extend((0..4).rev().map(|i| ((n >> (7 * i)) & 0x7f) as u8));
        out.extend(body);
        out
    }

    fn view(file: &[u8]) -> (Vec<u8>, bool) {
        let mut view = Pictureless::new(Cursor::new(file.to_vec())).unwrap();
        let mut out = Vec::new();
        view.read_to_end(&mut out).unwrap();
        assert_eq!(view.seek(SeekFrom::End(0)).unwrap(), out.len() as u64);
        (out, view.skipped_pictures())
    }

    #[test]
    fn pictures_are_left_out_of_the_tag_and_the_rest_is_the_file() {
        let ids = [
            (2, &b"TT2"[..], &b"TP1"[..], &b"PIC"[..]),
            (3, b"TIT2", b"TPE1", b"APIC"),
            (4, b"TIT2", b"TPE1", b"APIC"),
        ];
        for (major, title, artist, picture) in ids {
            let title = frame(major, title, b"\x03Omen");
            let artist = frame(major, artist, b"\x03The Prodigy");
            let picture = frame(major, picture, &vec![0xAB; 300_000]);
            let audio = vec![0xFF, 0xFB, 0x90, 0x64, 1, 2, 3, 4];
            let file = [
                tag(major, 0, &[title.clone(), picture, artist.clone()], 100),
                audio.clone(),
            ]
            .concat();
            let (seen, skipped) = view(&file);
            assert!(skipped);
            let expected = [tag(major, 0, &[title.clone(), artist.clone()], 0), audio].concat();
            assert_eq!(seen, expected, "ID3v2.{major}");
            // Reads from any position agree with that picture of the file.
            let mut view = Pictureless::new(Cursor::new(file)).unwrap();
            view.seek(SeekFrom::Start(12)).unwrap();
            let mut some = [0u8; 20];
            view.read_exact(&mut some).unwrap();
            assert_eq!(some, expected[12..32]);
            view.seek(SeekFrom::End(-3)).unwrap();
            let mut end = Vec::new();
            view.read_to_end(&mut end).unwrap();
            assert_eq!(end, [2, 3, 4]);
            // Past the end, as a file is.
            view.seek(SeekFrom::End(10)).unwrap();
            assert_eq!(view.read(&mut some).unwrap(), 0);
        }
    }

    #[test]
    fn a_frame_the_walk_does_not_understand_is_kept_with_all_after_it() {
        let title = frame(3, b"TIT2", b"\x03Omen");
        let picture = frame(3, b"APIC", &[7; 5000]);
        let odd = frame(3, b"TST ", b"\x00x");
        let artist = frame(3, b"TPE1", b"\x03The Prodigy");
        let file = [
            tag(
                3,
                0,
                &[title.clone(), picture, odd.clone(), artist.clone()],
                0,
            ),
            vec![0xFF, 0xFB],
        ]
        .concat();
        let expected = [tag(3, 0, &[title, odd, artist], 0), vec![0xFF, 0xFB]].concat();
        assert_eq!(view(&file), (expected, true));
    }

    fn atom(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&(body.len() as u32 + 8).to_be_bytes()[..], kind, body].concat()
    }

    /// An MP4 with a title and, if `cover`, a cover of that many bytes in its `ilst`.
    fn mp4(cover: Option<usize>) -> Vec<u8> {
        let title = atom(b"\xa9nam", &atom(b"data", b"\0\0\0\x01\0\0\0\0Omen"));
        let mut ilst = title;
        if let Some(n) = cover {
            ilst.extend(atom(b"covr", &atom(b"data", &vec![0xAB; n])));
            ilst.extend(atom(
                b"\xa9ART",
                &atom(b"data", b"\0\0\0\x01\0\0\0\0Prodigy"),
            ));
        }
        let meta = [
            &[0u8; 4][..],
            &atom(b"hdlr", &[0; 25]),
            &atom(b"ilst", &ilst),
        ]
        .concat();
        let moov = [
            atom(b"mvhd", &[0; 100]),
            atom(b"udta", &atom(b"meta", &meta)),
        ]
        .concat();
        [
            atom(b"ftyp", b"M4A \0\0\0\0"),
            atom(b"moov", &moov),
            atom(b"mdat", &[1; 64]),
        ]
        .concat()
    }

    #[test]
    fn an_mp4_cover_is_shown_as_free_space_of_zeros() {
        let file = mp4(Some(5000));
        let (seen, skipped) = view(&file);
        assert!(skipped);
        assert_eq!(seen.len(), file.len());
        let covr = file.windows(4).position(|w| w == b"covr").unwrap();
        let end = covr - 4 + 8 + 8 + 5000;
        assert_eq!(seen[..covr], file[..covr]);
        assert_eq!(&seen[covr..covr + 4], b"free");
        assert!(seen[covr + 4..end].iter().all(|&b| b == 0));
        assert_eq!(seen[end..], file[end..]);
        // Without a cover, the file is itself.
        let plain = mp4(None);
        assert_eq!(view(&plain), (plain.clone(), false));
    }

    #[test]
    fn an_extended_header_is_left_out_with_the_pictures() {
        let title = frame(3, b"TIT2", b"\x03Omen");
        let picture = frame(3, b"APIC", &[1; 64]);
        // v2.3: size 6 (without itself), flags, padding size; v2.4: syncsafe 6 (with
        // itself), one flag byte, no flags set.
        for (major, extended) in [
            (3, &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0][..]),
            (4, &[0, 0, 0, 6, 1, 0]),
        ] {
            let frames = [extended.to_vec(), picture.clone(), title.clone()];
            let file = [tag(major, 0x40, &frames, 20), vec![9; 50]].concat();
            let (seen, skipped) = view(&file);
            assert!(skipped, "v2.{major}");
            let rebuilt = tag(major, 0, std::slice::from_ref(&title), 0);
            assert_eq!(seen, [rebuilt, vec![9; 50]].concat(), "v2.{major}");
        }
        // One whose size runs past the tag is passed through.
        let bogus = [tag(3, 0x40, &[vec![0, 0, 0x7f, 0], picture], 0), vec![9; 5]].concat();
        assert_eq!(view(&bogus), (bogus.clone(), false));
    }

    #[test]
    fn files_without_pictures_or_with_tags_not_taken_apart_are_untouched() {
        let title = frame(4, b"TIT2", b"\x03Omen");
        let picture = frame(3, b"APIC", &[1; 64]);
        let plain = [tag(4, 0, std::slice::from_ref(&title), 10), vec![9; 50]].concat();
        let unsynchronised = [tag(3, 0x80, std::slice::from_ref(&picture), 0), vec![9; 5]].concat();
        let pic = frame(2, b"PIC", &[1; 64]);
        let compressed = [tag(2, 0x40, std::slice::from_ref(&pic), 0), vec![9; 5]].concat();
        let mut too_long = tag(3, 0, &[picture], 0);
        too_long.truncate(40);
        let mut huge = atom(b"ftyp", b"M4A \0\0\0\0");
        huge.extend([&1u32.to_be_bytes()[..], b"moov", &u64::MAX.to_be_bytes()].concat());
        // A tag beside its cover bigger than the readers would hold in memory.
        let big_text = frame(4, b"TXXX", &vec![b'x'; (MAX_KEPT + 1) as usize]);
        let picture = frame(4, b"APIC", &[1; 64]);
        let too_big = [tag(4, 0, &[picture, big_text], 0), vec![9; 5]].concat();
        let files = [
            plain,
            unsynchronised,
            compressed,
            too_long,
            huge,
            too_big,
            b"fLaC....".to_vec(),
            Vec::new(),
        ];
        for file in files {
            assert_eq!(view(&file), (file.clone(), false));
        }
    }
}
