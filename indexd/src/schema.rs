//! The index's fields, its text analysis, and how an [`IndexDoc`] becomes a tantivy document.
//!
//! Text fields (artist, albumartist, album, title, genre, composer) are split into words,
//! lower-cased and folded to ASCII (`Björk` is indexed as `bjork`); keyword fields (format,
//! origin) are folded the same way but kept whole. Queries go through the same analyzers (see
//! [`Analyzers`]), so a query word always meets the indexed word in the same form.

use musicfs_ipc::IndexDoc;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST,
    INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, SimpleTokenizer, TextAnalyzer, TokenStream,
};
use tantivy::{Index, TantivyDocument};

/// Analyzer of the text fields: words, lower-cased, diacritics folded.
pub const TEXT_ANALYZER: &str = "musicfs_text";
/// Analyzer of the keyword fields: the whole value, lower-cased, diacritics folded.
pub const KEYWORD_ANALYZER: &str = "musicfs_keyword";

/// Fast-field names read by name when sorting and scanning.
pub const TRACK_ID: &str = "track_id";
pub const YEAR: &str = "year";
pub const TRACK_NUMBER: &str = "track";
pub const ADDED_SECS: &str = "added_secs";
pub const GENRE_NAME: &str = "genre_name";
pub const ARTIST_SORT: &str = "artist_sort";
pub const ALBUM_SORT: &str = "album_sort";

/// Shown for a track without artist tags (as fetchd names it in the tree).
pub const UNKNOWN_ARTIST: &str = "Unknown Artist";

/// Every field of the index.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// The catalog's track id: stored, fast, and indexed so an upsert can delete the old doc.
    pub track_id: Field,
    /// Artists and album artists.
    pub artist: Field,
    /// Album artists, or the artists when the track names none.
    pub albumartist: Field,
    pub album: Field,
    /// The title, or the file stem of an untitled track.
    pub title: Field,
    pub genre: Field,
    pub composer: Field,
    pub format: Field,
    pub origin: Field,
    pub ext: Field,
    pub year: Field,
    pub track: Field,
    pub duration_ms: Field,
    pub added_secs: Field,
    /// Each genre as tagged (fast, not tokenized): the built-in genre collections.
    pub genre_name: Field,
    /// Folded display artist and album: ties in the ranking are ordered by them.
    pub artist_sort: Field,
    pub album_sort: Field,
    /// What a hit is shown as.
    pub display_artist: Field,
    pub display_title: Field,
}

impl Fields {
    /// The text fields a word without a field name is looked for in.
    pub fn text_fields(&self) -> [Field; 6] {
        [
            self.artist,
            self.albumartist,
            self.album,
            self.title,
            self.genre,
            self.composer,
        ]
    }
}

/// The schema of the index and its fields.
pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let keyword = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_ANALYZER)
            .set_index_option(IndexRecordOption::Basic),
    );
    let sort_key = TextOptions::default().set_fast("raw");
    let number = NumericOptions::default().set_indexed().set_fast();
    let fields = Fields {
        track_id: b.add_u64_field(TRACK_ID, INDEXED | STORED | FAST),
        artist: b.add_text_field("artist", text.clone()),
        albumartist: b.add_text_field("albumartist", text.clone()),
        album: b.add_text_field("album", text.clone()),
        title: b.add_text_field("title", text.clone()),
        genre: b.add_text_field("genre", text.clone()),
        composer: b.add_text_field("composer", text),
        format: b.add_text_field("format", keyword.clone()),
        origin: b.add_text_field("origin", keyword),
        ext: b.add_text_field("ext", STRING | STORED),
        year: b.add_u64_field(YEAR, number.clone()),
        track: b.add_u64_field(TRACK_NUMBER, number),
        duration_ms: b.add_u64_field("duration_ms", FAST),
        added_secs: b.add_i64_field(ADDED_SECS, FAST),
        genre_name: b.add_text_field(GENRE_NAME, sort_key.clone()),
        artist_sort: b.add_text_field(ARTIST_SORT, sort_key.clone()),
        album_sort: b.add_text_field(ALBUM_SORT, sort_key),
        display_artist: b.add_text_field("display_artist", STORED),
        display_title: b.add_text_field("display_title", STORED),
    };
    (b.build(), fields)
}

