//! ID3v2 through rust-id3, beside lofty. Two jobs:
//! - the fallback for files whose tags lofty rejects as a whole because of one bad frame
//!   (odd-length UTF-16, an encrypted frame) or a broken APE tag next to a good ID3v2 tag:
//!   rust-id3 returns the frames it could decode, so such files keep their artist and album;
//! - the first reader of ID3v2 in MP3, AIFF and WAV files: it takes the *first* ID3v2 tag when a
//!   file carries two (as mutagen, ffmpeg and players do), where lofty takes the last.

use std::io::{Cursor, Read, Seek, SeekFrom};

use id3::TagLike;

use crate::track::TrackInfo;

/// The tags rust-id3 can recover from the file's ID3v2 tag (or AIFF/WAV `ID3 ` chunk), if any.
/// A tag at the start of the file is read whole first and its encrypted frames dropped (nobody
/// can decode them, and rust-id3 stops at the first one).
pub fn read<R: Read + Seek>(mut reader: R) -> Option<TrackInfo> {
    let mut header = [0u8; 10];
    let at_start = reader.read_exact(&mut header).is_ok() && &header[..3] == b"ID3";
    reader.seek(SeekFrom::Start(0)).ok()?;
    let result = if at_start {
        let mut tag = vec![0u8; 10 + syncsafe(&header[6..10])];
        let n = read_up_to(&mut reader, &mut tag).ok()?;
        tag.truncate(n);
        let tag = without_encrypted_frames(&tag).unwrap_or(tag);
        id3::Tag::read_from2(Cursor::new(tag))
    } else {
        id3::Tag::read_from2(reader)
    };
    let tag = match result {
        Ok(tag) => tag,
        Err(id3::Error {
            partial_tag: Some(tag),
            ..
        }) => tag,
        Err(_) => return None,
    };
    let list = |values: Option<Vec<&str>>| -> Vec<String> {
        values
            .unwrap_or_default()
            .into_iter()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let text = |id: &str| {
        tag.get(id)
            .and_then(|f| f.content().text())
            .map(str::to_owned)
    };
    let info = TrackInfo {
        artists: list(tag.artists()),
        album_artists: list(tag.album_artist().map(|a| vec![a])),
        album: tag.album().map(str::to_owned),
        title: tag.title().map(str::to_owned),
        track: tag.track(),
        track_total: tag.total_tracks(),
        disc: tag.disc(),
        disc_total: tag.total_discs(),
        date: tag
            .date_recorded()
            .map(|d| d.to_string())
            .or_else(|| tag.year().map(|y| y.to_string())),
        genres: tag
            .genres_parsed()
            .into_iter()
            .map(|g| g.into_owned())
            .collect(),
        composers: text("TCOM").into_iter().collect(),
        has_cover: tag.pictures().next().is_some(),
        ..Default::default()
    };
    let has_any = !info.artists.is_empty() || info.album.is_some() || info.title.is_some();
    has_any.then_some(info)
}

/// Makes the tag fields of `tags` win over those of `info`; `info` keeps its audio properties
/// and still supplies the tag fields `tags` lacks.
pub fn prefer(info: &mut TrackInfo, tags: TrackInfo) {
    let lofty = std::mem::replace(info, tags);
    info.duration_ms = lofty.duration_ms;
    info.sample_rate = lofty.sample_rate;
    info.bitrate_kbps = lofty.bitrate_kbps;
    info.format.clone_from(&lofty.format);
    fill(info, lofty);
}

/// Fills the tag fields `info` lacks from `tags` (audio properties are kept).
pub fn fill(info: &mut TrackInfo, tags: TrackInfo) {
    let fill_vec = |a: &mut Vec<String>, b: Vec<String>| {
        if a.is_empty() {
            *a = b;
        }
    };
    fill_vec(&mut info.artists, tags.artists);
    fill_vec(&mut info.album_artists, tags.album_artists);
    fill_vec(&mut info.genres, tags.genres);
    fill_vec(&mut info.composers, tags.composers);
    info.album = info.album.take().or(tags.album);
    info.title = info.title.take().or(tags.title);
    info.track = info.track.or(tags.track);
    info.track_total = info.track_total.or(tags.track_total);
    info.disc = info.disc.or(tags.disc);
    info.disc_total = info.disc_total.or(tags.disc_total);
    info.date = info.date.take().or(tags.date);
    info.has_cover |= tags.has_cover;
}

fn syncsafe(b: &[u8]) -> usize {
    b.iter()
        .fold(0usize, |acc, byte| (acc << 7) | usize::from(byte & 0x7f))
}

fn big_endian(b: &[u8]) -> usize {
    b.iter()
        .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte))
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Rewrites an ID3v2.3/2.4 tag without its encrypted frames (and without the extended header
/// and tag-level unsynchronisation, which are undone). `None` when the tag is not one this
/// can walk (v2.2, or frames that do not add up); the caller then uses the tag as it is.
fn without_encrypted_frames(tag: &[u8]) -> Option<Vec<u8>> {
    let (major, flags) = (*tag.get(3)?, *tag.get(5)?);
    if !(3..=4).contains(&major) {
        return None;
    }
    let mut body = tag.get(10..)?.to_vec();
    if major == 3 && flags & 0x80 != 0 {
        body = undo_unsynchronisation(&body);
    }
    let mut pos = 0;
    if flags & 0x40 != 0 {
        let size_bytes = body.get(..4)?;
        pos = match major {
            3 => big_endian(size_bytes) + 4,
            _ => syncsafe(size_bytes),
        };
    }
    let frame_size = |b: &[u8]| match major {
        3 => big_endian(b),
        _ => syncsafe(b),
    };
    let mut frames = Vec::new();
    let mut dropped = false;
    while pos + 10 <= body.len() {
        let id = &body[pos..pos + 4];
        if !id
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            break;
        }
        let end = pos + 10 + frame_size(&body[pos + 4..pos + 8]);
        if end > body.len() {
            return None;
        }
        let format_flags = body[pos + 9];
        let encrypted = match major {
            3 => format_flags & 0x40 != 0,
            _ => format_flags & 0x04 != 0,
        };
        if encrypted {
            dropped = true;
        } else {
            frames.extend_from_slice(&body[pos..end]);
        }
        pos = end;
    }
    if !dropped {
        return None;
    }
    let size = frames.len();
    let mut out = vec![b'I', b'D', b'3', major, tag[4], flags & !0xc0];
    out.extend((0..4).rev().map(|i| ((size >> (7 * i)) & 0x7f) as u8));
    out.extend(frames);
    Some(out)
}

