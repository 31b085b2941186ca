//! Reading tags and audio properties with lofty from an origin file, touching only the bytes
//! that hold them (lofty seeks past audio data; the reader counts what is really read).

use std::io::{BufRead, BufReader, Read, Seek};

use lofty::config::{ParseOptions, ParsingMode};
use lofty::file::FileType;
use lofty::prelude::*;
use lofty::probe::Probe;
use lofty::tag::Tag;

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
pub fn read<R: Read + Seek>(
    open: impl Fn() -> std::io::Result<R>,
    extension: Option<&str>,
) -> Parsed {
    let attempt = std::panic::AssertUnwindSafe(|| read_unguarded(open, extension));
    std::panic::catch_unwind(attempt).unwrap_or_else(|panic| {
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
    let options = ParseOptions::new()
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

    #[test]
    fn empty_file_is_unusable() {
        assert!(matches!(
            read(|| Ok(Cursor::new(Vec::new())), Some("flac")),
            Parsed::Unusable(_)
        ));
    }
}
