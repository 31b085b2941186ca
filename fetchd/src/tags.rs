//! Reading tags and audio properties with lofty from an origin file, touching only the bytes
//! that hold them (lofty seeks past audio data; the reader counts what is really read).

use std::io::{BufRead, BufReader, Read, Seek};

use lofty::config::{ParseOptions, ParsingMode};
use lofty::file::FileType;
use lofty::prelude::*;
use lofty::probe::Probe;
use lofty::tag::Tag;

use crate::covers;
use crate::pictureless::Pictureless;
use crate::track::TrackInfo;

/// Buffer between lofty and the block-cached origin file.
const READ_BUFFER: usize = 16 * 1024;

/// Result of reading one file.
#[derive(Debug)]
pub enum Parsed {
    /// Tags (possibly none) and properties read.
    Ok(TrackInfo),
    /// The audio properties were readable but the tags were not; shown under `Unknown …`.
    TagsUnreadable(TrackInfo, String),
    /// Not a file the scanner can use.
    Unusable(String),
}

/// Reads one file. `open` gives a fresh reader for each attempt; `extension` is the file
/// name's, used when the content alone does not say what the file is.
///
/// Attempts, in order: tags and properties; properties only; tags only. A file of a known format
/// that fails all three is still shown (as untagged) with the reason: a user's file must not
/// vanish because its tags are broken. Empty files and unknown formats are left out.
///
/// A tag library that panics on a hostile file costs that file only: the panic is caught and
/// the file left out with the reason, instead of taking the scan (and fetchd) down, again at
/// every restart.
///
/// The readers see the file with its embedded covers left out ([`Pictureless`]; a FLAC's
/// PICTURE blocks are skipped): a cover is noted, not read. Should they fail on that view, the
/// file itself is read, as it is.
pub fn read<R: Read + Seek>(
    open: impl Fn() -> std::io::Result<R>,
    extension: Option<&str>,
) -> Parsed {
    let skipped = std::cell::Cell::new(false);
    let viewed = || {
        let view = Pictureless::new(open()?)?;
        skipped.set(skipped.get() | view.skipped_pictures());
        Ok(view)
    };
    let mut parsed = guarded(|| read_unguarded(viewed, extension));
    if let Parsed::Ok(info) | Parsed::TagsUnreadable(info, _) = &mut parsed {
        info.has_cover |= skipped.get();
    }
    if matches!(parsed, Parsed::Ok(_)) || !skipped.get() {
        return parsed;
    }
    let itself = guarded(|| read_unguarded(&open, extension));
    if rank(&itself) > rank(&parsed) {
        itself
    } else {
        parsed
    }
}

/// How much of a file a result shows.
fn rank(parsed: &Parsed) -> u8 {
    match parsed {
        Parsed::Ok(_) => 2,
        Parsed::TagsUnreadable(..) => 1,
        Parsed::Unusable(_) => 0,
    }
}

/// `read` with a panic of the tag library caught and turned into the reason.
fn guarded(read: impl FnOnce() -> Parsed) -> Parsed {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Parsed::Unusable(format!("the tag reader crashed on this file: {what}"))
    })
}

fn read_unguarded<R: Read + Seek>(
    open: impl Fn() -> std::io::Result<R>,
    extension: Option<&str>,
) -> Parsed {
    let hint = extension.and_then(FileType::from_ext);
    let attempt = |tags: bool, properties: bool| -> Result<TrackInfo, Failure> {
        let reader = open().map_err(|e| Failure::Unknown(format!("cannot open: {e}")))?;
        probe(reader, hint, tags, properties)
    };
    let first = match attempt(true, true) {
        Ok(mut info) => {
            if info.format == "flac" {
                info.has_cover |= open().is_ok_and(covers::flac_has_picture);
            }
            if matches!(info.format.as_str(), "mpeg" | "aiff" | "wav") {
                if let Some(tags) = open().ok().and_then(crate::id3v2::read) {
                    crate::id3v2::prefer(&mut info, tags);
                }
            }
            return Parsed::Ok(info);
        }
        Err(Failure::Unknown(reason)) => return Parsed::Unusable(reason),
        Err(Failure::Known(file_type, reason)) => (file_type, reason),
    };
    let (file_type, reason) = first;
    let recovered = open().ok().and_then(crate::id3v2::read);
    let note = |what: &str| match recovered {
        Some(_) => format!("{what}; tags recovered by the lenient ID3v2 reader ({reason})"),
        None => format!("{what}: {reason}"),
    };
    let with_recovered = |mut info: TrackInfo| {
        if let Some(tags) = recovered.clone() {
            crate::id3v2::fill(&mut info, tags);
        }
        info
    };
    if let Ok(info) = attempt(false, true) {
        return Parsed::TagsUnreadable(with_recovered(info), note("tags unreadable"));
    }
    if let Ok(info) = attempt(true, false) {
        return Parsed::TagsUnreadable(with_recovered(info), note("audio properties unreadable"));
    }
    let info = TrackInfo {
        format: format_name(file_type),
        ..Default::default()
    };
    Parsed::TagsUnreadable(with_recovered(info), note("unparseable, shown untagged"))
}

