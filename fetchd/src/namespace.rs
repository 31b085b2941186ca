//! The tree the mount shows: rendered from the catalog's tracks with the path template, with
//! stable inode numbers, collisions resolved so no track hides another, and persisted so a
//! restart serves it at once. Lookups are answered from memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use musicfs_ipc::{Attr, DirEntry, FetchError, Ino, NodeKind, TrackId, TrackRef, ROOT_INO};

use crate::catalog::{CatalogError, InodeAllocator, Node};
use crate::names::NameSet;
use crate::template::{Templates, VIEWS_DIR};
use crate::track::{TrackInfo, TrackRecord};

#[derive(Debug, Default)]
pub struct Namespace {
    nodes: HashMap<Ino, Node>,
    children: HashMap<Ino, BTreeMap<String, Ino>>,
    tracks: HashMap<TrackId, Ino>,
    /// Catalogued tracks the tree does not show: copies behind a preferred origin's file.
    hidden: Vec<TrackId>,
}

impl Namespace {
    /// Rebuilds the in-memory tree from persisted nodes (a restart: no rendering needed).
    pub fn from_nodes(nodes: Vec<(Ino, Node)>) -> Self {
        let mut ns = Self::default();
        ns.nodes.insert(ROOT_INO, root_node(0));
        ns.children.insert(ROOT_INO, BTreeMap::new());
        for (ino, node) in nodes {
            ns.insert(ino, node);
        }
        // Search results link to a track's place in the main tree, never in a view.
        let main_tree: Vec<(TrackId, Ino)> = ns
            .nodes
            .iter()
            .filter_map(|(ino, node)| Some((node.track?.id, *ino)))
            .filter(|(_, ino)| !ns.in_views(*ino))
            .collect();
        ns.tracks = main_tree.into_iter().collect();
        ns
    }

    /// Records which of the catalog's tracks (`catalogued`) the tree leaves out.
    pub fn with_catalog(mut self, catalogued: impl IntoIterator<Item = TrackId>) -> Self {
        self.hidden = catalogued
            .into_iter()
            .filter(|id| !self.tracks.contains_key(id))
            .collect();
        self
    }

    /// Catalogued tracks not shown, as recorded by [`with_catalog`](Self::with_catalog).
    pub fn hidden(&self) -> &[TrackId] {
        &self.hidden
    }

    /// Whether a node lies under `/.views`.
    fn in_views(&self, mut ino: Ino) -> bool {
        while let Some(node) = self.nodes.get(&ino) {
            if node.parent == ROOT_INO {
                return node.name == VIEWS_DIR;
            }
            ino = node.parent;
        }
        false
    }

    fn insert(&mut self, ino: Ino, node: Node) {
        if ino == ROOT_INO {
            self.nodes.insert(ino, node);
            return;
        }
        self.children
            .entry(node.parent)
            .or_default()
            .insert(node.name.clone(), ino);
        if node.kind == NodeKind::Dir {
            self.children.entry(ino).or_default();
        }
        self.nodes.insert(ino, node);
    }

