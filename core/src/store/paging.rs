//! Paging and the form of every public read (`/api/v1` and `/validators`): a read is one
//! [`PublicFind`] (or a [`PublicPage`] of them), built by its subject's module and run here, so
//! that the store runs exactly what the explain test checks: every one served by an index (never
//! a collection scan), with a capped limit and a cursor to the next page. Knows no subject.

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;

use crate::store::db::{Result, Store, StoreError};

/// The most items one public read returns.
pub const MAX_PAGE: i64 = 200;

/// One `find` as a public read runs it.
#[derive(Debug, Clone)]
pub struct PublicFind {
    pub collection: &'static str,
    pub filter: Document,
    pub sort: Document,
    /// 0: no limit (a read by a unique key, or the legacy `/validators`).
    pub limit: i64,
    /// Distributions only: keep just the ledger lines of this address (run as an aggregation,
    /// so that a distribution's other lines never leave the server).
    pub lines_of: Option<String>,
}

/// The cursor of the page after one of `rows` read with `limit`: the key of its last row, when
/// the page is full (a page that is not full is the last).
pub fn next_cursor<T>(rows: usize, limit: i64, last: Option<T>) -> Option<T> {
    (rows as i64 >= limit).then_some(last).flatten()
}

pub(crate) fn capped(limit: i64) -> i64 {
    limit.clamp(1, MAX_PAGE)
}

/// Where a page of a newest-first list ended: its last row's time and that row's key, which
/// orders rows of the same millisecond (one payouts run writes several batches, one scheduler
/// tick starts several jobs). Its text, the lists' `before`, is `<milliseconds>.<key>`; a bare
/// `<milliseconds>` (the form before keys) still means "everything older than it".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before<K> {
    pub at: DateTime,
    pub key: Option<K>,
}

/// A `before` that is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a cursor (milliseconds since the epoch, then '.' and the key of the last row \
     seen: the `next` of the previous page)"
)]
pub struct CursorError(pub String);

impl<K> Before<K> {
    /// The cursor after a row created at `at` (none for a row without a time: nothing older
    /// can be found after it).
    pub fn row(at: Option<DateTime>, key: K) -> Option<Before<K>> {
        at.map(|at| Before { at, key: Some(key) })
    }
}

/// A row of a newest-first list ([`PublicPage`]): the cursor of the page after it, by the same
/// (time, key) its list is ordered by.
pub trait NewestFirst {
    type Key: std::fmt::Display;
    fn cursor(&self) -> Option<Before<Self::Key>>;
}

/// The `before` cursor of the page after `rows`, a page read with `limit`: after its last row,
/// when the page is full.
pub fn next_before<R: NewestFirst>(rows: &[R], limit: i64) -> Option<Before<R::Key>> {
    next_cursor(rows.len(), limit, rows.last().and_then(R::cursor))
}

impl<K: std::fmt::Display> std::fmt::Display for Before<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.at.timestamp_millis())?;
        match &self.key {
            Some(key) => write!(f, ".{key}"),
            None => Ok(()),
        }
    }
}

impl<K: std::str::FromStr> std::str::FromStr for Before<K> {
    type Err = CursorError;

    fn from_str(text: &str) -> std::result::Result<Self, CursorError> {
        let bad = || CursorError(text.to_owned());
        let (millis, key) = match text.split_once('.') {
            Some((_, "")) => return Err(bad()),
            Some((millis, key)) => (millis, Some(key.parse().map_err(|_| bad())?)),
            None => (text, None),
        };
        // Digits only: `+5` and ` 5` are not what any page handed out.
        if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let at = millis.parse::<i64>().map_err(|_| bad())?;
        Ok(Before {
            at: DateTime::from_millis(at),
            key,
        })
    }
}

/// One page of a newest-first list: with a keyed cursor, first the rows of the cursor's own
/// millisecond after its key, then the older rows, each `find` served by the list's index on
/// (time, key). Two finds, not one `$or`, because not every MongoDB-compatible server plans an
/// `$or` over a compound index without scanning the collection.
#[derive(Debug, Clone)]
pub struct PublicPage {
    /// Each with the page's limit.
    pub finds: Vec<PublicFind>,
}

impl PublicPage {
    /// The page of `filter`'s rows ordered by (`time`, `key`), newest first, after `before`.
    pub(crate) fn newest_first<K: Clone + Into<Bson>>(
        collection: &'static str,
        filter: Document,
        (time, key): (&str, &str),
        limit: i64,
        before: Option<&Before<K>>,
        lines_of: Option<&str>,
    ) -> PublicPage {
        let limit = capped(limit);
        let find = |filter: Document| PublicFind {
            collection,
            filter,
            sort: doc! { time: -1, key: -1 },
            limit,
            lines_of: lines_of.map(str::to_owned),
        };
        let Some(before) = before else {
            return PublicPage {
                finds: vec![find(filter)],
            };
        };
        let mut finds = Vec::with_capacity(2);
        if let Some(last_key) = &before.key {
            let mut same_time = filter.clone();
            same_time.insert(time, before.at);
            same_time.insert(key, doc! { "$lt": last_key.clone().into() });
            finds.push(find(same_time));
        }
        let mut older = filter;
        older.insert(time, doc! { "$lt": before.at });
        finds.push(find(older));
        PublicPage { finds }
    }
}

impl PublicFind {
    /// The body of the `find` (or `aggregate`) command it runs (for `explain`).
    pub fn command(&self) -> Document {
        if self.lines_of.is_some() {
            return doc! {
                "aggregate": self.collection,
                "pipeline": self.pipeline(),
                "cursor": {},
            };
        }
        let mut command = doc! { "find": self.collection, "filter": self.filter.clone() };
        if !self.sort.is_empty() {
            command.insert("sort", self.sort.clone());
        }
        if self.limit > 0 {
            command.insert("limit", self.limit);
        }
        command
    }

    /// The aggregation of a read with [`PublicFind::lines_of`].
    fn pipeline(&self) -> Vec<Document> {
        let mut pipeline = vec![doc! { "$match": self.filter.clone() }];
        if !self.sort.is_empty() {
            pipeline.push(doc! { "$sort": self.sort.clone() });
        }
        if self.limit > 0 {
            pipeline.push(doc! { "$limit": self.limit });
        }
        if let Some(address) = &self.lines_of {
            pipeline.push(doc! { "$set": { "lines": { "$filter": {
                "input": "$lines",
                "as": "line",
                "cond": { "$eq": ["$$line.address", address] },
            } } } });
        }
        pipeline
    }
}

impl Store {
    /// Runs a public read.
    pub async fn find_public<T>(&self, find: &PublicFind) -> Result<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let context = format!("read {}", find.collection);
        let collection = self.collection::<T>(find.collection);
        if find.lines_of.is_some() {
            return self
                .aggregate_all(find.collection, find.pipeline(), &context)
                .await;
        }
        let mut action = collection.find(find.filter.clone()).sort(find.sort.clone());
        if find.limit > 0 {
            action = action.limit(find.limit);
        }
        action
            .await
            .map_err(StoreError::mongo(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
    }

    /// Runs one page of a newest-first list: its finds in order, each asked only for the rows
    /// the page still lacks.
    pub async fn find_page<T>(&self, page: &PublicPage) -> Result<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let mut rows = Vec::new();
        for find in &page.finds {
            let missing = find.limit - rows.len() as i64;
            if missing <= 0 {
                break;
            }
            let find = PublicFind {
                limit: missing,
                ..find.clone()
            };
            rows.extend(self.find_public::<T>(&find).await?);
        }
        Ok(rows)
    }
}
