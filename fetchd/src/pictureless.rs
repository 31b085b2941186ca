//! A file as the tag readers see it during a scan: the same bytes, except that the ID3v2 tag at
//! its start is rebuilt without its pictures (`APIC` frames) when it has any. An MP3's cover
//! sits inside that tag, and lofty and rust-id3 both read a tag whole, so a remote scan used to
//! fetch every embedded cover (often 100 KB to a few MB a track). The walk reads only the frame
//! headers and the other frames; whether a picture was left out is kept for `has_cover`.
//!
//! Tags this does not take apart (ID3v2.2, v2.3 with whole-tag unsynchronisation, an extended
//! header, frames that run past the tag) are passed through untouched.

use std::io::{self, Read, Seek, SeekFrom};

/// Frames followed before giving up (a hostile tag cannot make us walk for ever).
const MAX_FRAMES: usize = 4096;

pub struct Pictureless<R> {
    inner: R,
    /// The rebuilt tag, shown in place of the file's first `replaced` bytes.
    tag: Vec<u8>,
    replaced: u64,
    /// Length of the view.
    len: u64,
    pos: u64,
    skipped: bool,
}

impl<R: Read + Seek> Pictureless<R> {
    /// The view of `inner`; the file itself if its tag has no picture or is not taken apart.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let file_len = inner.seek(SeekFrom::End(0))?;
        let rebuilt = without_pictures(&mut inner, file_len).unwrap_or(None);
        let (tag, replaced) = rebuilt.unwrap_or_default();
        Ok(Self {
            inner,
            len: file_len - replaced + tag.len() as u64,
            skipped: replaced > 0,
            tag,
            replaced,
            pos: 0,
        })
    }

    /// Whether a picture was left out.
    pub fn skipped_pictures(&self) -> bool {
        self.skipped
    }
}

/// The tag at the start of `file` rebuilt without its `APIC` frames, and the length of the
/// original tag; `None` if there is no such frame, or the tag is not one this takes apart.
fn without_pictures(file: &mut impl ReadAt, file_len: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
    let Some(header) = file.exactly(0, 10)? else {
        return Ok(None);
    };
    let (major, flags) = (header[3], header[5]);
    let whole_unsync = major == 3 && flags & 0x80 != 0;
    if &header[..3] != b"ID3" || !(3..=4).contains(&major) || whole_unsync || flags & 0x40 != 0 {
        return Ok(None);
    }
    let body_end = 10 + syncsafe(&header[6..10]);
    let footer = if major == 4 && flags & 0x10 != 0 {
        10
    } else {
        0
    };
    if body_end + footer > file_len {
        return Ok(None);
    }
    let mut frames = Vec::new();
    let mut skipped = false;
    let mut at = 10;
    let mut frames_seen = 0;
    while at + 10 <= body_end {
        let Some(frame) = file.exactly(at, 10)? else {
            return Ok(None);
        };
        if frame[0] == 0 {
            break; // padding
        }
        let size = match major {
            3 => u64::from(u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])),
            _ => syncsafe(&frame[4..8]),
        };
        let end = at + 10 + size;
        let plain = frame[..4]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        frames_seen += 1;
        if !plain || end > body_end || frames_seen > MAX_FRAMES {
            // Not a frame this walk understands (iTunes writes `TST ` and the like): the rest
            // of the tag is kept as it is, for the tag readers to make of it what they can.
            break;
        }
        if &frame[..4] == b"APIC" {
            skipped = true;
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
    if at + 10 <= body_end && file.exactly(at, 1)?.is_some_and(|b| b[0] != 0) {
        match file.exactly(at, (body_end - at) as usize)? {
            Some(rest) => frames.extend_from_slice(&rest),
            None => return Ok(None),
        }
    }
    let size = frames.len();
    let mut tag = vec![b'I', b'D', b'3', major, header[4], flags & !0x10];
    tag.extend((0..4).rev().map(|i| ((size >> (7 * i)) & 0x7f) as u8));
    tag.extend(frames);
    Ok(Some((tag, body_end + footer)))
}

fn syncsafe(b: &[u8]) -> u64 {
    b.iter().fold(0, |n, &b| (n << 7) | u64::from(b & 0x7f))
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
        let n = if self.pos < self.tag.len() as u64 {
            let from = &self.tag[self.pos as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            n
        } else {
            let at = self.pos - self.tag.len() as u64 + self.replaced;
            self.inner.seek(SeekFrom::Start(at))?;
            self.inner.read(buf)?
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

    fn frame(major: u8, id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let size = match major {
            3 => (n as u32).to_be_bytes().to_vec(),
            _ => (0..4)
                .rev()
                .map(|i| ((n >> (7 * i)) & 0x7f) as u8)
                .collect(),
        };
        [&id[..], &size, &[0, 0], body].concat()
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
        for major in [3, 4] {
            let title = frame(major, b"TIT2", b"\x03Omen");
            let artist = frame(major, b"TPE1", b"\x03The Prodigy");
            let picture = frame(major, b"APIC", &vec![0xAB; 300_000]);
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

    #[test]
    fn files_without_pictures_or_with_tags_not_taken_apart_are_untouched() {
        let title = frame(4, b"TIT2", b"\x03Omen");
        let picture = frame(3, b"APIC", &[1; 64]);
        let plain = [tag(4, 0, std::slice::from_ref(&title), 10), vec![9; 50]].concat();
        let unsynchronised = [tag(3, 0x80, std::slice::from_ref(&picture), 0), vec![9; 5]].concat();
        let mut too_long = tag(3, 0, &[picture], 0);
        too_long.truncate(40);
        for file in [
            plain,
            unsynchronised,
            too_long,
            b"fLaC....".to_vec(),
            Vec::new(),
        ] {
            assert_eq!(view(&file), (file.clone(), false));
        }
    }
}
