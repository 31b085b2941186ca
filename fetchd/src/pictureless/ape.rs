//! An APEv2 tag at the end of a file (Monkey's Audio, WavPack, Musepack, some MP3s; before an
//! ID3v1 tag if there is one) with its cover items shown renamed `XX…X` and their values as
//! zeros. A cover item is one whose key lofty takes for a picture (`Cover Art (Front)` and the
//! rest of its `APE_PICTURE_TYPES`) in any case: foobar2000 writes `Cover Art (front)`, which
//! lofty would otherwise read whole. Only the 32-byte footer and each item's header and key are
//! read; nothing moves, so the view keeps the file's length.
//!
//! An item: its value's length and flags (4 bytes each, little-endian), its key (2 to 255
//! printable ASCII bytes) ending in a NUL, its value. The footer gives the tag's size (items
//! and footer, not a header before them) and the number of items.

use std::io;

use lofty::ape::APE_PICTURE_TYPES;

use super::{le32, ReadAt, Segment, MAX_FRAMES};

/// Keys are short ("Cover Art (Recording Location)" is the longest cover's, 30 bytes): read
/// with the item's header, they take in a few bytes of the value at most, not the cover.
const FIRST_READ: u64 = 8 + 48;
/// An item's header and the longest key with its NUL.
const MOST: u64 = 8 + 256;

/// The file with each APEv2 cover item renamed and its value zeros; `None` if the file has no
/// APEv2 tag at its end, or one without a cover item.
pub(super) fn ape_without_pictures(
    file: &mut impl ReadAt,
    file_len: u64,
) -> io::Result<Option<Vec<Segment>>> {
    let Some((mut at, end, count)) = tag_at_end(file, file_len)? else {
        return Ok(None);
    };
    let mut segments = Vec::new();
    // Where the file is shown as it is from.
    let mut from = 0;
    for _ in 0..count.min(MAX_FRAMES) {
        let Some((key, value_len)) = item_at(file, at, end)? else {
            break;
        };
        let key_at = at + 8;
        let value_at = key_at + key.len() as u64 + 1;
        let Some(next) = value_at.checked_add(value_len).filter(|&next| next <= end) else {
            break;
        };
        if is_cover(&key) {
            segments.push(Segment::File {
                at: from,
                len: key_at - from,
            });
            let mut renamed = vec![b'X'; key.len()];
            renamed.push(0);
            segments.push(Segment::Bytes(renamed));
            segments.push(Segment::Zeros(value_len));
            from = next;
        }
        at = next;
    }
    if segments.is_empty() {
        return Ok(None);
    }
    segments.push(Segment::File {
        at: from,
        len: file_len - from,
    });
    Ok(Some(segments))
}

/// Where the items of the APEv2 tag at the end of the file start, where they end (at the
/// footer), and how many there are.
fn tag_at_end(file: &mut impl ReadAt, file_len: u64) -> io::Result<Option<(u64, u64, usize)>> {
    for end in [file_len, file_len.saturating_sub(128)] {
        let Some(footer_at) = end.checked_sub(32) else {
            continue;
        };
        let Some(footer) = file.exactly(footer_at, 32)? else {
            continue;
        };
        if &footer[..8] != b"APETAGEX" {
            continue;
        }
        let size = u64::from(le32(&footer[12..16]));
        let count = le32(&footer[16..20]) as usize;
        return Ok(end
            .checked_sub(size)
            .filter(|&first| first < footer_at)
            .map(|first| (first, footer_at, count)));
    }
    Ok(None)
}

/// The key and value length of the item at `at`, whose tag's items end at `end`; `None` if
/// there is no whole item header and key there.
fn item_at(file: &mut impl ReadAt, at: u64, end: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
    let room = end.saturating_sub(at);
    let Some(mut item) = file.exactly(at, FIRST_READ.min(room) as usize)? else {
        return Ok(None);
    };
    loop {
        if item.len() < 10 {
            return Ok(None);
        }
        if let Some(nul) = item[8..].iter().position(|&b| b == 0) {
            let value_len = u64::from(le32(&item[..4]));
            return Ok(Some((item[8..8 + nul].to_vec(), value_len)));
        }
        let whole = MOST.min(room) as usize;
        if whole <= item.len() {
            return Ok(None);
        }
        match file.exactly(at, whole)? {
            Some(more) => item = more,
            None => return Ok(None),
        }
    }
}

