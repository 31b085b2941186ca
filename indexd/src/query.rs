//! The query language of `doc/SEARCH.md`, parsed into a [`Query`] tree by a small lexer and a
//! recursive-descent parser. Nothing here knows about tantivy: `compile.rs` turns the tree into
//! tantivy queries, so a collection's query can be checked without an index.
//!
//! Grammar (`AND` binds tighter than `OR`; juxtaposition is `AND`):
//!
//! ```text
//! query   = or EOF
//! or      = and { "OR" and }
//! and     = unary { ["AND"] unary }
//! unary   = ("NOT" | "-") unary | primary
//! primary = "(" or ")" | [FIELD ":"] (WORD ["*" | "~"] | "\"" PHRASE "\"")
//! ```
//!
//! Errors say what is wrong and where (1-based character column).

use std::fmt;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every part must match (negated parts must not).
    And(Vec<Query>),
    /// At least one part must match.
    Or(Vec<Query>),
    Not(Box<Query>),
    Match(Match),
}

/// One leaf of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Words in one field, or (`field: None`) in any text field.
    Text {
        field: Option<TextField>,
        text: String,
        how: How,
    },
    /// A number or an inclusive range (`low..high`, either end open).
    Number {
        field: NumberField,
        low: Option<u64>,
        high: Option<u64>,
    },
    /// `recent:N`: the N most recently added tracks.
    Recent(u32),
}

/// How the text of a [`Match::Text`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The words, in this order (a single word is a one-word phrase).
    Exact,
    /// `beat*`: the last word is a prefix.
    Prefix,
    /// `beatles~`: each word within one edit (two for words of 8+ letters).
    Fuzzy,
}

/// Fields that hold text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Artist,
    AlbumArtist,
    Album,
    Title,
    Genre,
    Composer,
    /// Kept whole (not split into words).
    Format,
    /// Kept whole (not split into words).
    Origin,
}

/// Fields that hold numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberField {
    Year,
    Track,
}

/// Field names a query may use, as written in doc/SEARCH.md.
pub const FIELD_NAMES: &str =
    "artist, albumartist, album, title, genre, composer, format, origin, year, track, recent";

/// Largest `recent:N`.
pub const MAX_RECENT: u32 = 100_000;

/// Why a query does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses a query of the language in doc/SEARCH.md.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    let tokens = lex(input)?;
    if tokens.is_empty() {
        return Err(ParseError("empty query".to_owned()));
    }
    let mut parser = Parser { tokens, next: 0 };
    let query = parser.or()?;
    match parser.peek() {
        None => Ok(query),
        Some((Token::Close, col)) => Err(error(col, "unbalanced ')': nothing opened it")),
        Some((_, col)) => Err(error(col, "unexpected text")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    /// `NOT`, or `-` right before a term.
    Not,
    And,
    Or,
    /// A bare word (may hold `field:`), or `field:"phrase"`/`"phrase"` with `quoted`.
    Term {
        text: String,
        phrase: Option<String>,
    },
}

fn error(col: usize, what: &str) -> ParseError {
    ParseError(format!("{what} (at column {col})"))
}

/// Splits the input into tokens, each with its 1-based column.
fn lex(input: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let col = i + 1;
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => {
                i += 1;
                Token::Open
            }
            ')' => {
                i += 1;
                Token::Close
            }
            '"' => {
                let (phrase, end) = read_phrase(&chars, i)?;
                i = end;
                Token::Term {
                    text: String::new(),
                    phrase: Some(phrase),
                }
            }
            '-' => {
                i += 1;
                if chars.get(i).is_none_or(|c| c.is_whitespace() || *c == ')') {
                    return Err(error(
                        col,
                        "lone '-': write it right before what must not match, as in -live",
                    ));
                }
                Token::Not
            }
            _ => {
                let start = i;
                while i < chars.len() && !ends_word(chars[i]) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                match text.as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ if text.ends_with(':') && chars.get(i) == Some(&'"') => {
                        let (phrase, end) = read_phrase(&chars, i)?;
                        i = end;
                        Token::Term {
                            text,
                            phrase: Some(phrase),
                        }
                    }
                    _ => Token::Term { text, phrase: None },
                }
            }
        };
        tokens.push((token, col));
    }
    Ok(tokens)
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"')
}

