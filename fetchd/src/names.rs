//! Making tag text safe as a file name, and resolving names that collide.

use std::collections::HashMap;

/// Longest name (bytes) Linux accepts for one path component.
pub const NAME_MAX: usize = 255;
/// Room kept free at the end of long names for a collision suffix such as ` (12)`.
const SUFFIX_ROOM: usize = 8;

/// Turns arbitrary tag text into one safe path component: no `/` (shown as `∕`, U+2215), no NUL
/// or control characters, not `.`/`..`, not hidden (a leading `.` gets a `_` in front, since
/// `.search` and friends are reserved), at most [`NAME_MAX`] bytes (cut at a character boundary,
/// keeping the extension). An empty result becomes `fallback`.
pub fn sanitize(text: &str, fallback: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter_map(|c| match c {
            '/' => Some('∕'),
            '\0' => None,
            c if c.is_control() => Some(' '),
            c => Some(c),
        })
        .collect();
    let mut name = cleaned.trim().to_owned();
    if name.is_empty() {
        name = if fallback.trim().is_empty() || fallback == "." || fallback == ".." {
            "_".to_owned()
        } else {
            sanitize(fallback, "_")
        };
    }
    if name.starts_with('.') {
        name.insert(0, '_');
    }
    shorten(&name, NAME_MAX - SUFFIX_ROOM)
}

/// Cuts `name` to at most `max` bytes, keeping a short extension, at a character boundary.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let keep = max.saturating_sub(ext.len());
    let mut end = keep.min(stem.len());
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", stem[..end].trim_end(), ext)
}

/// `("name", ".ext")` when the name has a short extension, else `(name, "")`.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 6 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// Gives every wanted name in one directory a unique name. Callers offer names in a
/// deterministic order; the first keeps its name, later ones get ` (2)`, ` (3)`, ... before
/// the extension. Names already taken by directories are offered first by the caller.
#[derive(Debug, Default)]
pub struct NameSet {
    taken: HashMap<String, u32>,
}

impl NameSet {
    pub fn claim(&mut self, wanted: &str) -> String {
        if !self.taken.contains_key(wanted) {
            self.taken.insert(wanted.to_owned(), 1);
            return wanted.to_owned();
        }
        let (stem, ext) = split_extension(wanted);
        let mut n = self.taken[wanted];
        loop {
            n += 1;
            let candidate = format!("{stem} ({n}){ext}");
            if !self.taken.contains_key(&candidate) {
                self.taken.insert(wanted.to_owned(), n);
                self.taken.insert(candidate.clone(), 1);
                return candidate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_nul_and_controls() {
        assert_eq!(sanitize("AC/DC\0\n", "x"), "AC∕DC");
    }

    #[test]
    fn dots_and_hidden_names() {
        assert_eq!(sanitize(".", "x"), "_.");
        assert_eq!(sanitize("..", "x"), "_..");
        assert_eq!(sanitize(".search", "x"), "_.search");
        assert_eq!(sanitize("   ", "fallback"), "fallback");
        assert_eq!(sanitize("", ".."), "_");
    }

    #[test]
    fn long_names_are_cut_at_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.flac", "é".repeat(300));
        let cut = sanitize(&long, "x");
        assert!(cut.len() <= NAME_MAX - SUFFIX_ROOM, "{}", cut.len());
        assert!(cut.ends_with(".flac"));
        assert!(cut.starts_with('é'));
    }

    #[test]
    fn collisions_get_numbered_deterministically() {
        let mut set = NameSet::default();
        assert_eq!(set.claim("01 Song.mp3"), "01 Song.mp3");
        assert_eq!(set.claim("01 Song.mp3"), "01 Song (2).mp3");
        assert_eq!(set.claim("01 Song.mp3"), "01 Song (3).mp3");
        assert_eq!(set.claim("01 Song (2).mp3"), "01 Song (2) (2).mp3");
        assert_eq!(set.claim("Album"), "Album");
        assert_eq!(set.claim("Album"), "Album (2)");
    }
}