    /// Renders `tracks` with `template`. The same file on several origins (same path, size and
    /// tags: [`TrackRecord::copy_key`]) is shown once, as the copy on the origin with the best
    /// (lowest) `priority`; reads fail over to the other copies. Tracks are placed in a fixed
    /// order (by origin and path), so the same catalog always gives the same names. A file is
    /// marked `remote` when `remote` says so of its copy's origin. Returns the namespace and
    /// the node list to persist.
    pub fn build(
        tracks: &[(TrackId, TrackRecord)],
        templates: &Templates,
        priority: &dyn Fn(&str) -> i32,
        remote: &dyn Fn(&str) -> bool,
        inodes: &mut InodeAllocator<'_>,
    ) -> Result<(Self, Vec<(Ino, Node)>), CatalogError> {
        let mut preferred: HashMap<(&str, u64, &TrackInfo), &(TrackId, TrackRecord)> =
            HashMap::new();
        for track in tracks {
            let rank = |t: &(TrackId, TrackRecord)| {
                (priority(&t.1.location.origin), t.1.location.origin.clone())
            };
            preferred
                .entry(track.1.copy_key())
                .and_modify(|best| {
                    if rank(track) < rank(best) {
                        *best = track;
                    }
                })
                .or_insert(track);
        }
        let mut sorted: Vec<&(TrackId, TrackRecord)> = preferred.into_values().collect();
        sorted.sort_by(|a, b| a.1.location.cmp(&b.1.location));
        // Every place each track appears: the main tree first, then each view.
        let (order, rendered): (Vec<&(TrackId, TrackRecord)>, Vec<Vec<String>>) = sorted
            .iter()
            .flat_map(|t| {
                templates
                    .render_all(&t.1.info, &t.1.location)
                    .into_iter()
                    .map(move |parts| (*t, parts))
            })
            .unzip();

        // Directories first (a directory name is never renamed), then files claim names.
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for parts in &rendered {
            for depth in 1..parts.len() {
                dirs.insert(parts[..depth].join("/"));
            }
        }
        let mut names: HashMap<String, NameSet> = HashMap::new();
        for dir in &dirs {
            let (parent, name) = split_parent(dir);
            names.entry(parent.to_owned()).or_default().claim(name);
        }

        let mut out: Vec<(Ino, Node)> = Vec::new();
        let mut dir_inos: HashMap<String, Ino> = HashMap::new();
        dir_inos.insert(String::new(), ROOT_INO);
        for dir in &dirs {
            let ino = inodes.inode(&format!("d:{dir}"))?;
            dir_inos.insert(dir.clone(), ino);
        }
        let mut dir_mtime: HashMap<Ino, i128> = HashMap::new();
        for ((id, record), parts) in order.iter().zip(&rendered) {
            let parent_path = parts[..parts.len() - 1].join("/");
            let wanted = &parts[parts.len() - 1];
            let name = names.entry(parent_path.clone()).or_default().claim(wanted);
            let parent = dir_inos[&parent_path];
            let ino = inodes.inode(&format!("f:{parent_path}/{name}"))?;
            let mtime = dir_mtime.entry(parent).or_insert(record.mtime_ns);
            *mtime = (*mtime).max(record.mtime_ns);
            out.push((
                ino,
                Node {
                    parent,
                    name,
                    kind: NodeKind::File,
                    size: record.size,
                    mtime_ns: record.mtime_ns,
                    track: Some(TrackRef {
                        id: *id,
                        version: record.version,
                    }),
                    remote: remote(&record.location.origin),
                },
            ));
        }
        // Directory mtimes: the newest file below them. Deepest first so parents see children.
        let mut by_depth: Vec<&String> = dirs.iter().collect();
        by_depth.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for dir in by_depth {
            let ino = dir_inos[dir];
            let (parent_path, name) = split_parent(dir);
            let parent = dir_inos[parent_path];
            let mtime = dir_mtime.get(&ino).copied().unwrap_or(0);
            let up = dir_mtime.entry(parent).or_insert(mtime);
            *up = (*up).max(mtime);
            out.push((
                ino,
                Node {
                    parent,
                    name: name.to_owned(),
                    kind: NodeKind::Dir,
                    size: 0,
                    mtime_ns: mtime,
                    track: None,
                    remote: false,
                },
            ));
        }
        out.push((
            ROOT_INO,
            root_node(dir_mtime.get(&ROOT_INO).copied().unwrap_or(0)),
        ));
        out.sort_by_key(|(ino, _)| *ino);
        let ns = Self::from_nodes(out.clone()).with_catalog(tracks.iter().map(|t| t.0));
        Ok((ns, out))
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr, FetchError> {
        self.nodes
            .get(&ino)
            .map(|n| to_attr(ino, n))
            .ok_or(FetchError::NotFound)
    }

    pub fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, FetchError> {
        let children = self.dir(parent)?;
        let ino = children.get(name).ok_or(FetchError::NotFound)?;
        self.attr(*ino)
    }

    pub fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, FetchError> {
        Ok(self
            .dir(ino)?
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                attr: to_attr(*child, &self.nodes[child]),
            })
            .collect())
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<String, Ino>, FetchError> {
        match self.nodes.get(&ino) {
            None => Err(FetchError::NotFound),
            Some(n) if n.kind != NodeKind::Dir => Err(FetchError::NotADirectory),
            Some(_) => Ok(self
                .children
                .get(&ino)
                .expect("every directory has a child map")),
        }
    }