/// The phrase opened by the quote at `open`, and the index after its closing quote.
fn read_phrase(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let close = chars[open + 1..]
        .iter()
        .position(|&c| c == '"')
        .map(|n| open + 1 + n)
        .ok_or_else(|| error(open + 1, "unbalanced quote: this '\"' is never closed"))?;
    Ok((chars[open + 1..close].iter().collect(), close + 1))
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    next: usize,
}

impl Parser {
    fn peek(&self) -> Option<(Token, usize)> {
        self.tokens.get(self.next).cloned()
    }

    fn bump(&mut self) -> Option<(Token, usize)> {
        let token = self.peek();
        self.next += 1;
        token
    }

    /// Fails unless a term, `(`, or negation comes next: `after` names what came before.
    fn expect_operand(&self, after: &str, col: usize) -> Result<(), ParseError> {
        match self.peek() {
            None | Some((Token::Close | Token::Or | Token::And, _)) => Err(error(
                col,
                &format!("{after} has nothing after it to apply to"),
            )),
            Some(_) => Ok(()),
        }
    }

    fn or(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.and()?];
        while let Some((Token::Or, col)) = self.peek() {
            self.bump();
            self.expect_operand("'OR'", col)?;
            parts.push(self.and()?);
        }
        Ok(collapse(parts, Query::Or))
    }

    fn and(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                None | Some((Token::Close | Token::Or, _)) => break,
                Some((Token::And, col)) => {
                    self.bump();
                    self.expect_operand("'AND'", col)?;
                }
                Some(_) => {}
            }
            parts.push(self.unary()?);
        }
        Ok(collapse(parts, Query::And))
    }

    fn unary(&mut self) -> Result<Query, ParseError> {
        if let Some((Token::Not, col)) = self.peek() {
            self.bump();
            self.expect_operand("'NOT'", col)?;
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Query, ParseError> {
        let Some((token, col)) = self.bump() else {
            return Err(ParseError("the query ends too early".to_owned()));
        };
        match token {
            Token::Open => {
                if let Some((Token::Close, _)) = self.peek() {
                    return Err(error(col, "empty parentheses"));
                }
                let inner = self.or()?;
                match self.bump() {
                    Some((Token::Close, _)) => Ok(inner),
                    _ => Err(error(col, "unbalanced '(': it is never closed")),
                }
            }
            Token::Close => Err(error(col, "unbalanced ')': nothing opened it")),
            Token::Or | Token::And => Err(error(
                col,
                &format!(
                    "'{}' has nothing before it to apply to",
                    if token == Token::Or { "OR" } else { "AND" }
                ),
            )),
            Token::Not => Err(error(col, "'NOT' has nothing after it to apply to")),
            Token::Term { text, phrase } => term(&text, phrase, col).map(Query::Match),
        }
    }
}

fn collapse(mut parts: Vec<Query>, group: fn(Vec<Query>) -> Query) -> Query {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        group(parts)
    }
}

/// Where a term looks: a text field, any text field, a number field, or `recent`.
enum Target {
    Text(Option<TextField>),
    Number(NumberField),
    Recent,
}

fn field_named(name: &str) -> Option<Target> {
    use TextField::*;
    Some(match name {
        "artist" => Target::Text(Some(Artist)),
        "albumartist" => Target::Text(Some(AlbumArtist)),
        "album" => Target::Text(Some(Album)),
        "title" => Target::Text(Some(Title)),
        "genre" => Target::Text(Some(Genre)),
        "composer" => Target::Text(Some(Composer)),
        "format" => Target::Text(Some(Format)),
        "origin" => Target::Text(Some(Origin)),
        "year" => Target::Number(NumberField::Year),
        "track" => Target::Number(NumberField::Track),
        "recent" => Target::Recent,
        _ => return None,
    })
}

