//! Turns a parsed [`Query`](crate::query::Query) into a tantivy query over the index's fields.
//!
//! - a word is a term, several words (`"abbey road"`, `jay-z`) a phrase, in one field or in any
//!   text field (a union over them);
//! - `beat*` is a prefix over the term dictionary (`PhrasePrefixQuery`, which for one word is a
//!   range from `beat` to `beau`), `the beat*` a phrase whose last word is a prefix;
//! - `beatles~` is a `FuzzyTermQuery` per word: one edit, two for words of 8+ letters, a
//!   transposition counting as one;
//! - `year:a..b` is a range on the year's fast field;
//! - `recent:N` is the set of the N tracks with the greatest `added_secs`, looked up when the
//!   query runs.
//!
//! Query text goes through the index's own analyzers, so `BJÖRK` finds `Björk`.

use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, FuzzyTermQuery, Occur, PhrasePrefixQuery, PhraseQuery,
    Query as TantivyQuery, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Order, Searcher, Term};

use crate::query::{How, Match, NumberField, Query, TextField};
use crate::schema::{Analyzers, Fields, ADDED_SECS, TRACK_ID};

/// A prefix expands to at most this many indexed words (tantivy's default is 50, too few for
/// `a*` over a large library).
const MAX_PREFIX_EXPANSIONS: u32 = 1_000_000;

/// Builds tantivy queries against one searcher (which `recent:N` consults).
pub struct Compiler<'a> {
    fields: &'a Fields,
    searcher: &'a Searcher,
    analyzers: Analyzers,
}

impl std::fmt::Debug for Compiler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiler")
    }
}

type Boxed = Box<dyn TantivyQuery>;

impl<'a> Compiler<'a> {
    pub fn new(fields: &'a Fields, searcher: &'a Searcher, analyzers: Analyzers) -> Self {
        Self {
            fields,
            searcher,
            analyzers,
        }
    }

    pub fn compile(&mut self, query: &Query) -> tantivy::Result<Boxed> {
        Ok(match query {
            Query::And(parts) => {
                let mut clauses = Vec::with_capacity(parts.len() + 1);
                for part in parts {
                    clauses.push(match part {
                        Query::Not(inner) => (Occur::MustNot, self.compile(inner)?),
                        _ => (Occur::Must, self.compile(part)?),
                    });
                }
                if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Query::Or(parts) => {
                let clauses = parts
                    .iter()
                    .map(|part| Ok((Occur::Should, self.compile(part)?)))
                    .collect::<tantivy::Result<_>>()?;
                Box::new(BooleanQuery::new(clauses))
            }
            Query::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.compile(inner)?),
            ])),
            Query::Match(m) => self.leaf(m)?,
        })
    }

    fn leaf(&mut self, m: &Match) -> tantivy::Result<Boxed> {
        Ok(match m {
            Match::Text { field, text, how } => self.text(*field, text, *how),
            Match::Number { field, low, high } => self.number(*field, *low, *high),
            Match::Recent(n) => self.recent(*n)?,
        })
    }

    fn text(&mut self, field: Option<TextField>, text: &str, how: How) -> Boxed {
        let f = self.fields;
        let target = match field {
            None => return self.any_text_field(text, how),
            Some(TextField::Format) => f.format,
            Some(TextField::Origin) => f.origin,
            Some(TextField::Artist) => f.artist,
            Some(TextField::AlbumArtist) => f.albumartist,
            Some(TextField::Album) => f.album,
            Some(TextField::Title) => f.title,
            Some(TextField::Genre) => f.genre,
            Some(TextField::Composer) => f.composer,
        };
        if matches!(field, Some(TextField::Format | TextField::Origin)) {
            let whole = self.analyzers.keyword(text);
            words_query(target, vec![whole], how)
        } else {
            words_query(target, self.analyzers.words(text), how)
        }
    }

    fn any_text_field(&mut self, text: &str, how: How) -> Boxed {
        let words = self.analyzers.words(text);
        let clauses = self
            .fields
            .text_fields()
            .into_iter()
            .map(|field| (Occur::Should, words_query(field, words.clone(), how)))
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }

    fn number(&self, field: NumberField, low: Option<u64>, high: Option<u64>) -> Boxed {
        let field = match field {
            NumberField::Year => self.fields.year,
            NumberField::Track => self.fields.track,
        };
        let bound = |n: Option<u64>| match n {
            Some(n) => Bound::Included(Term::from_field_u64(field, n)),
            None => Bound::Unbounded,
        };
        match (low, high) {
            (Some(low), Some(high)) if low == high => Box::new(TermQuery::new(
                Term::from_field_u64(field, low),
                IndexRecordOption::Basic,
            )),
            _ => Box::new(RangeQuery::new(bound(low), bound(high))),
        }
    }

    /// The tracks with the `n` greatest `added_secs` (ties: the first indexed).
    fn recent(&self, n: u32) -> tantivy::Result<Boxed> {
        let n = u64::from(n).min(self.searcher.num_docs()) as usize;
        if n == 0 {
            return Ok(Box::new(EmptyQuery));
        }
        let newest = TopDocs::with_limit(n).order_by_fast_field::<i64>(ADDED_SECS, Order::Desc);
        let docs = self.searcher.search(&AllQuery, &newest)?;
        let mut terms = Vec::with_capacity(docs.len());
        for (_, address) in docs {
            let reader = self.searcher.segment_reader(address.segment_ord);
            if let Some(id) = reader.fast_fields().u64(TRACK_ID)?.first(address.doc_id) {
                terms.push(Term::from_field_u64(self.fields.track_id, id));
            }
        }
        Ok(Box::new(TermSetQuery::new(terms)))
    }
}

/// The query for `words` (already analyzed) in one field.
fn words_query(field: Field, words: Vec<String>, how: How) -> Boxed {
    let mut terms: Vec<Term> = words
        .iter()
        .map(|w| Term::from_field_text(field, w))
        .collect();
    match (how, terms.len()) {
        (_, 0) => Box::new(EmptyQuery),
        (How::Exact, 1) => Box::new(TermQuery::new(
            terms.remove(0),
            IndexRecordOption::WithFreqs,
        )),
        (How::Exact, _) => Box::new(PhraseQuery::new(terms)),
        (How::Prefix, _) => {
            let mut query = PhrasePrefixQuery::new(terms);
            query.set_max_expansions(MAX_PREFIX_EXPANSIONS);
            Box::new(query)
        }
        (How::Fuzzy, _) => {
            let clauses = words
                .iter()
                .zip(terms)
                .map(|(word, term)| {
                    let fuzzy: Boxed =
                        Box::new(FuzzyTermQuery::new(term, fuzzy_distance(word), true));
                    (Occur::Must, fuzzy)
                })
                .collect();
            Box::new(BooleanQuery::new(clauses))
        }
    }
}

/// Edits a fuzzy word may be away: one, or two for words of eight letters or more.
fn fuzzy_distance(word: &str) -> u8 {
    if word.chars().count() >= 8 {
        2
    } else {
        1
    }
}
