//! Directory pages in HTML, as most web servers make them (nginx's and Apache's autoindex,
//! lighttpd, `rclone serve http`, Python's `http.server`): the children of a directory are
//! the links of its page that lead one level down from it. The sizes and dates such pages show
//! are rounded, localised or missing, so they are not parsed: the walk asks each file with a
//! HEAD. What the page says beside each link (the text up to the next link, tags left out) is
//! kept as written, so that a later walk can tell a file whose row reads the same.
//!
//! A link counts when, resolved against the page's URL, it stays on the same server, has no
//! query or fragment (sort links, anchors) and names exactly one path segment below the page
//! (`name` for a file, `name/` for a directory). Parent links, links elsewhere and the page's
//! own links to itself are left out; a name that is not UTF-8 or holds a `/` once decoded is
//! reported, not listed.

use musicfs_ipc::origin::percent_decoded;
use url::Url;

/// What a directory page links to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// In page order, each name once.
    pub children: Vec<Child>,
    /// `(link as written, why it is not listed)` for child links whose name cannot be a path.
    pub unusable: Vec<(String, &'static str)>,
}

/// One child a directory page links to.
#[derive(Debug, PartialEq, Eq)]
pub struct Child {
    pub name: String,
    pub dir: bool,
    /// The page's text after each link to the child, up to the next link: its row (the name
    /// as shown, a date and a size on most servers' pages), tags left out, runs of white space
    /// made one space.
    pub said: String,
}

/// Whether `body` looks like an HTML page (and not, say, a JSON listing or a file).
pub fn is_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.trim_start().starts_with('<') && (head.contains("<html") || head.contains("<!doctype"))
        || contains_link(body)
}

fn contains_link(body: &[u8]) -> bool {
    body.windows(3).any(|w| w.eq_ignore_ascii_case(b"<a "))
}

/// The children the page at `page_url` links to.
pub fn children(page: &str, page_url: &Url) -> Page {
    let mut out = Page::default();
    let mut seen = std::collections::HashMap::new();
    let links = links(page);
    for (i, link) in links.iter().enumerate() {
        let href = unescape(link.href);
        let said_until = links.get(i + 1).map_or(page.len(), |next| next.start);
        let said = text_of(&page[link.end..said_until]);
        match child_of(page_url, &href) {
            None => {}
            Some(Err(why)) => out.unusable.push((href, why)),
            Some(Ok((name, dir))) => match seen.get(&name) {
                Some(&at) => {
                    let child: &mut Child = &mut out.children[at];
                    if !said.is_empty() {
                        if !child.said.is_empty() {
                            child.said.push(' ');
                        }
                        child.said.push_str(&said);
                    }
                }
                None => {
                    seen.insert(name.clone(), out.children.len());
                    out.children.push(Child { name, dir, said });
                }
            },
        }
    }
    out
}

/// The text of a stretch of HTML: tags left out, runs of white space made one space, trimmed.
/// Character references stay as written.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let (mut in_tag, mut space) = (false, false);
    for c in html.chars() {
        match c {
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            '<' => (in_tag, space) = (true, true),
            c if c.is_whitespace() => space = true,
            c => {
                if space && !text.is_empty() {
                    text.push(' ');
                }
                space = false;
                text.push(c);
            }
        }
    }
    text
}

/// What `href`, a link on the listing of the directory at `dir`, names: nothing unless,
/// resolved against `dir`, it stays on the same server, has no query or fragment and leads
/// exactly one level down; then the child's name and whether the link ends in `/` (a
/// directory), or why the name cannot be a path. Paths are compared percent-decoded: servers
/// escape other characters than the URL asked for (`&`, `%C3%A9` against `%c3%a9`).
pub fn child_of(dir: &Url, href: &str) -> Option<Result<(String, bool), &'static str>> {
    let target = dir.join(href).ok()?;
    if target.origin() != dir.origin() {
        return None;
    }
    member_of(dir, &target)
}

/// [`child_of`] for a member of a WebDAV listing, whose server may name itself otherwise than
/// the URL asked it (IIS writes full URLs with its own host name; a proxy in front changes the
/// port): only the path counts. Nothing is fetched from the host a member names.
pub fn dav_member_of(dir: &Url, href: &str) -> Option<Result<(String, bool), &'static str>> {
    member_of(dir, &dir.join(href).ok()?)
}

fn member_of(dir: &Url, target: &Url) -> Option<Result<(String, bool), &'static str>> {
    if target.query().is_some() || target.fragment().is_some() {
        return None;
    }
    let (parent, _) = segments(dir)?;
    let (mut path, slash) = segments(target)?;
    let child = path.pop()?;
    let same = |a: &str, b: &str| {
        a == b || percent_decoded(a).is_some_and(|a| Some(a) == percent_decoded(b))
    };
    if path.len() != parent.len() || !path.iter().zip(&parent).all(|(a, b)| same(a, b)) {
        return None;
    }
    if child.is_empty() {
        return None;
    }
    Some(match percent_decoded(child) {
        Some(name) if name.contains('/') => Err("the name holds a '/'"),
        Some(name) => Ok((name, slash)),
        None => Err("the name is not UTF-8"),
    })
}

