//! Parser tests: every form of doc/SEARCH.md, and every kind of error.

use super::*;

fn any(text: &str) -> Query {
    Query::Match(Match::Text {
        field: None,
        text: text.to_owned(),
        how: How::Exact,
    })
}

fn text(field: TextField, text: &str, how: How) -> Query {
    Query::Match(Match::Text {
        field: Some(field),
        text: text.to_owned(),
        how,
    })
}

fn year(low: Option<u64>, high: Option<u64>) -> Query {
    Query::Match(Match::Number {
        field: NumberField::Year,
        low,
        high,
    })
}

fn not(q: Query) -> Query {
    Query::Not(Box::new(q))
}

fn fails(input: &str) -> String {
    match parse(input) {
        Ok(q) => panic!("{input:?} parsed as {q:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn words_all_must_match() {
    assert_eq!(parse("beatles").unwrap(), any("beatles"));
    assert_eq!(
        parse("  abbey   road ").unwrap(),
        Query::And(vec![any("abbey"), any("road")])
    );
}

#[test]
fn field_value() {
    use TextField::*;
    for (name, field) in [
        ("artist", Artist),
        ("albumartist", AlbumArtist),
        ("album", Album),
        ("title", Title),
        ("genre", Genre),
        ("composer", Composer),
        ("format", Format),
        ("origin", Origin),
    ] {
        assert_eq!(
            parse(&format!("{name}:x1")).unwrap(),
            text(field, "x1", How::Exact)
        );
    }
    assert_eq!(
        parse("ARTIST:Queen").unwrap(),
        text(Artist, "Queen", How::Exact)
    );
    assert_eq!(
        parse("track:7").unwrap(),
        Query::Match(Match::Number {
            field: NumberField::Track,
            low: Some(7),
            high: Some(7)
        })
    );
    assert_eq!(parse("year:1969").unwrap(), year(Some(1969), Some(1969)));
}

#[test]
fn phrases() {
    assert_eq!(parse("\"abbey road\"").unwrap(), any("abbey road"));
    assert_eq!(
        parse("album:\"Abbey Road\" 1969").unwrap(),
        Query::And(vec![
            text(TextField::Album, "Abbey Road", How::Exact),
            any("1969")
        ])
    );
    assert_eq!(
        parse("origin:\"/srv/my music\"").unwrap(),
        text(TextField::Origin, "/srv/my music", How::Exact)
    );
}

#[test]
fn prefix_and_fuzzy() {
    assert_eq!(
        parse("beat*").unwrap(),
        Query::Match(Match::Text {
            field: None,
            text: "beat".into(),
            how: How::Prefix
        })
    );
    assert_eq!(
        parse("title:yesterd*").unwrap(),
        text(TextField::Title, "yesterd", How::Prefix)
    );
    assert_eq!(
        parse("artist:beatels~").unwrap(),
        text(TextField::Artist, "beatels", How::Fuzzy)
    );
}

#[test]
fn year_ranges() {
    assert_eq!(
        parse("year:1990..1999").unwrap(),
        year(Some(1990), Some(1999))
    );
    assert_eq!(parse("year:..1979").unwrap(), year(None, Some(1979)));
    assert_eq!(parse("year:2000..").unwrap(), year(Some(2000), None));
}

#[test]
fn or_binds_looser_than_and() {
    assert_eq!(
        parse("a b OR c").unwrap(),
        Query::Or(vec![Query::And(vec![any("a"), any("b")]), any("c")])
    );
    assert_eq!(
        parse("a AND b OR c AND d").unwrap(),
        Query::Or(vec![
            Query::And(vec![any("a"), any("b")]),
            Query::And(vec![any("c"), any("d")])
        ])
    );
    assert_eq!(
        parse("a OR b OR c").unwrap(),
        Query::Or(vec![any("a"), any("b"), any("c")])
    );
}

#[test]
fn negation() {
    assert_eq!(
        parse("rock -live").unwrap(),
        Query::And(vec![any("rock"), not(any("live"))])
    );
    assert_eq!(
        parse("rock NOT live").unwrap(),
        Query::And(vec![any("rock"), not(any("live"))])
    );
    assert_eq!(
        parse("-genre:jazz").unwrap(),
        not(text(TextField::Genre, "jazz", How::Exact))
    );
    assert_eq!(parse("NOT \"a b\"").unwrap(), not(any("a b")));
    assert_eq!(
        parse("-(a OR b)").unwrap(),
        not(Query::Or(vec![any("a"), any("b")]))
    );
}

#[test]
fn grouping() {
    assert_eq!(
        parse("(a OR b) c").unwrap(),
        Query::And(vec![Query::Or(vec![any("a"), any("b")]), any("c")])
    );
    assert_eq!(parse("((a))").unwrap(), any("a"));
}

#[test]
fn recent() {
    assert_eq!(
        parse("recent:200").unwrap(),
        Query::Match(Match::Recent(200))
    );
    assert!(fails("recent:0").contains("'recent' takes a count"));
    assert!(fails("recent:abc").contains("'recent' takes a count"));
}

#[test]
fn hyphens_and_colons_inside_words_are_text() {
    assert_eq!(parse("jay-z").unwrap(), any("jay-z"));
    assert_eq!(parse("4:33").unwrap(), any("4:33"));
    assert_eq!(
        parse("lower or and not").unwrap(),
        Query::And(vec![any("lower"), any("or"), any("and"), any("not")])
    );
}

#[test]
fn errors_say_what_and_where() {
    assert_eq!(fails(""), "empty query");
    assert_eq!(fails("   "), "empty query");
    assert_eq!(
        fails("foo:bar"),
        format!("unknown field 'foo' (fields: {FIELD_NAMES}) (at column 1)")
    );
    assert_eq!(
        fails("a \"abbey road"),
        "unbalanced quote: this '\"' is never closed (at column 3)"
    );
    assert_eq!(
        fails("artist:\"abbey"),
        "unbalanced quote: this '\"' is never closed (at column 8)"
    );
    assert_eq!(
        fails("(a b"),
        "unbalanced '(': it is never closed (at column 1)"
    );
    assert_eq!(
        fails("a b)"),
        "unbalanced ')': nothing opened it (at column 4)"
    );
    assert_eq!(
        fails(")"),
        "unbalanced ')': nothing opened it (at column 1)"
    );
    assert_eq!(fails("a ()"), "empty parentheses (at column 3)");
    assert!(fails("-").starts_with("lone '-'"));
    assert!(fails("a - b").ends_with("(at column 3)"));
    assert_eq!(
        fails("NOT"),
        "'NOT' has nothing after it to apply to (at column 1)"
    );
    assert_eq!(
        fails("a NOT"),
        "'NOT' has nothing after it to apply to (at column 3)"
    );
    assert_eq!(
        fails("(NOT)"),
        "'NOT' has nothing after it to apply to (at column 2)"
    );
    assert_eq!(
        fails("a OR"),
        "'OR' has nothing after it to apply to (at column 3)"
    );
    assert_eq!(
        fails("OR a"),
        "'OR' has nothing before it to apply to (at column 1)"
    );
    assert_eq!(
        fails("a AND OR b"),
        "'AND' has nothing after it to apply to (at column 3)"
    );
    assert_eq!(
        fails("artist:"),
        "'artist:' needs a value right after the colon (at column 1)"
    );
    assert_eq!(fails("\"\""), "empty phrase (at column 1)");
    assert!(fails("*").starts_with("'*' needs letters"));
    assert!(fails("~").starts_with("'~' needs letters"));
    assert!(fails("!!!").contains("no letters or digits"));
    assert!(fails("year:nineties").starts_with("'year' takes a number or a range"));
    assert!(fails("year:..").starts_with("'year' takes a number or a range"));
    assert!(fails("year:19*").starts_with("'year' takes a number or a range"));
    assert!(fails("year:\"1990\"").starts_with("'year' takes a number, not a phrase"));
    assert_eq!(
        fails("x year:1999..1990"),
        "the range '1999..1990' is empty: 1999 comes after 1990 (at column 3)"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        fails("björk (a"),
        "unbalanced '(': it is never closed (at column 7)"
    );
}
