//! WebDAV directory listings (RFC 4918), as Nextcloud, ownCloud, Synology's WebDAV Server,
//! Apache's mod_dav and `rclone serve webdav` give them: the `207 Multi-Status` answer to a
//! `PROPFIND` with `Depth: 1`, one `<response>` per member (and one for the folder itself),
//! each with its `<href>` and, in the `<propstat>` whose status is 200, its `resourcetype`,
//! `getcontentlength` and `getlastmodified`.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::web::parse_http_date;

/// One `<response>` of a multistatus answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// As the server wrote it (XML references decoded, percent-escapes not).
    pub href: String,
    pub collection: bool,
    pub size: Option<u64>,
    /// Whole seconds since the epoch.
    pub mtime: Option<i64>,
}

/// The members a multistatus answer lists; an error for an answer that is not one.
pub fn members(xml: &[u8]) -> Result<Vec<Member>, String> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut members = Vec::new();
    let mut member = Member::default();
    // The properties of the propstat being read; kept only if its status is 200.
    let mut props = Member::default();
    let mut multistatus = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not XML: {e}"))?;
        match event {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_vec();
                multistatus |= name == b"multistatus";
                match name.as_slice() {
                    b"response" => member = Member::default(),
                    b"propstat" => props = Member::default(),
                    _ => {}
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(empty) => match empty.local_name().as_ref() {
                b"multistatus" => multistatus = true,
                b"collection" if in_prop(&path, b"resourcetype") => props.collection = true,
                _ => {}
            },
            Event::Text(t) => {
                let content = t.xml10_content().map_err(|e| format!("not UTF-8: {e}"))?;
                text.push_str(&content);
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| format!("not UTF-8: {e}"))?;
                let reference = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&reference)
                    .map_err(|e| format!("bad reference {reference}: {e}"))?;
                text.push_str(&resolved);
            }
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err("unbalanced tags".into());
                };
                let value = text.trim();
                match name.as_slice() {
                    b"href" if path.last().map(Vec::as_slice) == Some(b"response") => {
                        member.href = value.to_owned();
                    }
                    b"collection" if in_prop(&path, b"resourcetype") => props.collection = true,
                    b"getcontentlength" => props.size = value.parse().ok(),
                    b"getlastmodified" => props.mtime = parse_http_date(value),
                    // The properties of a propstat whose status is 200.
                    b"status"
                        if path.last().map(Vec::as_slice) == Some(b"propstat")
                            && value.split_whitespace().nth(1) == Some("200") =>
                    {
                        member.collection |= props.collection;
                        member.size = member.size.or(props.size);
                        member.mtime = member.mtime.or(props.mtime);
                    }
                    b"response" => members.push(std::mem::take(&mut member)),
                    _ => {}
                }
                text.clear();
            }
            Event::Eof if path.is_empty() => break,
            Event::Eof => return Err("the answer ends early".into()),
            _ => {}
        }
        buf.clear();
    }
    if !multistatus {
        return Err("not a WebDAV multistatus answer".into());
    }
    Ok(members)
}

/// Whether the innermost open elements end with `prop`, `outer`.
fn in_prop(path: &[Vec<u8>], outer: &[u8]) -> bool {
    path.len() >= 2 && path[path.len() - 1] == outer && path[path.len() - 2] == b"prop"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rclone_and_nextcloud_answers_give_their_members() {
        let rclone = r#"<?xml version="1.0" encoding="UTF-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/A%20&amp;%20B/</D:href><D:propstat><D:prop><D:resourcetype><D:collection xmlns:D="DAV:"/></D:resourcetype><D:getlastmodified>Fri, 27 Nov 2026 10:14:58 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response><D:response><D:href>/A%20&amp;%20B/01%20%E2%80%93%20t%C3%ABst%3F.flac</D:href><D:propstat><D:prop><D:displayname>01 – tëst?.flac</D:displayname><D:getcontentlength>5000</D:getcontentlength><D:getlastmodified>Fri, 27 Nov 2026 09:47:26 GMT</D:getlastmodified><D:getetag>"18ebdde3bea584cd1388"</D:getetag><D:resourcetype></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
        assert_eq!(
            members(rclone.as_bytes()).unwrap(),
            [
                Member {
                    href: "/A%20&%20B/".into(),
                    collection: true,
                    size: None,
                    mtime: Some(1_795_774_498),
                },
                Member {
                    href: "/A%20&%20B/01%20%E2%80%93%20t%C3%ABst%3F.flac".into(),
                    collection: false,
                    size: Some(5000),
                    mtime: Some(1_795_772_846),
                },
            ]
        );
        // Nextcloud: the `d:` prefix, other namespaces beside, properties it does not have in
        // a propstat of their own with status 404 (which must not count).
        let nextcloud = br#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns">
 <d:response>
  <d:href>/remote.php/dav/files/ann/Music/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype>
   <d:getlastmodified>Tue, 24 Nov 2026 08:00:00 GMT</d:getlastmodified></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><d:getcontentlength/></d:prop>
   <d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/files/ann/Music/Bj%c3%b6rk%20-%20J%c3%b3ga.flac</d:href>
  <d:propstat><d:prop><d:resourcetype/><d:getcontentlength>31415926</d:getcontentlength>
   <d:getlastmodified>Tue, 24 Nov 2026 08:00:01 GMT</d:getlastmodified>
   <oc:size>31415926</oc:size></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
</d:multistatus>"#;
        let found = members(nextcloud).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found[0].collection);
        assert_eq!(found[0].size, None);
        assert_eq!(
            found[1],
            Member {
                href: "/remote.php/dav/files/ann/Music/Bj%c3%b6rk%20-%20J%c3%b3ga.flac".into(),
                collection: false,
                size: Some(31_415_926),
                mtime: Some(1_795_507_201),
            }
        );
    }

    #[test]
    fn answers_that_are_not_multistatus_are_errors() {
        assert!(members(b"<html><body>Index of /</body></html>").is_err());
        assert!(members(b"[{\"name\": \"a.flac\"}]").is_err());
        assert!(members(b"<d:multistatus xmlns:d=\"DAV:\"><d:response>").is_err());
        assert_eq!(members(b"<d:multistatus xmlns:d=\"DAV:\"/>"), Ok(vec![]));
        assert!(members(b"<a></b>").is_err());
    }
}
