//! How the dashboard writes a moment: the pages' tables and the charts' bar titles alike.

use bson::DateTime;

/// A UTC time to the second, or "never": `2026-11-28 15:44:12 UTC`.
pub fn when(time: Option<DateTime>) -> String {
    time.and_then(|t| t.try_to_rfc3339_string().ok())
        .map(|t| t.replace('T', " ").trim_end_matches('Z').to_owned() + " UTC")
        .unwrap_or_else(|| "never".into())
}
