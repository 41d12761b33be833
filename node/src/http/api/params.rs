//! What a request to `/api/v1` may carry, and the one rule for what it may not: a parameter out
//! of its documented form or bounds, an empty or malformed cursor, a malformed address or an
//! unknown query parameter is refused with 400 and a message naming it, never clamped or ignored.
//! Each type here gives both the check and its documented schema, so the two cannot drift.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use minerpool_core::address::{check_syntax, syntax_pattern};
use minerpool_core::job::Job;
use minerpool_core::store::history::{Hours, MAX_HOURS};
use minerpool_core::store::paging::{Before, MAX_PAGE};
use minerpool_core::store::spends::SpendFilter;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::answers::ApiError;

/// The query string, refused whole (400) when a parameter is unknown or malformed.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters, refused (400) when malformed.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A JSON body, refused with the status axum gives (400, 413, 415, 422 become 400 or stay).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::new(e.status(), e.body_text())
            }
            _ => ApiError::bad_request(e.body_text()),
        }
    }
}

/// A body that must be a JSON object: serde's derive also reads a struct from an array of its
/// fields' values (`["text"]`), which the document does not allow. The document describes `T`.
pub struct ObjectBody<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Object(std::marker::PhantomData))
            .map(ObjectBody)
    }
}

fn string_schema(pattern: &str, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

static ADDRESS_PATTERN: LazyLock<String> = LazyLock::new(syntax_pattern);

/// A uPow address in its written form (45 base58 characters, or 128 hex): what looks an address
/// up. Registering a pool asks more of it (see `POST /pools`).
#[derive(Debug, Clone)]
pub struct Address(pub String);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        check_syntax(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))?;
        Ok(Address(text))
    }
}

impl PartialSchema for Address {
    fn schema() -> RefOr<Schema> {
        string_schema(
            &ADDRESS_PATTERN,
            "a uPow address: 45 base58 characters encoding 33 bytes whose first is 42 or 43, or \
             128 hexadecimal characters",
        )
    }
}

impl ToSchema for Address {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Address")
    }
}

/// `{address}` in a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AddressPath {
    pub address: Address,
}

/// A page's size: 1 to [`MAX_PAGE`].
#[derive(Debug, Clone, Copy)]
pub struct Limit(pub i64);

/// Rows on a page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 20;

impl Default for Limit {
    fn default() -> Self {
        Limit(DEFAULT_LIMIT)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if (1..=MAX_PAGE).contains(&n) {
            Ok(Limit(n))
        } else {
            Err(serde::de::Error::custom(format!(
                "limit must be 1 to {MAX_PAGE}, got {n}"
            )))
        }
    }
}

/// What a newest-first list orders rows of the same millisecond by: the key in its cursors.
pub trait CursorKey: Sized + std::str::FromStr {
    /// The key's written form, as a regular expression without anchors.
    const PATTERN: &'static str;
    fn is_valid(text: &str) -> bool;
}

/// Block heights.
impl CursorKey for i64 {
    const PATTERN: &'static str = "[0-9]{1,18}";
    fn is_valid(text: &str) -> bool {
        (1..=18).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    }
}

/// Record ids.
impl CursorKey for String {
    const PATTERN: &'static str = "[0-9A-Za-z_-]{1,64}";
    fn is_valid(text: &str) -> bool {
        (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }
}

/// The last millisecond of the year 9999, UTC.
const LAST_MILLI: i64 = 253_402_300_799_999;

/// A `before` cursor with keys of `K`: the `next` of the previous page, `<milliseconds>.<key>`
/// (a bare `<milliseconds>` means everything older than it).
#[derive(Debug, Clone)]
pub struct Cursor<K>(pub Before<K>);

impl<K: CursorKey> Cursor<K> {
    fn pattern() -> String {
        format!("^[0-9]{{1,18}}(?:\\.{})?$", K::PATTERN)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (millis, key) = match text.split_once('.') {
            Some((millis, key)) => (millis, Some(key)),
            None => (text, None),
        };
        let millis_ok =
            (1..=18).contains(&millis.len()) && millis.bytes().all(|b| b.is_ascii_digit());
        if !millis_ok || !key.is_none_or(K::is_valid) {
            return Err(format!(
                "before {text:?} is not a cursor (the `next` of the previous page: \
                 milliseconds since the epoch, then '.' and the last row's key, matching {})",
                Self::pattern()
            ));
        }
        let mut before = text
            .parse::<Before<K>>()
            .map_err(|e| format!("before {e}"))?;
        // Every row is older than the end of the year 9999; some servers cannot hold a date
        // past it, so a cursor beyond it asks for what that one does.
        before.at = bson::DateTime::from_millis(before.at.timestamp_millis().min(LAST_MILLI));
        Ok(Cursor(before))
    }

