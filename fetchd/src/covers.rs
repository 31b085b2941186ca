//! Whether a file holds an embedded cover, told from the headers around it without reading the
//! cover. The scan has lofty skip covers where it can (a FLAC's `PICTURE` blocks, APEv2 cover
//! items: an embedded cover is often as big as all other tags of a whole album), and these say
//! whether there was one.

use std::io::{Read, Seek, SeekFrom};

use lofty::ape::APE_PICTURE_TYPES;

/// Blocks, tags or items followed before giving up: a hostile file cannot loop us.
const MAX_STEPS: usize = 4096;

/// Whether a FLAC stream (after any ID3v2 tags in front of it) has a PICTURE block, found
/// from the blocks' 4-byte headers alone.
pub fn flac_has_picture<R: Read + Seek>(mut reader: R) -> bool {
    const PICTURE: u8 = 6;
    let mut header = [0u8; 10];
    let mut at = 0u64;
    for _ in 0..MAX_STEPS {
        let read =
            reader.seek(SeekFrom::Start(at)).is_ok() && reader.read_exact(&mut header).is_ok();
        if !read || !header.starts_with(b"ID3") {
            break;
        }
        let size = header[6..10]
            .iter()
            .fold(0u64, |n, b| (n << 7) | u64::from(b & 0x7f));
        at += 10 + size + if header[5] & 0x10 != 0 { 10 } else { 0 };
    }
    let mut magic = [0u8; 4];
    let at_stream = reader.seek(SeekFrom::Start(at)).is_ok()
        && reader.read_exact(&mut magic).is_ok()
        && &magic == b"fLaC";
    if !at_stream {
        return false;
    }
    let mut block = [0u8; 4];
    for _ in 0..MAX_STEPS {
        if reader.read_exact(&mut block).is_err() {
            return false;
        }
        if block[0] & 0x7f == PICTURE {
            return true;
        }
        let len = u32::from_be_bytes([0, block[1], block[2], block[3]]);
        if block[0] & 0x80 != 0 || reader.seek(SeekFrom::Current(len.into())).is_err() {
            return false;
        }
    }
    false
}

/// Whether the APEv2 tag at the end of the file (Monkey's Audio, WavPack, Musepack; before an
/// ID3v1 tag if there is one) has a cover item (`Cover Art (Front)` and the other keys lofty
/// takes for pictures, in any case: taggers write `Cover Art (front)` too), found from the 32-byte footer and each item's header and key alone.
pub fn ape_has_picture<R: Read + Seek>(mut reader: R) -> bool {
    let Ok(len) = reader.seek(SeekFrom::End(0)) else {
        return false;
    };
    for end in [len, len.saturating_sub(128)] {
        let Some(footer_at) = end.checked_sub(32) else {
            continue;
        };
        let mut footer = [0u8; 32];
        let read = reader.seek(SeekFrom::Start(footer_at)).is_ok()
            && reader.read_exact(&mut footer).is_ok();
        if !read || &footer[..8] != b"APETAGEX" {
            continue;
        }
        // The tag's size counts its items and the footer, not a header before them.
        let size = u64::from(le32(&footer[12..16]));
        let items = le32(&footer[16..20]) as usize;
        return match end.checked_sub(size) {
            Some(first) => ape_items_have_picture(&mut reader, first, footer_at, items),
            None => false,
        };
    }
    false
}

/// Whether one of the `count` APEv2 items from `at` up to `end` has a cover's key. Each item:
/// its value's length and flags (4 bytes each, little-endian), its key ending in a NUL (at most
/// 255 bytes), its value.
fn ape_items_have_picture<R: Read + Seek>(
    reader: &mut R,
    mut at: u64,
    end: u64,
    count: usize,
) -> bool {
    // Keys are short ("Cover Art (Recording Location)" is the longest cover's, 30 bytes):
    // read with the header, they take in a few bytes of the value at most, not the cover.
    const FIRST_READ: u64 = 8 + 48;
    const MOST: usize = 8 + 256;
    let mut item = [0u8; MOST];
    for _ in 0..count.min(MAX_STEPS) {
        let mut have = FIRST_READ.min(end.saturating_sub(at)) as usize;
        if have < 10 || reader.seek(SeekFrom::Start(at)).is_err() {
            return false;
        }
        if reader.read_exact(&mut item[..have]).is_err() {
            return false;
        }
        let nul = loop {
            if let Some(nul) = item[8..have].iter().position(|&b| b == 0) {
                break 8 + nul;
            }
            let more = (MOST as u64).min(end.saturating_sub(at)) as usize;
            if more <= have || reader.read_exact(&mut item[have..more]).is_err() {
                return false;
            }
            have = more;
        };
        let value_len = u64::from(le32(&item[..4]));
        let key = &item[8..nul];
        if value_len > 0
            && APE_PICTURE_TYPES
                .iter()
                .any(|k| k.as_bytes().eq_ignore_ascii_case(key))
        {
            return true;
        }
        at += nul as u64 + 1 + value_len;
    }
    false
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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

    #[test]
    fn an_ape_cover_item_is_found_by_its_key() {
        let cover = [0xAB; 3000];
        let binary = 2;
        let tagged = with_ape_tag(&[
            ("Title", b"Teardrop", 0),
            ("Cover Art (front)", &cover, binary),
        ]);
        assert!(ape_has_picture(Cursor::new(&tagged)));
        // Behind an ID3v1 tag too.
        let mut behind = tagged.clone();
        behind.extend(b"TAG");
        behind.extend([0; 125]);
        assert!(ape_has_picture(Cursor::new(&behind)));
        let other = with_ape_tag(&[("Title", b"Teardrop", 0), ("Notes", &cover, binary)]);
        assert!(!ape_has_picture(Cursor::new(&other)));
        assert!(!ape_has_picture(Cursor::new(&cover)));
    }

    /// A damaged tag says no cover or a cover, never panics nor reads for ever.
    #[test]
    fn damaged_ape_tags_give_an_answer() {
        let tagged = with_ape_tag(&[
            ("Title", b"Teardrop", 0),
            ("Cover Art (Front)", &[0xAB; 300], 2),
        ]);
        let tag_at = 5000;
        for cut in (0..tagged.len()).step_by(7) {
            ape_has_picture(Cursor::new(&tagged[..cut]));
        }
        for at in tag_at..tagged.len() {
            for byte in [0x00, 0x7F, 0xFF] {
                let mut damaged = tagged.clone();
                damaged[at] = byte;
                ape_has_picture(Cursor::new(&damaged));
            }
        }
    }
}