/// A URL's path segments as written, without the empty one a trailing `/` leaves, and whether
/// there was one.
fn segments(url: &Url) -> Option<(Vec<&str>, bool)> {
    let mut segments: Vec<&str> = url.path_segments()?.collect();
    let slash = segments.len() > 1 && segments.last() == Some(&"");
    if slash || segments == [""] {
        segments.pop();
    }
    Some((segments, slash))
}

/// An `<a ...>` tag with an `href`.
struct Link<'a> {
    /// As written (entities not yet decoded).
    href: &'a str,
    /// Where the tag starts (its `<`) and ends (after its `>`) in the page.
    start: usize,
    end: usize,
}

/// Each `<a ...>` tag of the page that has an `href`, in page order.
fn links(page: &str) -> Vec<Link<'_>> {
    let lower = page.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<a").map(|i| from + i) {
        from = at + 2;
        if !lower[from..].starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let end = lower[from..].find('>').map_or(lower.len(), |i| from + i);
        if let Some(href) = attribute(&page[from..end], &lower[from..end], "href") {
            let end = (end + 1).min(page.len());
            found.push(Link {
                href,
                start: at,
                end,
            });
        }
        from = end;
    }
    found
}

/// The value of attribute `name` in a tag's inside (`tag`; `lower` is it in lower case):
/// double-quoted, single-quoted or bare.
fn attribute<'a>(tag: &'a str, lower: &str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = lower[from..].find(name).map(|i| from + i) {
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_at = tag.len() - after.len() + 1;
        let value = tag[value_at..].trim_start();
        return Some(match value.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let inner = &value[1..];
                &inner[..inner.find(quote).unwrap_or(inner.len())]
            }
            _ => {
                &value[..value
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(value.len())]
            }
        });
    }
    None
}