    fn schema() -> RefOr<Schema> {
        string_schema(
            &Self::pattern(),
            "the `next` of the previous page: the last row's milliseconds since the epoch, '.', \
             and its key",
        )
    }
}

impl<'de, K: CursorKey> Deserialize<'de> for Cursor<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cursor::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A cursor of a list keyed by block height.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct HeightCursor(pub Cursor<i64>);

/// A cursor of a list keyed by record id.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct IdCursor(pub Cursor<String>);

impl PartialSchema for HeightCursor {
    fn schema() -> RefOr<Schema> {
        Cursor::<i64>::schema()
    }
}

impl ToSchema for HeightCursor {}

impl PartialSchema for IdCursor {
    fn schema() -> RefOr<Schema> {
        Cursor::<String>::schema()
    }
}

impl ToSchema for IdCursor {}

/// A page of a list ordered by address: `limit`, and `after`, the previous page's `next`.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AddressPage {
    /// Rows on the page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200, default = 20)]
    #[serde(default)]
    pub limit: Limit,
    /// The previous page's `next`: the last address it held.
    #[param(inline)]
    pub after: Option<Address>,
}

impl AddressPage {
    /// The `after` cursor of the next page: the last key, when this page is full.
    pub fn next<T>(&self, found: &[T], key: impl Fn(&T) -> String) -> Option<String> {
        minerpool_core::store::paging::next_cursor(found.len(), self.limit.0, found.last().map(key))
    }
}

/// A page of a newest-first list: `limit`, and `before`, the previous page's `next`.
pub trait NewestPage {
    type Key: CursorKey;
    fn before(&self) -> Option<&Before<Self::Key>>;
}

/// A page of a list whose rows are keyed by block height (distributions, credits).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HeightPage {
    /// Rows on the page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200, default = 20)]
    #[serde(default)]
    pub limit: Limit,
    /// The previous page's `next`.
    #[param(inline)]
    pub before: Option<HeightCursor>,
}

/// A page of a list whose rows are keyed by record id (payout batches).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IdPage {
    /// Rows on the page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200, default = 20)]
    #[serde(default)]
    pub limit: Limit,
    /// The previous page's `next`.
    #[param(inline)]
    pub before: Option<IdCursor>,
}

impl NewestPage for HeightPage {
    type Key = i64;
    fn before(&self) -> Option<&Before<i64>> {
        self.before.as_ref().map(|c| &c.0.0)
    }
}

impl NewestPage for IdPage {
    type Key = String;
    fn before(&self) -> Option<&Before<String>> {
        self.before.as_ref().map(|c| &c.0.0)
    }
}

/// The schema of the `job` parameter: [`Job`]'s names, as `Job` deserialises them.
pub struct JobNames;

impl PartialSchema for JobNames {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some("The jobs a run can be of."))
            .enum_values(Some(Job::ALL.map(Job::name)))
            .into()
    }
}

impl ToSchema for JobNames {}

/// A page of job runs, of one job or all.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobRunsPage {
    /// Rows on the page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200, default = 20)]
    #[serde(default)]
    pub limit: Limit,
    /// The previous page's `next`.
    #[param(inline)]
    pub before: Option<IdCursor>,
    /// Only the runs of this job.
    #[param(inline, value_type = Option<JobNames>)]
    pub job: Option<Job>,
}