/// Undoes ID3v2 unsynchronisation: every `FF 00` becomes `FF`.
fn undo_unsynchronisation(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut after_ff = false;
    for &b in data {
        if !(after_ff && b == 0) {
            out.push(b);
        }
        after_ff = b == 0xff;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: &[u8; 4], flags: [u8; 2], text: &str) -> Vec<u8> {
        let mut body = vec![3u8]; // UTF-8
        body.extend_from_slice(text.as_bytes());
        let mut f = id.to_vec();
        f.extend((0..4).rev().map(|i| ((body.len() >> (7 * i)) & 0x7f) as u8));
        f.extend(flags);
        f.extend(body);
        f
    }

    fn tag(frames: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = frames.concat();
        let mut t = b"ID3\x04\x00\x00".to_vec();
        t.extend((0..4).rev().map(|i| ((body.len() >> (7 * i)) & 0x7f) as u8));
        t.extend(body);
        t
    }

    #[test]
    fn frames_after_an_encrypted_frame_are_kept() {
        let t = tag(&[
            frame(b"TALB", [0, 0], "Album"),
            frame(b"TIT2", [0, 0x04], "secret"),
            frame(b"TPE1", [0, 0], "Artist"),
            frame(b"TRCK", [0, 0], "2/10"),
        ]);
        let info = read(Cursor::new(t)).unwrap();
        assert_eq!(info.album.as_deref(), Some("Album"));
        assert_eq!(info.artists, ["Artist"]);
        assert_eq!(info.track, Some(2));
        assert_eq!(info.title, None);
    }

    #[test]
    fn unsynchronisation_is_undone() {
        assert_eq!(
            undo_unsynchronisation(&[1, 0xff, 0, 0xe0, 0xff, 0, 0]),
            [1, 0xff, 0xe0, 0xff, 0]
        );
    }
}
