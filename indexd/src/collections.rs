//! Collections: saved queries, kept in `<state>/index/collections.json`, and the built-in ones
//! computed from the index.
//!
//! Built in: `Recently Added` (`recent:200`), one per decade present (`1970s` →
//! `year:1970..1979`), one per genre present (`Rock` → `genre:"Rock"`). A saved collection may
//! not take a built-in's name; if a genre or decade appears later under a saved collection's
//! name, the saved one wins and the built-in is not listed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use musicfs_ipc::{Collection, IndexError};
use tantivy::Searcher;

use crate::schema::{GENRE_NAME, YEAR};

pub const FILE_NAME: &str = "collections.json";
pub const RECENTLY_ADDED: &str = "Recently Added";
pub const RECENTLY_ADDED_QUERY: &str = "recent:200";

/// The saved collections, as on disk.
#[derive(Debug)]
pub struct SavedCollections {
    path: PathBuf,
    saved: BTreeMap<String, String>,
}

impl SavedCollections {
    /// Loads `<index_dir>/collections.json`. A missing file is no collections; an unreadable
    /// one is kept as `collections.json.broken` and the collections start empty.
    pub fn load(index_dir: &Path) -> std::io::Result<Self> {
        let path = index_dir.join(FILE_NAME);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(saved) => saved,
                Err(e) => {
                    let broken = path.with_extension("json.broken");
                    tracing::warn!(
                        "{} is unreadable ({e}): moved to {}, starting with no saved collections",
                        path.display(),
                        broken.display()
                    );
                    std::fs::rename(&path, &broken)?;
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Self { path, saved })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.saved.get(name).map(String::as_str)
    }

    /// Saves (or replaces) a collection, on disk before it returns.
    pub fn insert(&mut self, name: &str, query: &str) -> std::io::Result<()> {
        let old = self.saved.insert(name.to_owned(), query.to_owned());
        self.persist().inspect_err(|_| match old {
            Some(old) => {
                self.saved.insert(name.to_owned(), old);
            }
            None => {
                self.saved.remove(name);
            }
        })
    }

    /// Removes a collection; false if there was none of that name.
    pub fn remove(&mut self, name: &str) -> std::io::Result<bool> {
        let Some(old) = self.saved.remove(name) else {
            return Ok(false);
        };
        self.persist().inspect_err(|_| {
            self.saved.insert(name.to_owned(), old);
        })?;
        Ok(true)
    }

    /// Built-ins first (except those a saved one shadows), then the saved ones by name.
    pub fn list(&self, builtins: Vec<Collection>) -> Vec<Collection> {
        let mut all: Vec<Collection> = builtins
            .into_iter()
            .filter(|c| !self.saved.contains_key(&c.name))
            .collect();
        all.extend(self.saved.iter().map(|(name, query)| Collection {
            name: name.clone(),
            query: query.clone(),
            builtin: false,
        }));
        all
    }

    /// Writes the file whole: temp file, fsync, rename.
    fn persist(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(&self.saved)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Why a name cannot be a collection's (it is a directory name under `/.collections/`).
pub fn check_name(name: &str) -> Result<(), IndexError> {
    let bad = |why: &str| {
        Err(IndexError::Index(format!(
            "bad collection name {name:?}: {why}"
        )))
    };
    if name.trim().is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return bad("it may not start with '.'");
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return bad("it may not contain '/' or control characters");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    Ok(())
}

/// The built-in collections of what `searcher` sees.
pub fn builtins(searcher: &Searcher) -> tantivy::Result<Vec<Collection>> {
    let (years, genres) = years_and_genres(searcher)?;
    let builtin = |name: String, query: String| Collection {
        name,
        query,
        builtin: true,
    };
    let mut all = vec![builtin(
        RECENTLY_ADDED.to_owned(),
        RECENTLY_ADDED_QUERY.to_owned(),
    )];
    let decades: BTreeSet<u64> = years
        .into_iter()
        .filter(|y| (1000..=9999).contains(y))
        .map(|y| y / 10 * 10)
        .collect();
    for decade in decades {
        all.push(builtin(
            format!("{decade}s"),
            format!("year:{decade}..{}", decade + 9),
        ));
    }
    for genre in genres {
        let name = genre.replace('/', "\u{2215}");
        if all.iter().any(|c| c.name == name) || check_name(&name).is_err() {
            continue;
        }
        let query = format!("genre:\"{}\"", genre.replace('"', " "));
        if crate::query::parse(&query).is_ok() {
            all.push(builtin(name, query));
        }
    }
    Ok(all)
}

/// The years and genres of the live documents. Genres that differ only in case are one,
/// named by the first spelling in sort order (`Rock` before `rock`).
fn years_and_genres(searcher: &Searcher) -> tantivy::Result<(BTreeSet<u64>, Vec<String>)> {
    let mut years = BTreeSet::new();
    let mut genres: BTreeMap<String, String> = BTreeMap::new();
    let mut name = String::new();
    for segment in searcher.segment_readers() {
        let year = segment.fast_fields().u64(YEAR)?;
        let genre = segment.fast_fields().str(GENRE_NAME)?;
        let mut ords = BTreeSet::new();
        for doc in segment.doc_ids_alive() {
            years.extend(year.values_for_doc(doc));
            if let Some(genre) = &genre {
                ords.extend(genre.term_ords(doc));
            }
        }
        let Some(genre) = &genre else { continue };
        for ord in ords {
            name.clear();
            if genre.ord_to_str(ord, &mut name)? {
                let key = name.to_lowercase();
                match genres.get(&key) {
                    Some(known) if *known <= name => {}
                    _ => {
                        genres.insert(key, name.clone());
                    }
                }
            }
        }
    }
    Ok((years, genres.into_values().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_collections_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut saved = SavedCollections::load(dir.path()).unwrap();
        saved
            .insert("Jazz 60s", "genre:jazz year:1960..1969")
            .unwrap();
        saved.insert("Beatles", "artist:beatles").unwrap();
        saved.insert("Beatles", "artist:\"the beatles\"").unwrap();
        assert!(saved.remove("Jazz 60s").unwrap());
        assert!(!saved.remove("Jazz 60s").unwrap());
        let again = SavedCollections::load(dir.path()).unwrap();
        assert_eq!(again.get("Beatles"), Some("artist:\"the beatles\""));
        assert_eq!(again.get("Jazz 60s"), None);
        assert!(!dir.path().join("collections.json.tmp").exists());
    }

    #[test]
    fn an_unreadable_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{ not json").unwrap();
        let saved = SavedCollections::load(dir.path()).unwrap();
        assert_eq!(saved.list(Vec::new()), Vec::new());
        assert!(dir.path().join("collections.json.broken").exists());
    }

    #[test]
    fn saved_names_shadow_builtins_in_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut saved = SavedCollections::load(dir.path()).unwrap();
        saved.insert("1970s", "year:1975").unwrap();
        let builtin = Collection {
            name: "1970s".into(),
            query: "year:1970..1979".into(),
            builtin: true,
        };
        let list = saved.list(vec![builtin]);
        assert_eq!(list.len(), 1);
        assert!(!list[0].builtin);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("Road trip").is_ok());
        for bad in ["", "  ", ".", "..", ".hidden", "a/b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