enum Failure {
    /// Not recognisable as any supported format (or unreadable).
    Unknown(String),
    /// Recognised as this format, but parsing failed.
    Known(FileType, String),
}

fn probe<R: Read + Seek>(
    reader: R,
    hint: Option<FileType>,
    read_tags: bool,
    read_properties: bool,
) -> Result<TrackInfo, Failure> {
    let mut options = ParseOptions::new()
        .parsing_mode(ParsingMode::Relaxed)
        .read_tags(read_tags)
        .read_properties(read_properties)
        .read_cover_art(true);
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let empty = reader.fill_buf().map(|b| b.is_empty()).unwrap_or(true);
    if empty {
        return Err(Failure::Unknown("empty file".into()));
    }
    let mut probe = Probe::new(reader)
        .options(options)
        .guess_file_type()
        .map_err(|e| Failure::Unknown(format!("cannot read: {e}")))?;
    let file_type = match (probe.file_type(), hint) {
        (Some(t), _) => t,
        (None, Some(t)) => {
            probe = probe.set_file_type(t);
            t
        }
        (None, None) => {
            return Err(Failure::Unknown(
                "unsupported or unrecognised audio format".into(),
            ))
        }
    };
    if matches!(
        file_type,
        FileType::Flac | FileType::Ape | FileType::WavPack | FileType::Mpc
    ) {
        // A FLAC's PICTURE blocks are skipped, not read (`covers` says whether there is one),
        // and so are APEv2 cover items with the exact keys lofty knows, should a file be read
        // without the view (which renames them, in any case).
        probe = probe.options(options.read_cover_art(false));
    }
    let tagged = probe
        .read()
        .map_err(|e| Failure::Known(file_type, e.to_string()))?;
    let props = tagged.properties();
    let mut info = TrackInfo {
        duration_ms: props.duration().as_millis() as u64,
        sample_rate: props.sample_rate(),
        bitrate_kbps: props.audio_bitrate().or(props.overall_bitrate()),
        format: format_name(file_type),
        ..Default::default()
    };
    // The format's primary tag first, then the others (ID3v1 behind ID3v2, APE, ...).
    let mut tags: Vec<&Tag> = tagged.primary_tag().into_iter().collect();
    tags.extend(
        tagged
            .tags()
            .iter()
            .filter(|t| Some(t.tag_type()) != tagged.primary_tag().map(|p| p.tag_type())),
    );
    for tag in tags {
        merge(&mut info, tag);
    }
    Ok(info)
}

/// Fills the fields `info` does not have yet from `tag`.
fn merge(info: &mut TrackInfo, tag: &Tag) {
    let strings = |key: ItemKey| -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for v in tag.get_strings(&key) {
            for part in v.split('\0') {
                let part = part.trim();
                if !part.is_empty() && !values.iter().any(|x| x == part) {
                    values.push(part.to_owned());
                }
            }
        }
        values
    };
    let fill_vec = |field: &mut Vec<String>, key: ItemKey| {
        if field.is_empty() {
            *field = strings(key);
        }
    };
    fill_vec(&mut info.artists, ItemKey::TrackArtist);
    fill_vec(&mut info.album_artists, ItemKey::AlbumArtist);
    fill_vec(&mut info.genres, ItemKey::Genre);
    fill_vec(&mut info.composers, ItemKey::Composer);
    let first = |key: ItemKey| strings(key).into_iter().next();
    info.album = info.album.take().or_else(|| first(ItemKey::AlbumTitle));
    info.title = info.title.take().or_else(|| first(ItemKey::TrackTitle));
    info.date = info
        .date
        .take()
        .or_else(|| first(ItemKey::RecordingDate))
        .or_else(|| first(ItemKey::Year))
        .or_else(|| first(ItemKey::ReleaseDate))
        .or_else(|| tag.year().map(|y| y.to_string()));
    info.track = info.track.or(tag.track());
    info.track_total = info.track_total.or(tag.track_total());
    info.disc = info.disc.or(tag.disk());
    info.disc_total = info.disc_total.or(tag.disk_total());
    info.has_cover |= tag.picture_count() > 0;
}

