//! Input strategies for the property tests that throw arbitrary input at every parser of
//! external input (WebSocket frames, HTTP bodies, config files, chain answers, uPow
//! transactions).

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, nested a few levels: scalars of every kind (huge and negative numbers,
/// floats, unicode strings) inside arrays and objects.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with the given keys (each present or not) holding any JSON: closer to what a
/// parser expects than [`any_json`], so the checks past the first one are reached.
pub fn shaped_json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::collection::vec(proptest::option::of(any_json()), keys.len()).prop_map(
        move |values| {
            Value::Object(
                keys.iter()
                    .zip(values)
                    .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                    .collect(),
            )
        },
    )
}

/// Any bytes, any text, any JSON, or a shaped object, as the bytes a client would send.
pub fn any_body(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "\\PC{0,256}".prop_map(String::into_bytes),
        any_json().prop_map(|v| v.to_string().into_bytes()),
        shaped_json(keys).prop_map(|v| v.to_string().into_bytes()),
    ]
}
