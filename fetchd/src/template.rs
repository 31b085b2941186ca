//! Path templates: `$albumartist/$album ($year)/$disc-$track $title.$ext` rendered for a track.
//!
//! A variable without a value drops out together with the separator that belongs to it, so a
//! track without a year lands in `Album`, not `Album ()`, and a single-disc album gives
//! `01 Title.flac`, not `-01 Title.flac`. `$disc` has a value only for multi-disc albums.

use musicfs_ipc::config::check_template;

use crate::names::sanitize;
use crate::track::{Location, TrackInfo};

pub const UNKNOWN_ARTIST: &str = "Unknown Artist";
pub const UNKNOWN_ALBUM: &str = "Unknown Album";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// The directory holding the configured views (`/.views/<name>/...`).
pub const VIEWS_DIR: &str = ".views";

/// The main tree's template and each view's, as configured.
#[derive(Debug, Clone)]
pub struct Templates {
    main: Template,
    views: Vec<(String, Template)>,
}

impl Templates {
    /// Parses the main template and every `(name, template)` view; an error names the view.
    pub fn parse(
        main: &str,
        views: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let views = views
            .iter()
            .map(|(name, text)| {
                let template = Template::parse(text).map_err(|e| format!("view {name}: {e}"))?;
                Ok((sanitize(name, "view"), template))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            main: Template::parse(main)?,
            views,
        })
    }

    /// Every path a track appears at: the main tree's, then `.views/<name>/...` for each view.
    pub fn render_all(&self, info: &TrackInfo, location: &Location) -> Vec<Vec<String>> {
        let mut all = vec![self.main.render(info, location)];
        for (name, template) in &self.views {
            let mut parts = vec![VIEWS_DIR.to_owned(), name.clone()];
            parts.extend(template.render(info, location));
            all.push(parts);
        }
        all
    }
}

/// A parsed template: one list of pieces per path component.
#[derive(Debug, Clone)]
pub struct Template {
    components: Vec<Vec<Piece>>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        check_template(text)?;
        let components = text
            .split('/')
            .filter(|c| !c.is_empty())
            .map(parse_component)
            .collect();
        Ok(Self { components })
    }

    /// The sanitised path components for a track; never empty, never `.`/`..`.
    pub fn render(&self, info: &TrackInfo, location: &Location) -> Vec<String> {
        let last = self.components.len() - 1;
        self.components
            .iter()
            .enumerate()
            .map(|(i, pieces)| {
                let text = render_component(pieces, |name| value(name, info, location));
                let fallback = if i == last { location.stem() } else { "_" };
                sanitize(&text, fallback)
            })
            .collect()
    }
}

fn parse_component(component: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = component;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            pieces.push(Piece::Text(rest[..i].to_owned()));
        }
        rest = &rest[i + 1..];
        let (name, after) = match rest.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').unwrap_or(braced.len());
                (&braced[..end], &braced[(end + 1).min(braced.len())..])
            }
            None => {
                let end = rest
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        pieces.push(Piece::Var(name.to_owned()));
        rest = after;
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    pieces
}

/// Renders one component. An empty variable removes the separator text that follows it (or,
/// at the end, the one before it), and brackets left enclosing nothing are removed.
fn render_component(pieces: &[Piece], value: impl Fn(&str) -> String) -> String {
    let values: Vec<Option<String>> = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => Some(t.clone()),
            Piece::Var(name) => Some(value(name)).filter(|v| !v.is_empty()),
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut drop_next_separator = false;
    for (piece, val) in pieces.iter().zip(&values) {
        match (piece, val) {
            (Piece::Var(_), None) => {
                // Drop a dangling opening bracket or separator before the empty variable if
                // nothing but separators follows; otherwise drop the separator after it.
                if let Some(prev) = out.last_mut() {
                    let trimmed = trim_open_brackets(prev);
                    if trimmed.len() != prev.len() {
                        *prev = trimmed;
                        drop_next_separator = true;
                        continue;
                    }
                }
                drop_next_separator = true;
            }
            (Piece::Text(t), Some(_)) if drop_next_separator => {
                drop_next_separator = false;
                let rest = t.trim_start_matches(is_closing_or_separator);
                out.push(rest.to_owned());
            }
            (_, Some(v)) => {
                drop_next_separator = false;
                out.push(v.clone());
            }
            (Piece::Text(_), None) => {}
        }
    }
    let ends_empty = matches!(values.last(), Some(None));
    let joined = out.concat();
    joined
        .trim_end_matches(|c: char| c == ' ' || c == '-' || c == '_' || (ends_empty && c == '.'))
        .trim()
        .to_owned()
}