fn format_name(file_type: FileType) -> String {
    match file_type {
        FileType::Mpeg => "mpeg".into(),
        FileType::Flac => "flac".into(),
        FileType::Vorbis => "vorbis".into(),
        FileType::Opus => "opus".into(),
        FileType::Speex => "speex".into(),
        FileType::Mp4 => "mp4".into(),
        FileType::Wav => "wav".into(),
        FileType::Aiff => "aiff".into(),
        FileType::WavPack => "wavpack".into(),
        FileType::Ape => "ape".into(),
        FileType::Aac => "aac".into(),
        FileType::Mpc => "musepack".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// An MP3 whose ID3v2.2 tag holds a 61 KB `PIC` frame: read as a scan reads it, it gives
    /// what reading the whole file gives, cover noted, and no byte of the picture is read.
    #[test]
    fn an_id3v2_2_cover_is_noted_not_read() {
        let path = musicfs_tests::corpus::corpus_dir().join("audioscan/mp3/v2.2-pic.mp3");
        let bytes = std::fs::read(&path).unwrap();
        let pic = bytes.windows(3).position(|w| w == b"PIC").unwrap() + 6;
        let pic_len = u32::from_be_bytes([0, bytes[pic - 3], bytes[pic - 2], bytes[pic - 1]]);
        let picture = pic as u64..pic as u64 + u64::from(pic_len);
        assert!(picture.end - picture.start > 60_000);
        let whole = read_unguarded(|| std::fs::File::open(&path), Some("mp3"));
        // Where each read started and how long it was.
        let reads = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let open = || {
            let reads = reads.clone();
            Ok(Positioned(std::fs::File::open(&path)?, reads))
        };
        match (read(open, Some("mp3")), whole) {
            (Parsed::Ok(scanned), Parsed::Ok(whole)) => {
                assert_eq!(scanned, whole);
                assert!(scanned.has_cover);
            }
            other => panic!("{other:?}"),
        }
        let reads = reads.borrow();
        assert!(!reads.is_empty());
        for &(at, n) in reads.iter() {
            assert!(
                at + n <= picture.start || at >= picture.end,
                "read {at}+{n} takes in the picture at {picture:?}"
            );
        }
    }

    /// A file that notes where each read started and how many bytes it took.
    struct Positioned(
        std::fs::File,
        std::rc::Rc<std::cell::RefCell<Vec<(u64, u64)>>>,
    );

    impl Read for Positioned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.0.stream_position()?;
            let n = self.0.read(buf)?;
            self.1.borrow_mut().push((at, n as u64));
            Ok(n)
        }
    }

    impl Seek for Positioned {
        fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(to)
        }
    }

    /// The corpus's Ogg Vorbis and Opus files, each given a 300 KB cover by lofty: read as a
    /// scan reads them, they give what reading the whole file gives (the cover noted), and
    /// read less than a tenth of the cover's size more than without it.
    #[test]
    fn ogg_and_opus_files_with_a_cover_read_alike_without_the_cover() {
        use lofty::picture::{MimeType, Picture, PictureType};
        let corpus = musicfs_tests::corpus::corpus_dir();
        let dir = tempfile::tempdir().unwrap();
        let cover = musicfs_tests::noise::noise(300_000, 1);
        let mut checked = Vec::new();
        let manifest = musicfs_tests::corpus::read_manifest(&corpus.join("MANIFEST.tsv"));
        for row in manifest {
            let rel = row.get("path");
            let ext = rel.rsplit('.').next().unwrap_or_default();
            if !matches!(ext, "ogg" | "opus") {
                continue;
            }
            let copy = dir.path().join(rel.replace('/', "_"));
            std::fs::copy(corpus.join(rel), &copy).unwrap();
            // Files lofty cannot write (damaged on purpose) are not this test's.
            let Ok(mut file) = lofty::read_from_path(&copy) else {
                continue;
            };
            let Some(tag) = file.primary_tag_mut() else {
                continue;
            };
            let picture = Picture::new_unchecked(
                PictureType::CoverFront,
                Some(MimeType::Png),
                None,
                cover.clone(),
            );
            tag.push_picture(picture);
            if file.save_to_path(&copy, Default::default()).is_err() {
                continue;
            }
            let whole = read_unguarded(|| std::fs::File::open(&copy), Some(ext));
            // Bytes a scan reads of a file: the tag reader takes in more than the tags (pages
            // near the end, for the duration).
            let read_of = |path: &std::path::Path| {
                let reads = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let open = || Ok(Positioned(std::fs::File::open(path)?, reads.clone()));
                let parsed = read(open, Some(ext));
                let bytes: u64 = reads.borrow().iter().map(|(_, n)| n).sum();
                (parsed, bytes)
            };
            let (scanned, with_cover) = read_of(&copy);
            let (_, without) = read_of(&corpus.join(rel));
            match (&scanned, &whole) {
                (Parsed::Ok(scanned), Parsed::Ok(whole)) => {
                    assert_eq!(scanned, whole, "{rel}");
                    assert!(scanned.has_cover, "{rel}");
                }
                _ => panic!("{rel}: {scanned:?} against {whole:?}"),
            }
            let more = with_cover.saturating_sub(without);
            assert!(
                more < cover.len() as u64 / 10,
                "{rel}: {more} bytes more read"
            );
            checked.push(rel.to_owned());
        }
        assert!(checked.len() >= 10, "{checked:?}");
    }

    /// The corpus's Monkey's Audio, WavPack and Musepack files: a scan notes a cover where the
    /// manifest's reader saw one, and none where it saw none. Each given a 300 KB `Cover Art
    /// (Front)` or `Cover Art (front)` item in its APEv2 tag (those lofty can write), it reads
    /// as a scan reads it alike to the file without the cover but for the cover noted, reads at
    /// most one read buffer of the cover, and reads less than a tenth of the cover's size more
    /// in all.
    #[test]
    fn ape_wavpack_and_musepack_covers_are_noted_not_read() {
        use lofty::ape::{ApeItem, ApeTag};
        use lofty::tag::{ItemValue, TagExt};
        let corpus = musicfs_tests::corpus::corpus_dir();
        let dir = tempfile::tempdir().unwrap();
        // An item's value: a description ending in NUL, then the picture.
        let mut cover = b"\0\x89PNG\r\n\x1a\n".to_vec();
        cover.extend(musicfs_tests::noise::noise(300_000, 1));
        let (mut checked, mut noted) = (Vec::new(), 0);
        let manifest = musicfs_tests::corpus::read_manifest(&corpus.join("MANIFEST.tsv"));
        for row in manifest {
            let rel = row.get("path");
            let ext = rel.rsplit('.').next().unwrap_or_default();
            if !matches!(ext, "ape" | "wv" | "mpc") {
                continue;
            }
            let (scanned, without) = scanned_with_reads(&corpus.join(rel), ext);
            let Parsed::Ok(mut scanned) = scanned else {
                continue;
            };
            let seen = row.get("has_cover");
            if seen.starts_with("yes") || seen == "no" {
                assert_eq!(
                    scanned.has_cover,
                    seen != "no",
                    "{rel}: the manifest says {seen}"
                );
                noted += usize::from(scanned.has_cover);
            }
            let copy = dir.path().join(rel.replace('/', "_"));
            std::fs::copy(corpus.join(rel), &copy).unwrap();
            let Some(tag) = lofty::read_from_path(&copy)
                .ok()
                .and_then(|f| f.primary_tag().cloned())
            else {
                continue;
            };
            let mut ape = ApeTag::from(tag);
            // Every other file as foobar2000 spells the key.
            let key = ["Cover Art (Front)", "Cover Art (front)"][checked.len() % 2];
            let item = ApeItem::new(key.into(), ItemValue::Binary(cover.clone()));
            ape.insert(item.unwrap());
            if ape.save_to_path(&copy, Default::default()).is_err() {
                continue;
            }
            let bytes = std::fs::read(&copy).unwrap();
            let at = bytes.windows(cover.len()).position(|w| w == cover).unwrap() as u64;
            let picture = at..at + cover.len() as u64;
            let reads = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let open = || Ok(Positioned(std::fs::File::open(&copy)?, reads.clone()));
            let Parsed::Ok(with_cover) = read(open, Some(ext)) else {
                panic!("{rel} with a cover did not read");
            };
            scanned.has_cover = true;
            assert_eq!(with_cover, scanned, "{rel}");
            // Bytes read, each counted once (the scan's reader keeps what it fetched): of the
            // cover, a few bytes after each item's key, the last 128 bytes looked at for an
            // ID3v1 tag, and a small file's head (lofty reads through a 16 KiB buffer).
            let reads = reads.borrow();
            let of_cover = distinct(&reads, picture);
            let most = READ_BUFFER as u64 + 256;
            assert!(
                of_cover <= most,
                "{rel}: {of_cover} bytes of the cover read"
            );
            let more = distinct(&reads, 0..u64::MAX).saturating_sub(without);
            let most = cover.len() as u64 / 10;
            assert!(more < most, "{rel}: {more} bytes more read");
            checked.push(rel.to_owned());
        }
        assert!(
            noted >= 1 && checked.len() >= 8,
            "{noted} noted; {checked:?}"
        );
    }

    /// What a scan reads of the file at `path`, and how many distinct bytes it read.
    fn scanned_with_reads(path: &std::path::Path, ext: &str) -> (Parsed, u64) {
        let reads = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let open = || Ok(Positioned(std::fs::File::open(path)?, reads.clone()));
        let parsed = read(open, Some(ext));
        let bytes = distinct(&reads.borrow(), 0..u64::MAX);
        (parsed, bytes)
    }

    /// How many bytes of `within` the `reads` (start, length) took in, each byte once.
    fn distinct(reads: &[(u64, u64)], within: std::ops::Range<u64>) -> u64 {
        let clip = |at: u64| at.clamp(within.start, within.end);
        let mut spans: Vec<(u64, u64)> = reads
            .iter()
            .map(|&(at, n)| (clip(at), clip(at.saturating_add(n))))
            .collect();
        spans.sort_unstable();
        let (mut total, mut reached) = (0, within.start);
        for (from, to) in spans {
            total += to.saturating_sub(from.max(reached));
            reached = reached.max(to);
        }
        total
    }

    #[test]
    fn garbage_is_unusable_with_a_reason() {
        let data = vec![0x42u8; 5000];
        match read(|| Ok(Cursor::new(data.clone())), None) {
            Parsed::Unusable(reason) => assert!(!reason.is_empty()),
            other => panic!("expected Unusable, got {other:?}"),
        }
    }

    #[test]
    fn garbage_with_a_known_extension_is_shown_with_the_reason() {
        let data = vec![0x42u8; 5000];
        match read(|| Ok(Cursor::new(data.clone())), Some("mp3")) {
            Parsed::TagsUnreadable(info, reason) => {
                assert_eq!(info.format, "mpeg");
                assert!(!reason.is_empty());
            }
            other => panic!("expected TagsUnreadable, got {other:?}"),
        }
    }

    /// A reader that panics, as a tag library bug on a hostile file would.
    struct Explodes;

    impl std::io::Read for Explodes {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("hostile bytes")
        }
    }

    impl std::io::Seek for Explodes {
        fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn a_panic_while_reading_leaves_the_file_out_with_the_reason() {
        match read(|| Ok(Explodes), Some("mp3")) {
            Parsed::Unusable(reason) => assert!(reason.contains("hostile bytes"), "{reason}"),
            other => panic!("expected Unusable, got {other:?}"),
        }
    }

    /// A reader that counts the bytes read through it.
    struct Counting<'a>(Cursor<&'a [u8]>, &'a std::cell::Cell<usize>);

    impl std::io::Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n);
            Ok(n)
        }
    }

    impl std::io::Seek for Counting<'_> {
        fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(to)
        }
    }

    /// A FLAC stream's metadata: STREAMINFO, a Vorbis comment with a title, and a PICTURE block
    /// of `picture` bytes (last), then a little audio.
    fn flac_with_picture(picture: usize) -> Vec<u8> {
        let mut out = b"fLaC".to_vec();
        let mut block = |ty: u8, last: bool, body: &[u8]| {
            out.push(ty | if last { 0x80 } else { 0 });
            out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(body);
        };
        let mut info = vec![0x10, 0x00, 0x10, 0x00, 0, 0, 0, 0, 0, 0];
        let packed: u64 = (44_100 << 44) | (1 << 41) | (15 << 36) | 441_000;
        info.extend_from_slice(&packed.to_be_bytes());
        info.extend_from_slice(&[0; 16]);
        block(0, false, &info);
        let mut comment = Vec::new();
        for text in ["musicfs", "TITLE=Dubuque"] {
            if text == "TITLE=Dubuque" {
                comment.extend_from_slice(&1u32.to_le_bytes());
            }
            comment.extend_from_slice(&(text.len() as u32).to_le_bytes());
            comment.extend_from_slice(text.as_bytes());
        }
        block(4, false, &comment);
        block(6, true, &vec![0xAB; picture]);
        out.extend_from_slice(&[0xFF, 0xF8, 0x69, 0x08, 0, 0, 0, 0]);
        out
    }

    #[test]
    fn a_flac_cover_is_seen_without_reading_it() {
        let file = flac_with_picture(1 << 20);
        let read_bytes = std::cell::Cell::new(0);
        let open = || Ok(Counting(Cursor::new(&file[..]), &read_bytes));
        let Parsed::Ok(info) = read(open, Some("flac")) else {
            panic!("the FLAC was not read");
        };
        assert_eq!(info.title.as_deref(), Some("Dubuque"));
        assert_eq!(info.duration_ms, 10_000);
        assert!(info.has_cover);
        assert!(
            read_bytes.get() < 64 << 10,
            "read {} bytes",
            read_bytes.get()
        );

        let mut without = flac_with_picture(0);
        let picture_block = without.len() - 8 - 4;
        without[picture_block] = 0x80 | 1; // the PICTURE block made PADDING
        let Parsed::Ok(info) = read(|| Ok(Cursor::new(without.clone())), Some("flac")) else {
            panic!("the FLAC was not read");
        };
        assert!(!info.has_cover);
    }

    /// Also behind an extended header (v2.3's and v2.4's, which the walk leaves out).
    #[test]
    fn an_mp3_cover_is_seen_without_reading_it() {
        let syncsafe = |n: usize| (0..4).rev().map(move |i| ((n >> (7 * i)) & 0x7f) as u8);
        let extended_headers: [(u8, &[u8]); 4] = [
            (3, &[]),
            (4, &[]),
            (3, &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0]),
            (4, &[0, 0, 0, 6, 1, 0]),
        ];
        for (major, extended) in extended_headers {
            let frame = |id: &[u8], body: &[u8]| {
                let size: Vec<u8> = match major {
                    3 => (body.len() as u32).to_be_bytes().to_vec(),
                    _ => syncsafe(body.len()).collect(),
                };
                [id, &size, &[0, 0], body].concat()
            };
            let frames = [
                extended.to_vec(),
                frame(b"TIT2", b"\x03Omen"),
                frame(b"APIC", &[0xAB; 1 << 20]),
                frame(b"TPE1", b"\x03The Prodigy"),
            ]
            .concat();
            let flags = if extended.is_empty() { 0 } else { 0x40 };
            let mut file = vec![b'I', b'D', b'3', major, 0, flags];
            file.extend(syncsafe(frames.len()));
            file.extend(frames);
            // MPEG-1 layer III frames, 128 kbit/s at 44.1 kHz: 417 bytes each.
            for _ in 0..40 {
                file.extend([0xFF, 0xFB, 0x90, 0x64]);
                file.extend([0; 413]);
            }
            let read_bytes = std::cell::Cell::new(0);
            let open = || Ok(Counting(Cursor::new(&file[..]), &read_bytes));
            let Parsed::Ok(info) = read(open, Some("mp3")) else {
                panic!("the MP3 was not read");
            };
            let with = format!("v2.{major}, {} bytes of extended header", extended.len());
            assert_eq!(info.title.as_deref(), Some("Omen"), "{with}");
            assert_eq!(info.artists, ["The Prodigy"], "{with}");
            assert!(info.has_cover, "{with}");
            // (Each reader's passes counted: lofty's and rust-id3's, through 16 KiB buffers.)
            assert!(
                read_bytes.get() < 256 << 10,
                "{with}: read {} bytes",
                read_bytes.get()
            );
        }
    }

    #[test]
    fn empty_file_is_unusable() {
        assert!(matches!(
            read(|| Ok(Cursor::new(Vec::new())), Some("flac")),
            Parsed::Unusable(_)
        ));
    }
}