/// `text` with its character references decoded (`&amp;`, `&#38;`, ...); as written if it
/// holds one that is not XML's (`&nbsp;`) or a bare `&`.
fn unescape(text: &str) -> String {
    quick_xml::escape::unescape(text).map_or_else(|_| text.to_owned(), |t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(page: &str, url: &str) -> Vec<(String, bool)> {
        let page = children(page, &Url::parse(url).unwrap());
        page.children.into_iter().map(|c| (c.name, c.dir)).collect()
    }

    fn said(page: &str, url: &str) -> Vec<String> {
        let page = children(page, &Url::parse(url).unwrap());
        page.children.into_iter().map(|c| c.said).collect()
    }

    fn owned(items: &[(&str, bool)]) -> Vec<(String, bool)> {
        items.iter().map(|(n, d)| ((*n).to_owned(), *d)).collect()
    }

    #[test]
    fn nginx_pages_give_their_files_and_folders() {
        let page = "<html>\r\n<head><title>Index of /html/</title></head>\r\n<body>\r\n\
            <h1>Index of /html/</h1><hr><pre><a href=\"../\">../</a>\r\n\
            <a href=\"AC%20DC/\">AC DC/</a>                 27-Nov-2026 09:46       -\r\n\
            <a href=\"a%26b%20%231%3F.flac\">a&amp;b #1?.flac</a>   27-Nov-2026 09:46    5000\r\n\
            </pre><hr></body>\r\n</html>\r\n";
        assert_eq!(
            listed(page, "http://h/html/"),
            owned(&[("AC DC", true), ("a&b #1?.flac", false)])
        );
        assert_eq!(
            said(page, "http://h/html/"),
            [
                "AC DC/ 27-Nov-2026 09:46 -",
                "a&amp;b #1?.flac 27-Nov-2026 09:46 5000"
            ]
        );
    }

    #[test]
    fn apache_pages_drop_sort_links_icons_twice_and_the_parent() {
        let page = "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html><body>\
            <table><tr><th><a href=\"?C=N;O=D\">Name</a></th><th><a href=\"?C=M;O=A\">Last \
            modified</a></th></tr>\n<tr><td><a href=\"/music/\">Parent Directory</a></td></tr>\n\
            <tr><td><a href=\"Album/\"><img src=\"/icons/folder.gif\" alt=\"[DIR]\"></a></td>\
            <td><a href=\"Album/\">Album/</a></td><td>2026-11-27 09:46</td><td>  - </td></tr>\n\
            <tr><td><A HREF='01.flac'><img src=\"/icons/sound2.gif\"></A></td><td>\
            <A HREF='01.flac'>01.flac</A></td><td>2026-11-27 09:46</td><td>4.9K</td></tr>\n\
            </table></body></html>";
        assert_eq!(
            listed(page, "http://h/music/Artist/"),
            owned(&[("Album", true), ("01.flac", false)])
        );
        // Each row's two links to one child: their texts joined (the icon link has none).
        assert_eq!(
            said(page, "http://h/music/Artist/"),
            ["Album/ 2026-11-27 09:46 -", "01.flac 2026-11-27 09:46 4.9K"]
        );
    }

    #[test]
    fn rclone_and_python_pages_give_entity_escaped_links() {
        let rclone = "<h1><a href=\"\">/</a></h1><a href=\"?sort=name&order=asc\" \
            class=\"order\">Name</a><a href=\"..\"><span class=\"goup\">Go up</span></a>\
            <span class=\"name\"><a href=\"A%20&amp;%20B/\">A &amp; B/</a></span>";
        assert_eq!(listed(rclone, "http://h/"), owned(&[("A & B", true)]));
        let python = "<!DOCTYPE HTML>\n<html lang=\"en\"><ul>\n\
            <li><a href=\"01%20%E2%80%93%20t%C3%ABst%3F.flac\">01 – tëst?.flac</a></li>\n\
            <li><a href=\"x&#38;y.flac\">x&amp;y.flac</a></li><li><a href=z.mp3>z.mp3</a>\n</ul>";
        assert_eq!(
            listed(python, "http://h/m/"),
            owned(&[
                ("01 – tëst?.flac", false),
                ("x&y.flac", false),
                ("z.mp3", false)
            ])
        );
        assert_eq!(
            said(python, "http://h/m/"),
            ["01 – tëst?.flac", "x&amp;y.flac", "z.mp3"]
        );
    }

    #[test]
    fn links_elsewhere_or_deeper_are_not_children() {
        let page = "<a href=\"http://other.example/m/x.flac\">x</a>\
            <a href=\"//other.example/m/y.flac\">y</a>\
            <a href=\"https://h/m/z.flac\">scheme</a>\
            <a href=\"javascript:alert(1)\">js</a><a href=\"#top\">top</a>\
            <a href=\"../m2/w.flac\">sibling</a><a href=\"/m/../etc/passwd\">up</a>\
            <a href=\"a/b.flac\">deeper</a><a href=\"./\">self</a><a href=\"mailto:x@y\">m</a>\
            <a href=\"v.flac?download=1\">query</a><a href=\"http://h/m/ok.flac\">ok</a>\
            <area href=\"q.flac\"><abbr title=\"r.flac\"><a title=x ahref=\"s.flac\">s</a>";
        assert_eq!(listed(page, "http://h/m/"), owned(&[("ok.flac", false)]));
    }

    #[test]
    fn names_that_cannot_be_paths_are_reported() {
        let page = "<a href=\"a%2Fb.flac\">slash</a><a href=\"%FF.flac\">bytes</a>\
            <a href=\"..%2F..%2Fetc\">up</a><a href=\"%2e%2e/\">dots</a>";
        let found = children(page, &Url::parse("http://h/m/").unwrap());
        // `%2e%2e/` is `..` to the URL parser too: the parent, not a child.
        assert_eq!(found.children, vec![]);
        let why: Vec<&str> = found.unusable.iter().map(|(_, why)| *why).collect();
        assert_eq!(
            why,
            [
                "the name holds a '/'",
                "the name is not UTF-8",
                "the name holds a '/'"
            ]
        );
    }

    #[test]
    fn links_escaped_otherwise_than_the_page_url_are_children() {
        let page = "<a href=\"/m/Caf%c3%a9%20%26%20Bar/01.flac\">x</a>\
            <a href=\"/m/Caf\u{e9}%20&amp;%20Bar/Disc%201/\">d</a>";
        assert_eq!(
            listed(page, "http://h/m/Caf%C3%A9%20&%20Bar/"),
            owned(&[("01.flac", false), ("Disc 1", true)])
        );
    }

    #[test]
    fn a_webdav_member_may_name_its_server_otherwise_but_a_link_may_not() {
        let dir = Url::parse("http://192.168.1.5:8080/dav/Music/").unwrap();
        let href = "http://nas.local/dav/Music/01%20A.flac";
        assert_eq!(child_of(&dir, href), None);
        assert_eq!(
            dav_member_of(&dir, href),
            Some(Ok(("01 A.flac".to_owned(), false)))
        );
        assert_eq!(
            dav_member_of(&dir, "http://nas.local/elsewhere/x.flac"),
            None
        );
        assert_eq!(dav_member_of(&dir, "/dav/Music/"), None);
    }

    #[test]
    fn pages_are_told_from_other_answers() {
        assert!(is_html(b"<!DOCTYPE html><html><body></body></html>"));
        assert!(is_html(b"\n<html>\r\n<head><title>Index of /</title>"));
        assert!(is_html(b"<pre><a href=\"x\">x</a></pre>"));
        assert!(!is_html(b"[{\"name\":\"a.flac\"}]"));
        assert!(!is_html(b"fLaC\0\0\0\"junk"));
        assert!(!is_html(b""));
    }

    #[test]
    fn character_references_decode_and_broken_ones_stay() {
        assert_eq!(
            unescape("a&amp;b&#38;c&#x26;d&lt;&gt;&quot;&apos;"),
            "a&b&c&d<>\"'"
        );
        assert_eq!(unescape("a & b"), "a & b");
        assert_eq!(unescape("a&nbsp;b"), "a&nbsp;b");
    }
}