/// Which spends of the wallet a list shows.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpendsFilter {
    /// Every spend the chain shows: our batches' transactions, their abandons, foreign ones.
    #[default]
    All,
    /// Spends not made by minerpool, resolved or not.
    Foreign,
    /// Foreign spends neither adopted nor acknowledged: while one is, payouts are held.
    Unresolved,
}

impl From<SpendsFilter> for SpendFilter {
    fn from(filter: SpendsFilter) -> Self {
        match filter {
            SpendsFilter::All => SpendFilter::All,
            SpendsFilter::Foreign => SpendFilter::Foreign,
            SpendsFilter::Unresolved => SpendFilter::Unresolved,
        }
    }
}

/// The newest spends of the wallet, of a kind.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SpendsPage {
    /// Spends listed, newest first.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200, default = 20)]
    #[serde(default)]
    pub limit: Limit,
    /// Which spends: `all` (the default), `foreign`, or `unresolved` (foreign, neither adopted
    /// nor acknowledged).
    #[param(inline)]
    #[serde(default)]
    pub filter: SpendsFilter,
}

/// The written form of a spend's name.
const SPEND_HASH_PATTERN: &str = "^(?:[0-9a-f]{64}|pending-spend-of:[0-9a-f]{64}:[0-9]{1,10})$";

/// What names a spend of the wallet: its transaction hash (64 lowercase hexadecimal
/// characters), or, for a pending spend the node names only by the wallet output it spends,
/// `pending-spend-of:<that output's transaction hash>:<its index>`.
#[derive(Debug, Clone)]
pub struct SpendHash(pub String);

impl SpendHash {
    fn is_valid(text: &str) -> bool {
        fn hex64(text: &str) -> bool {
            text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        if hex64(text) {
            return true;
        }
        let Some((hash, index)) = text
            .strip_prefix("pending-spend-of:")
            .and_then(|rest| rest.split_once(':'))
        else {
            return false;
        };
        hex64(hash) && (1..=10).contains(&index.len()) && index.bytes().all(|b| b.is_ascii_digit())
    }
}

impl<'de> Deserialize<'de> for SpendHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if SpendHash::is_valid(&text) {
            Ok(SpendHash(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "hash {text:?} names no spend: a transaction hash is 64 lowercase hexadecimal \
                 characters (or pending-spend-of:<hash>:<output index> for a pending spend known \
                 only by the output it spends)"
            )))
        }
    }
}

impl PartialSchema for SpendHash {
    fn schema() -> RefOr<Schema> {
        string_schema(
            SPEND_HASH_PATTERN,
            "a spend's transaction hash (64 lowercase hexadecimal characters), or \
             pending-spend-of:<hash>:<output index> for a pending spend the chain's node names \
             only by the wallet output it spends",
        )
    }
}

impl ToSchema for SpendHash {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SpendHash")
    }
}

/// `{hash}` in a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SpendHashPath {
    pub hash: SpendHash,
}

/// The longest reason an operator may give, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Why an operator resolved a spend: 1 to [`MAX_REASON_CHARS`] characters, not only blanks
/// (spaces, tabs, line breaks).
#[derive(Debug, Clone)]
pub struct Reason(pub String);

impl Reason {
    fn is_blank(c: char) -> bool {
        matches!(c, ' ' | '\t' | '\r' | '\n')
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let chars = text.chars().count();
        if text.chars().all(Reason::is_blank) {
            Err(serde::de::Error::custom(
                "reason is empty: say why the spend is resolved (who moved the coins, or why \
                 they are the payees' payments)",
            ))
        } else if chars > MAX_REASON_CHARS {
            Err(serde::de::Error::custom(format!(
                "reason is {chars} characters long; at most {MAX_REASON_CHARS} are kept"
            )))
        } else {
            Ok(Reason(text))
        }
    }
}