fn is_cover(key: &[u8]) -> bool {
    APE_PICTURE_TYPES
        .iter()
        .any(|cover| cover.as_bytes().eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use crate::pictureless::Pictureless;
    use std::io::{Cursor, Read};

    /// Some audio, then an APEv2 tag (no header) of `items` (key, value, flags).
    fn with_ape_tag(items: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut tag = Vec::new();
        for (key, value, flags) in items {
            tag.extend((value.len() as u32).to_le_bytes());
            tag.extend(flags.to_le_bytes());
            tag.extend(key.as_bytes());
            tag.push(0);
            tag.extend(*value);
        }
        let mut file = vec![0x55; 5000];
        file.extend(&tag);
        file.extend(b"APETAGEX");
        file.extend(2000u32.to_le_bytes());
        file.extend((tag.len() as u32 + 32).to_le_bytes());
        file.extend((items.len() as u32).to_le_bytes());
        file.extend([0; 12]);
        file
    }

    fn view(file: &[u8]) -> (Vec<u8>, bool) {
        let mut view = Pictureless::new(Cursor::new(file)).unwrap();
        let mut out = Vec::new();
        view.read_to_end(&mut out).unwrap();
        (out, view.skipped_pictures())
    }

    #[test]
    fn cover_items_are_renamed_with_zero_values_in_any_case() {
        let (front, back) = ([0xAB; 3000], [0xCD; 700]);
        let binary = 2;
        let items = |front_key| {
            with_ape_tag(&[
                ("Title", b"Teardrop", 0),
                (front_key, &front, binary),
                ("Artist", b"Massive Attack", 0),
                ("COVER ART (BACK)", &back, binary),
            ])
        };
        let file = items("Cover Art (front)");
        let (shown, skipped) = view(&file);
        assert!(skipped);
        let expected = with_ape_tag(&[
            ("Title", b"Teardrop", 0),
            ("XXXXXXXXXXXXXXXXX", &[0; 3000], binary),
            ("Artist", b"Massive Attack", 0),
            ("XXXXXXXXXXXXXXXX", &[0; 700], binary),
        ]);
        assert!(shown == expected, "the view differs");
        // Behind an ID3v1 tag too.
        let mut behind = items("Cover Art (Front)");
        behind.extend(b"TAG");
        behind.extend([7; 125]);
        let (shown, skipped) = view(&behind);
        assert!(skipped);
        assert_eq!(shown.len(), behind.len());
        assert_eq!(&shown[shown.len() - 128..], &behind[behind.len() - 128..]);
        // No cover: the file itself.
        let plain = with_ape_tag(&[("Title", b"Teardrop", 0), ("Notes", &front, binary)]);
        assert_eq!(view(&plain), (plain.clone(), false));
    }

    /// An MP3 whose taggers left a cover in its ID3v2 tag and another in its APEv2 tag: the
    /// view leaves out both.
    #[test]
    fn covers_in_an_id3v2_and_an_apev2_tag_of_one_file_are_both_left_out() {
        let id3 = |frames: &[(&[u8], &[u8])]| {
            let mut body = Vec::new();
            for (id, data) in frames {
                body.extend(*id);
                body.extend((data.len() as u32).to_be_bytes());
                body.extend([0, 0]);
                body.extend(*data);
            }
            let n = body.len();
            let mut tag = vec![b'I', b'D', b'3', 3, 0, 0];
            tag.extend((0..4).rev().map(|i| ((n >> (7 * i)) & 0x7f) as u8));
            tag.extend(body);
            tag
        };
        let title: (&[u8], &[u8]) = (b"TIT2", b"\x03Omen");
        let picture: (&[u8], &[u8]) = (b"APIC", &[0xAB; 4000]);
        let file = [
            id3(&[title, picture]),
            with_ape_tag(&[
                ("Title", b"Omen", 0),
                ("Cover Art (Front)", &[0xCD; 3000], 2),
            ]),
        ]
        .concat();
        let expected = [
            id3(&[title]),
            with_ape_tag(&[("Title", b"Omen", 0), ("XXXXXXXXXXXXXXXXX", &[0; 3000], 2)]),
        ]
        .concat();
        let (shown, skipped) = view(&file);
        assert!(skipped);
        assert!(shown == expected, "the view differs");
    }

    /// A damaged tag gives a view of the file's length (or the file), never a panic.
    #[test]
    fn damaged_tags_give_a_view_of_the_files_length() {
        let file = with_ape_tag(&[
            ("Title", b"Teardrop", 0),
            ("Cover Art (Front)", &[0xAB; 300], 2),
        ]);
        for cut in (0..file.len()).step_by(7) {
            let (shown, _) = view(&file[..cut]);
            assert_eq!(shown.len(), cut);
        }
        for at in 5000..file.len() {
            for byte in [0x00, 0x7F, 0xFF] {
                let mut damaged = file.clone();
                damaged[at] = byte;
                let (shown, _) = view(&damaged);
                assert_eq!(shown.len(), damaged.len());
            }
        }
    }
}