/// One term: `word`, `word*`, `word~`, `"phrase"`, with an optional `field:` before it.
fn term(text: &str, phrase: Option<String>, col: usize) -> Result<Match, ParseError> {
    let (target, value) = match text.split_once(':') {
        Some((name, value))
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            let target = field_named(&name.to_ascii_lowercase()).ok_or_else(|| {
                error(
                    col,
                    &format!("unknown field '{name}' (fields: {FIELD_NAMES})"),
                )
            })?;
            (target, value)
        }
        _ => (Target::Text(None), text),
    };
    let field_name = text.split_once(':').map_or("", |(name, _)| name);
    if value.is_empty() && phrase.is_none() {
        return Err(error(
            col,
            &format!("'{field_name}:' needs a value right after the colon"),
        ));
    }
    match target {
        Target::Text(field) => text_term(field, value, phrase, col),
        Target::Number(field) => {
            if phrase.is_some() {
                return Err(error(
                    col,
                    &format!("'{field_name}' takes a number, not a phrase"),
                ));
            }
            number_term(field, field_name, value, col)
        }
        Target::Recent => match value.parse::<u32>() {
            Ok(n) if (1..=MAX_RECENT).contains(&n) => Ok(Match::Recent(n)),
            _ => Err(error(
                col,
                &format!("'recent' takes a count from 1 to {MAX_RECENT}, as in recent:200"),
            )),
        },
    }
}

fn text_term(
    field: Option<TextField>,
    value: &str,
    phrase: Option<String>,
    col: usize,
) -> Result<Match, ParseError> {
    let (text, how) = match phrase {
        Some(phrase) => (phrase, How::Exact),
        None => match (value.strip_suffix('*'), value.strip_suffix('~')) {
            (Some(stem), _) => (stem.to_owned(), How::Prefix),
            (_, Some(stem)) => (stem.to_owned(), How::Fuzzy),
            _ => (value.to_owned(), How::Exact),
        },
    };
    let keyword = matches!(field, Some(TextField::Format | TextField::Origin));
    let searchable = if keyword {
        !text.trim().is_empty()
    } else {
        text.chars().any(char::is_alphanumeric)
    };
    if !searchable {
        let what = match how {
            How::Exact if text.is_empty() => "empty phrase".to_owned(),
            How::Exact => format!("'{text}' has no letters or digits to search for"),
            How::Prefix => "'*' needs letters or digits before it, as in beat*".to_owned(),
            How::Fuzzy => "'~' needs letters or digits before it, as in beatles~".to_owned(),
        };
        return Err(error(col, &what));
    }
    Ok(Match::Text { field, text, how })
}

fn number_term(
    field: NumberField,
    name: &str,
    value: &str,
    col: usize,
) -> Result<Match, ParseError> {
    let bad = || {
        error(
            col,
            &format!("'{name}' takes a number or a range like 1990..1999, ..1979 or 2000.., not '{value}'"),
        )
    };
    let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let (low, high) = match value.split_once("..") {
        None => {
            let n = number(value)?;
            (Some(n), Some(n))
        }
        Some(("", "")) => return Err(bad()),
        Some((low, high)) => {
            let low = (!low.is_empty()).then(|| number(low)).transpose()?;
            let high = (!high.is_empty()).then(|| number(high)).transpose()?;
            (low, high)
        }
    };
    if let (Some(low), Some(high)) = (low, high) {
        if low > high {
            return Err(error(
                col,
                &format!("the range '{value}' is empty: {low} comes after {high}"),
            ));
        }
    }
    Ok(Match::Number { field, low, high })
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