    /// Where a track is shown, as a path relative to the mount's root.
    pub fn path_of(&self, track: TrackId) -> Option<String> {
        let mut ino = *self.tracks.get(&track)?;
        let mut parts = Vec::new();
        while ino != ROOT_INO {
            let node = self.nodes.get(&ino)?;
            parts.push(node.name.as_str());
            ino = node.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// The node at a path relative to the mount's root (`""` is the root); components are
    /// names, separated by `/`.
    pub fn resolve(&self, path: &str) -> Option<Ino> {
        let mut ino = ROOT_INO;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            ino = *self.children.get(&ino)?.get(name)?;
        }
        Some(ino)
    }

    /// Every track at or below a node, each once, with its size.
    pub fn tracks_under(&self, ino: Ino) -> Vec<(TrackRef, u64)> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![ino];
        while let Some(ino) = stack.pop() {
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            if let Some(track) = node.track {
                if seen.insert(track.id) {
                    out.push((track, node.size));
                }
            }
            if let Some(children) = self.children.get(&ino) {
                stack.extend(children.values().rev());
            }
        }
        out
    }

    /// The track after this one in its directory of the main tree (the next song of an album).
    pub fn next_track(&self, track: TrackId) -> Option<TrackRef> {
        let ino = self.tracks.get(&track)?;
        let node = self.nodes.get(ino)?;
        let siblings = self.children.get(&node.parent)?;
        siblings
            .range::<str, _>((
                std::ops::Bound::Excluded(node.name.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .find_map(|(_, ino)| self.nodes.get(ino)?.track)
    }

    /// (tracks in the main tree, directories everywhere).
    pub fn counts(&self) -> (u64, u64) {
        let dirs = self
            .nodes
            .values()
            .filter(|n| n.kind == NodeKind::Dir)
            .count();
        (self.tracks.len() as u64, dirs as u64)
    }
}

fn root_node(mtime_ns: i128) -> Node {
    Node {
        parent: ROOT_INO,
        name: String::new(),
        kind: NodeKind::Dir,
        size: 0,
        mtime_ns,
        track: None,
        remote: false,
    }
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn to_attr(ino: Ino, node: &Node) -> Attr {
    Attr {
        ino,
        kind: node.kind,
        size: node.size,
        mtime_secs: node.mtime_ns.div_euclid(1_000_000_000) as i64,
        mtime_nanos: node.mtime_ns.rem_euclid(1_000_000_000) as u32,
        track: node.track,
        direct_io: node.remote,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::{Batch, Catalog};
    use crate::track::{Location, TrackInfo};
    use musicfs_ipc::config::DEFAULT_TEMPLATE;

    pub(crate) fn info(artist: &str, album: &str, title: &str, track: u32) -> TrackInfo {
        TrackInfo {
            artists: vec![artist.into()],
            album: Some(album.into()),
            title: Some(title.into()),
            track: Some(track),
            ..Default::default()
        }
    }

    pub(crate) fn build(files: Vec<(&str, TrackInfo)>) -> (tempfile::TempDir, Catalog, Namespace) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let upserts = files
            .into_iter()
            .map(|(p, i)| {
                let loc = Location {
                    origin: "/o".into(),
                    path: p.into(),
                };
                (loc, 100, 1_700_000_000_000_000_000, i)
            })
            .collect();
        catalog
            .apply(Batch {
                upserts,
                ..Default::default()
            })
            .unwrap();
        let templates = Templates::parse(DEFAULT_TEMPLATE, &views()).unwrap();
        let tracks = catalog.tracks().unwrap();
        let mut alloc = catalog.inode_allocator().unwrap();
        let (ns, nodes) =
            Namespace::build(&tracks, &templates, &|_| 0, &|_| false, &mut alloc).unwrap();
        alloc.commit(&nodes).unwrap();
        (dir, catalog, ns)
    }

    /// One view, by genre.
    fn views() -> std::collections::BTreeMap<String, String> {
        [(
            "By Genre".to_owned(),
            "$genre/$albumartist/$title.$ext".to_owned(),
        )]
        .into()
    }

    fn resolve(ns: &Namespace, path: &str) -> Result<Attr, FetchError> {
        let mut attr = ns.attr(ROOT_INO)?;
        for part in path.split('/') {
            attr = ns.lookup(attr.ino, part)?;
        }
        Ok(attr)
    }

    #[test]
    fn tracks_land_where_their_tags_say() {
        let (_d, _c, ns) = build(vec![
            ("x/1.flac", info("A", "B", "One", 1)),
            ("x/2.flac", info("A", "B", "Two", 2)),
        ]);
        assert_eq!(resolve(&ns, "A/B/01 One.flac").unwrap().size, 100);
        let names: Vec<String> = ns
            .readdir(resolve(&ns, "A/B").unwrap().ino)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["01 One.flac", "02 Two.flac"]);
        let one = resolve(&ns, "A/B/01 One.flac").unwrap().track.unwrap();
        let two = resolve(&ns, "A/B/02 Two.flac").unwrap().track.unwrap();
        assert_eq!(ns.next_track(one.id), Some(two));
        assert_eq!(ns.next_track(two.id), None);
    }

    #[test]
    fn views_show_the_same_tracks_under_their_own_template() {
        let mut one = info("A", "B", "One", 1);
        one.genres = vec!["Jazz".into()];
        let (_d, _c, ns) = build(vec![("x/1.flac", one)]);
        let main = resolve(&ns, "A/B/01 One.flac").unwrap();
        let view = resolve(&ns, ".views/By Genre/Jazz/A/One.flac").unwrap();
        assert_eq!(main.track, view.track);
        assert_ne!(main.ino, view.ino);
        // Search results point into the main tree, never into a view.
        assert_eq!(
            ns.path_of(main.track.unwrap().id).unwrap(),
            "A/B/01 One.flac"
        );
    }

    #[test]
    fn same_rendered_name_never_hides_a_track() {
        let (_d, _c, ns) = build(vec![
            ("b.mp3", info("A", "B", "Same", 1)),
            ("a.mp3", info("A", "B", "Same", 1)),
        ]);
        let album = resolve(&ns, "A/B").unwrap().ino;
        let entries = ns.readdir(album).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["01 Same (2).mp3", "01 Same.mp3"]);
        // Deterministic: the file that sorts first by origin path keeps the plain name.
        let plain = resolve(&ns, "A/B/01 Same.mp3").unwrap();
        let id = plain.track.unwrap().id;
        assert!(ns.path_of(id).unwrap().ends_with("01 Same.mp3"));
    }

    #[test]
    fn inodes_are_stable_across_rebuilds_and_reload() {
        let (_d, catalog, ns) = build(vec![("1.ogg", info("A", "B", "One", 1))]);
        let before = resolve(&ns, "A/B/01 One.ogg").unwrap().ino;
        let tracks = catalog.tracks().unwrap();
        let templates = Templates::parse(DEFAULT_TEMPLATE, &views()).unwrap();
        let mut alloc = catalog.inode_allocator().unwrap();
        let (again, nodes) =
            Namespace::build(&tracks, &templates, &|_| 0, &|_| false, &mut alloc).unwrap();
        alloc.commit(&nodes).unwrap();
        assert_eq!(resolve(&again, "A/B/01 One.ogg").unwrap().ino, before);
        let reloaded = Namespace::from_nodes(catalog.nodes().unwrap());
        assert_eq!(resolve(&reloaded, "A/B/01 One.ogg").unwrap().ino, before);
    }

    #[test]
    fn the_same_file_on_two_origins_is_shown_once_from_the_preferred_origin() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let tagged = |origin: &str, path: &str, size, title: &str| {
            let loc = Location {
                origin: origin.into(),
                path: path.into(),
            };
            (loc, size, 0, info("A", "B", title, 1))
        };
        let at =
            |origin: &str, path: &str, size| tagged(origin, path, size, &path.replace('/', "-"));
        let upserts = vec![
            at("sftp://nas/m", "x/1.flac", 100),
            at("s3://b", "x/1.flac", 100),
            // Same path, other size: a different file, shown too.
            at("s3://b", "y/1.flac", 100),
            at("sftp://nas/m", "y/1.flac", 200),
            // Same path and size, other tags (retagged in its padding on one origin): both.
            tagged("s3://b", "z/1.flac", 100, "old"),
            tagged("sftp://nas/m", "z/1.flac", 100, "new"),
        ];
        catalog
            .apply(Batch {
                upserts,
                ..Default::default()
            })
            .unwrap();
        let tracks = catalog.tracks().unwrap();
        let templates = Templates::parse("$title.$ext", &Default::default()).unwrap();
        let origin_of = |ns: &Namespace, name: &str| {
            let id = resolve(ns, name).unwrap().track.unwrap().id;
            let (_, record) = tracks.iter().find(|(i, _)| *i == id).unwrap();
            record.location.origin.clone()
        };
        for (preferred, other) in [("s3://b", "sftp://nas/m"), ("sftp://nas/m", "s3://b")] {
            let priority = |name: &str| if name == preferred { 1 } else { 2 };
            let mut alloc = catalog.inode_allocator().unwrap();
            let (ns, nodes) =
                Namespace::build(&tracks, &templates, &priority, &|_| false, &mut alloc).unwrap();
            let names: Vec<String> = ns
                .readdir(ROOT_INO)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(names.len(), 5, "{names:?}");
            assert_eq!(origin_of(&ns, "old.flac"), "s3://b");
            assert_eq!(origin_of(&ns, "new.flac"), "sftp://nas/m");
            assert_eq!(origin_of(&ns, "x-1.flac.flac"), preferred);
            assert_ne!(origin_of(&ns, "x-1.flac.flac"), other);
            // The copy left out is the one hidden, also when the tree is read back at start-up.
            let hidden_copy = tracks
                .iter()
                .find(|(_, r)| r.location.origin == other && r.location.path == "x/1.flac")
                .unwrap()
                .0;
            assert_eq!(ns.hidden(), [hidden_copy]);
            let restarted = Namespace::from_nodes(nodes).with_catalog(catalog.track_ids().unwrap());
            assert_eq!(restarted.hidden(), [hidden_copy]);
        }
    }

    #[test]
    fn paths_resolve_to_nodes_and_subtrees_list_their_tracks_once() {
        let mut jazz = info("A", "B", "One", 1);
        jazz.genres = vec!["Jazz".into()];
        let (_d, _c, ns) = build(vec![
            ("1.flac", jazz),
            ("2.flac", info("A", "B", "Two", 2)),
            ("3.flac", info("C", "D", "Three", 1)),
        ]);
        assert_eq!(ns.resolve(""), Some(ROOT_INO));
        assert_eq!(ns.resolve("/A/B/"), ns.resolve("A/B"));
        assert_eq!(ns.resolve("A/Nope"), None);
        assert_eq!(ns.resolve("A/B/01 One.flac/x"), None);
        let album = ns.resolve("A/B").unwrap();
        assert_eq!(ns.tracks_under(album).len(), 2);
        let file = ns.resolve("A/B/02 Two.flac").unwrap();
        assert_eq!(
            ns.tracks_under(file),
            [(ns.attr(file).unwrap().track.unwrap(), 100)]
        );
        // The root holds every track once, though views show them again.
        assert_eq!(ns.tracks_under(ROOT_INO).len(), 3);
        let view = ns.resolve(".views/By Genre/Jazz").unwrap();
        assert_eq!(ns.tracks_under(view).len(), 1);
    }

    #[test]
    fn lookup_errors() {
        let (_d, _c, ns) = build(vec![("1.ogg", info("A", "B", "One", 1))]);
        assert_eq!(ns.lookup(ROOT_INO, "nope"), Err(FetchError::NotFound));
        let file = resolve(&ns, "A/B/01 One.ogg").unwrap().ino;
        assert_eq!(ns.lookup(file, "x"), Err(FetchError::NotADirectory));
    }
}