impl PartialSchema for Reason {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .min_length(Some(1))
            .max_length(Some(MAX_REASON_CHARS))
            // Something besides spaces, tabs and line breaks.
            .pattern(Some("[^ \\t\\r\\n]"))
            .description(Some(
                "why: who moved the coins, or why they are the payees' payments (recorded with \
                 the decision)",
            ))
            .into()
    }
}

impl ToSchema for Reason {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Reason")
    }
}

/// How many hours a history covers, ending with the current hour (UTC).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Hours, 1 to 744.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 744, default = 168)]
    #[serde(default)]
    pub hours: HourCount,
}

/// 1 to [`MAX_HOURS`] hours.
#[derive(Debug, Clone, Copy)]
pub struct HourCount(pub usize);

impl Default for HourCount {
    fn default() -> Self {
        HourCount(168)
    }
}

impl<'de> Deserialize<'de> for HourCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match usize::try_from(n) {
            Ok(n) if (1..=MAX_HOURS).contains(&n) => Ok(HourCount(n)),
            _ => Err(serde::de::Error::custom(format!(
                "hours must be 1 to {MAX_HOURS}, got {n}"
            ))),
        }
    }
}

impl Window {
    pub fn hours(&self) -> Hours {
        Hours::ending_at(bson::DateTime::now(), self.hours.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spend_hash_is_refused_exactly_where_its_pattern_does_not_match() {
        let pattern = regex::Regex::new(SPEND_HASH_PATTERN).unwrap();
        let hex = "0123456789abcdef".repeat(4);
        for text in [
            hex.clone(),
            hex.to_uppercase(),
            hex[..63].to_owned(),
            format!("{hex}0"),
            format!("{hex}\n"),
            format!("pending-spend-of:{hex}:0"),
            format!("pending-spend-of:{hex}:255"),
            format!("pending-spend-of:{hex}:1234567890"),
            format!("pending-spend-of:{hex}:12345678901"),
            format!("pending-spend-of:{hex}:"),
            format!("pending-spend-of:{hex}:1:2"),
            format!("pending-spend-of:{hex}:-1"),
            format!("pending-spend-of:{}:1", &hex[..63]),
            format!("pending-spend-of:{hex}"),
            format!("pending-spend-of::{hex}:1"),
            format!("Pending-spend-of:{hex}:1"),
            String::new(),
        ] {
            assert_eq!(
                SpendHash::is_valid(&text),
                pattern.is_match(&text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_reason_is_refused_exactly_where_its_schema_does_not_match() {
        let blank_only = regex::Regex::new("[^ \\t\\r\\n]").unwrap();
        for text in [
            String::new(),
            " ".into(),
            " \t\r\n".into(),
            "x".into(),
            " moved by hand ".into(),
            "\u{a0}".into(),
            "é".repeat(MAX_REASON_CHARS),
            "é".repeat(MAX_REASON_CHARS + 1),
        ] {
            let chars = text.chars().count();
            let schema_ok = (1..=MAX_REASON_CHARS).contains(&chars) && blank_only.is_match(&text);
            let parsed = serde_json::from_value::<Reason>(serde_json::Value::String(text.clone()));
            assert_eq!(parsed.is_ok(), schema_ok, "{text:?}");
        }
    }

    #[test]
    fn a_cursor_is_refused_exactly_where_its_pattern_does_not_match() {
        let heights = regex::Regex::new(&Cursor::<i64>::pattern()).unwrap();
        let ids = regex::Regex::new(&Cursor::<String>::pattern()).unwrap();
        for text in [
            "",
            ".",
            "1.",
            ".5",
            "12",
            "12.34",
            "+5",
            " 5",
            "1234567890123456789",
            "12.-3",
            "12.abc",
            "12.a.b",
            "12.0123456789abcdef01234567",
            "12.a\n",
            "1e3",
        ] {
            assert_eq!(
                Cursor::<i64>::parse(text).is_ok(),
                heights.is_match(text),
                "{text:?}"
            );
            assert_eq!(
                Cursor::<String>::parse(text).is_ok(),
                ids.is_match(text),
                "{text:?}"
            );
        }
    }
}
