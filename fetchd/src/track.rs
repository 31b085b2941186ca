//! What the catalog knows about one audio file: where it lives and what its tags say.

use serde::{Deserialize, Serialize};

/// Tags and audio properties read by the scanner. Multi-value fields keep every value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrackInfo {
    pub artists: Vec<String>,
    pub album_artists: Vec<String>,
    pub album: Option<String>,
    pub title: Option<String>,
    pub track: Option<u32>,
    pub track_total: Option<u32>,
    pub disc: Option<u32>,
    pub disc_total: Option<u32>,
    /// As tagged (`1969`, `2001-06-05`, ...).
    pub date: Option<String>,
    pub genres: Vec<String>,
    pub composers: Vec<String>,
    pub duration_ms: u64,
    pub sample_rate: Option<u32>,
    pub bitrate_kbps: Option<u32>,
    pub has_cover: bool,
    /// Container format as detected from the content (`flac`, `mpeg`, `mp4`, ...).
    pub format: String,
}

impl TrackInfo {
    /// The four-digit year of `date`, if it has one.
    pub fn year(&self) -> Option<String> {
        let date = self.date.as_deref()?.trim();
        let digits: String = date.chars().take(4).collect();
        (digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
    }
}

/// Where a file lives: an origin (by its configured name) and the path inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    pub origin: String,
    pub path: String,
}

impl Location {
    /// Key used in the catalog's file table.
    pub fn key(&self) -> String {
        format!("{}\0{}", self.origin, self.path)
    }

    /// The file's name without its directory and extension (title of an untagged track).
    pub fn stem(&self) -> &str {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        match name.rfind('.') {
            Some(i) if i > 0 => &name[..i],
            _ => name,
        }
    }

    /// Lower-case extension of the file name, if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.path.rsplit('/').next()?;
        let i = name.rfind('.')?;
        (i > 0).then(|| name[i + 1..].to_ascii_lowercase())
    }
}

/// One catalogued track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    pub location: Location,
    pub size: u64,
    pub mtime_ns: i128,
    /// Changes whenever the file's size or mtime changes; reads name the version they expect.
    pub version: u64,
    pub info: TrackInfo,
    /// When the catalog first saw this file (seconds since the epoch); kept across changes.
    pub added_secs: i64,
}

impl TrackRecord {
    /// What makes copies on several origins one file, shown once and read from whichever
    /// answers: the same path, size, tags and audio properties. A copy retagged in place keeps
    /// its size when the tag block's padding takes the change, so size alone would let a read
    /// splice one copy's bytes into the other's.
    pub fn copy_key(&self) -> (&str, u64, &TrackInfo) {
        (&self.location.path, self.size, &self.info)
    }
}

/// A file that could not be catalogued (or was, with a warning), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub size: u64,
    pub mtime_ns: i128,
    pub reason: String,
    /// The file still appears in the tree (under `Unknown …`).
    pub shown: bool,
}
