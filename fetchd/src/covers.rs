//! Whether a file holds an embedded cover, told from the headers around it without reading the
//! cover. The scan has lofty skip a FLAC's `PICTURE` blocks (an embedded cover is often as big
//! as all other tags of a whole album), and this says whether there was one. (Other formats'
//! covers are left out of the view the readers see, `pictureless`, which notes them.)

use std::io::{Read, Seek, SeekFrom};

/// Blocks or tags followed before giving up: a hostile file cannot loop us.
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
        let size = crate::pictureless::syncsafe(&header[6..10]);
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