/// Registers the analyzers on an index (they are not stored with it: every open needs this).
pub fn register_analyzers(index: &Index) {
    let analyzers = Analyzers::new();
    index.tokenizers().register(TEXT_ANALYZER, analyzers.text);
    index
        .tokenizers()
        .register(KEYWORD_ANALYZER, analyzers.keyword);
}

/// The index's analyzers, for turning query text into index terms.
#[derive(Clone)]
pub struct Analyzers {
    text: TextAnalyzer,
    keyword: TextAnalyzer,
}

impl std::fmt::Debug for Analyzers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Analyzers")
    }
}

impl Default for Analyzers {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyzers {
    pub fn new() -> Self {
        Self {
            text: TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .build(),
            keyword: TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .build(),
        }
    }

    /// The words of `text` as a text field indexes them (`"Björk's"` → `["bjork", "s"]`).
    pub fn words(&mut self, text: &str) -> Vec<String> {
        let mut stream = self.text.token_stream(text);
        let mut words = Vec::new();
        while let Some(token) = stream.next() {
            words.push(token.text.clone());
        }
        words
    }

    /// `text` as a keyword field indexes it: whole, lower-cased and folded.
    pub fn keyword(&mut self, text: &str) -> String {
        let mut stream = self.keyword.token_stream(text);
        let mut folded = String::new();
        while let Some(token) = stream.next() {
            folded.push_str(&token.text);
        }
        folded
    }
}

/// The tantivy document for one track.
pub fn document(f: &Fields, analyzers: &mut Analyzers, doc: &IndexDoc) -> TantivyDocument {
    let mut d = TantivyDocument::new();
    let artists = nonempty(&doc.artists);
    let album_artists = nonempty(&doc.album_artists);
    let album = doc
        .album
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let title = doc
        .title
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(&doc.file_stem);

    d.add_u64(f.track_id, doc.track.0);
    for name in artists.iter().chain(&album_artists) {
        d.add_text(f.artist, name);
    }
    let albumartists = if album_artists.is_empty() {
        &artists
    } else {
        &album_artists
    };
    for name in albumartists {
        d.add_text(f.albumartist, name);
    }
    if let Some(album) = album {
        d.add_text(f.album, album);
        d.add_text(f.album_sort, analyzers.keyword(album));
    }
    d.add_text(f.title, title);
    for genre in nonempty(&doc.genres) {
        d.add_text(f.genre, genre);
        d.add_text(f.genre_name, genre);
    }
    for composer in nonempty(&doc.composers) {
        d.add_text(f.composer, composer);
    }
    if let Some(year) = doc.year {
        d.add_u64(f.year, year.into());
    }
    if let Some(track) = doc.track_number {
        d.add_u64(f.track, track.into());
    }
    d.add_text(f.format, &doc.format);
    d.add_text(f.origin, &doc.origin);
    d.add_text(f.ext, &doc.ext);
    d.add_u64(f.duration_ms, doc.duration_ms);
    d.add_i64(f.added_secs, doc.added_secs);

    let shown_artist = [&artists, &album_artists]
        .into_iter()
        .find(|names| !names.is_empty())
        .map_or_else(|| UNKNOWN_ARTIST.to_owned(), |names| names.join(", "));
    d.add_text(f.artist_sort, analyzers.keyword(&shown_artist));
    d.add_text(f.display_artist, shown_artist);
    d.add_text(f.display_title, title);
    d
}

/// The trimmed, non-empty values of a tag.
fn nonempty(values: &[String]) -> Vec<&str> {
    values
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_cased_and_folded() {
        let mut a = Analyzers::new();
        assert_eq!(a.words("Björk's Début"), ["bjork", "s", "debut"]);
        assert_eq!(a.words("MOTÖRHEAD"), ["motorhead"]);
        assert_eq!(a.keyword("FLAC"), "flac");
        assert_eq!(a.keyword("/Música/Ñu"), "/musica/nu");
    }
}