fn trim_open_brackets(text: &str) -> String {
    let trimmed = text.trim_end_matches(['(', '[', '{']);
    if trimmed.len() == text.len() {
        return text.to_owned();
    }
    trimmed.trim_end().to_owned()
}

fn is_closing_or_separator(c: char) -> bool {
    matches!(c, ')' | ']' | '}' | ' ' | '-' | '_' | ',' | ';')
}

fn first(values: &[String]) -> Option<&str> {
    values.iter().map(|s| s.trim()).find(|s| !s.is_empty())
}

fn joined(values: &[String]) -> String {
    let parts: Vec<&str> = values
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    parts.join(", ")
}

fn value(name: &str, info: &TrackInfo, location: &Location) -> String {
    let nonempty = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match name {
        "albumartist" => first(&info.album_artists)
            .or_else(|| first(&info.artists))
            .unwrap_or(UNKNOWN_ARTIST)
            .to_owned(),
        "artist" => {
            let artists = joined(&info.artists);
            if artists.is_empty() {
                UNKNOWN_ARTIST.to_owned()
            } else {
                artists
            }
        }
        "album" => nonempty(&info.album).unwrap_or_else(|| UNKNOWN_ALBUM.to_owned()),
        "title" => nonempty(&info.title).unwrap_or_else(|| location.stem().to_owned()),
        "track" => info.track.map(|n| format!("{n:02}")).unwrap_or_default(),
        "disc" => match (info.disc, info.disc_total) {
            (Some(d), total) if d > 1 || total.is_some_and(|t| t > 1) => d.to_string(),
            _ => String::new(),
        },
        "year" => info.year().unwrap_or_default(),
        "genre" => first(&info.genres).unwrap_or_default().to_owned(),
        "composer" => joined(&info.composers),
        "ext" => location.extension().unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicfs_ipc::config::DEFAULT_TEMPLATE;

    fn loc(path: &str) -> Location {
        Location {
            origin: "/music".into(),
            path: path.into(),
        }
    }

    fn info() -> TrackInfo {
        TrackInfo {
            artists: vec!["Led Zeppelin".into()],
            album: Some("Led Zeppelin".into()),
            title: Some("Good Times Bad Times".into()),
            track: Some(1),
            date: Some("1969-01-12".into()),
            ..Default::default()
        }
    }

    fn render(template: &str, info: &TrackInfo, path: &str) -> String {
        Template::parse(template)
            .unwrap()
            .render(info, &loc(path))
            .join("/")
    }

    #[test]
    fn default_template_full_tags() {
        assert_eq!(
            render(DEFAULT_TEMPLATE, &info(), "a/b.flac"),
            "Led Zeppelin/Led Zeppelin (1969)/01 Good Times Bad Times.flac"
        );
    }

    #[test]
    fn multi_disc_shows_disc() {
        let mut i = info();
        i.disc = Some(2);
        i.disc_total = Some(2);
        assert_eq!(
            render(DEFAULT_TEMPLATE, &i, "x.mp3"),
            "Led Zeppelin/Led Zeppelin (1969)/2-01 Good Times Bad Times.mp3"
        );
    }

    #[test]
    fn missing_parts_drop_out_cleanly() {
        let mut i = info();
        i.date = None;
        i.track = None;
        assert_eq!(
            render(DEFAULT_TEMPLATE, &i, "x.ogg"),
            "Led Zeppelin/Led Zeppelin/Good Times Bad Times.ogg"
        );
    }

    #[test]
    fn untagged_file_goes_to_unknown_with_its_file_name() {
        assert_eq!(
            render(DEFAULT_TEMPLATE, &TrackInfo::default(), "rips/track 07.wav"),
            "Unknown Artist/Unknown Album/track 07.wav"
        );
    }

    #[test]
    fn album_artist_wins_over_artist() {
        let mut i = info();
        i.album_artists = vec!["Various Artists".into()];
        assert!(render(DEFAULT_TEMPLATE, &i, "x.flac").starts_with("Various Artists/"));
    }

    #[test]
    fn braces_and_other_variables() {
        let mut i = info();
        i.genres = vec!["Rock".into(), "Blues".into()];
        assert_eq!(
            render("${genre}/$artist - ${title}.$ext", &i, "x.mp3"),
            "Rock/Led Zeppelin - Good Times Bad Times.mp3"
        );
    }

    #[test]
    fn slash_in_a_tag_does_not_make_a_directory() {
        let mut i = info();
        i.artists = vec!["AC/DC".into()];
        let path = render(DEFAULT_TEMPLATE, &i, "x.mp3");
        assert_eq!(path.split('/').count(), 3, "{path}");
        assert!(path.starts_with("AC∕DC/"), "{path}");
    }
}
