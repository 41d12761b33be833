//! Tolerant readers for the original iNode's loosely typed fields (`ping: "0"`, `port: "5501"`,
//! `last_active_time` as a string). Reads accept every shape the original wrote; writes always
//! use the normalised type.

use bson::{Bson, DateTime, Document};
use serde::{Deserialize, Deserializer};

/// A time stored as a BSON datetime, an ISO-8601 string (with or without zone, `T` or space), or
/// the original's "never" markers `"0"`, `0`, `""` and null.
pub fn datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime>, D::Error> {
    let value = Option::<Bson>::deserialize(d)?;
    match value {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::DateTime(dt)) => Ok(Some(dt)),
        Some(Bson::String(s)) => Ok(parse_time_text(&s)),
        Some(Bson::Int32(0)) | Some(Bson::Int64(0)) => Ok(None),
        Some(Bson::Double(0.0)) => Ok(None),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a datetime, an ISO-8601 string or \"0\", got {other}"
        ))),
    }
}

/// Parses the string shapes the original wrote; `None` for "0", empty or unparsable text (an
/// unreadable `ping` means "never pinged", which is what the original's clients concluded too).
pub fn parse_time_text(text: &str) -> Option<DateTime> {
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return None;
    }
    if let Ok(aware) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(DateTime::from_chrono(aware.with_timezone(&chrono::Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(DateTime::from_chrono(naive.and_utc()));
        }
    }
    None
}

/// An integer stored as int32, int64, a whole double or a numeric string.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(optional_int(d)?.unwrap_or(0))
}

/// Like [`int`], with null, absent and `""` as `None`.
pub fn optional_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<Bson>::deserialize(d)?;
    match value {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Int32(v)) => Ok(Some(i64::from(v))),
        Some(Bson::Int64(v)) => Ok(Some(v)),
        Some(Bson::Double(v)) if v.is_finite() && v.fract() == 0.0 => Ok(Some(v as i64)),
        Some(Bson::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Bson::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {s:?}"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

/// A number stored as double, int or numeric string.
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = Option::<Bson>::deserialize(d)?;
    match value {
        None | Some(Bson::Null) => Ok(0.0),
        Some(Bson::Double(v)) => Ok(v),
        Some(Bson::Int32(v)) => Ok(f64::from(v)),
        Some(Bson::Int64(v)) => Ok(v as f64),
        Some(Bson::String(s)) if s.trim().is_empty() => Ok(0.0),
        Some(Bson::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| serde::de::Error::custom(format!("expected a number, got {s:?}"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a number, got {other}"
        ))),
    }
}

/// A TCP port stored as int or string; `"0"`, `0` and out-of-range values mean "unknown".
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    Ok(optional_int(d)?
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0))
}

/// An IP address string; the original's `"0"` and `""` mean "unknown".
pub fn ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Bson>::deserialize(d)?;
    match value {
        Some(Bson::String(s)) if !s.trim().is_empty() && s.trim() != "0" => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// The `score` of a pool or validator as stored (any numeric type, or the original's text); 0
/// when it has none.
pub fn stored_score(document: &Document) -> i64 {
    numeric(document.get("score")).map_or(0, |s| s as i64)
}

/// A number stored as any BSON numeric type or numeric text.
pub fn numeric(value: Option<&Bson>) -> Option<f64> {
    match value? {
        Bson::Double(v) if v.is_finite() => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::String(v) => v.trim().parse().ok().filter(|v: &f64| v.is_finite()),
        _ => None,
    }
}

/// A time stored as a datetime or as text the original wrote.
pub fn loose_time(value: Option<&Bson>) -> Option<DateTime> {
    match value? {
        Bson::DateTime(dt) => Some(*dt),
        Bson::String(text) => parse_time_text(text),
        _ => None,
    }
}

/// An `_id` of any type, as text.
pub fn id_text(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::ObjectId(id)) => id.to_hex(),
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}
