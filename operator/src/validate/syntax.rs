//! The syntax of the values Kubernetes names and quantities must have, checked before the API
//! server would refuse them half-applied.

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::problem::Problem;

/// Every quantity of `requirements` that is not one, under `field` (such as
/// `spec.node.resources`).
pub fn check_resources(
    field: &str,
    requirements: Option<&ResourceRequirements>,
    problems: &mut Vec<Problem>,
) {
    let Some(requirements) = requirements else {
        return;
    };
    for (kind, values) in [
        ("limits", &requirements.limits),
        ("requests", &requirements.requests),
    ] {
        for (resource, quantity) in values.iter().flatten() {
            if !is_quantity(&quantity.0) {
                problems.push(Problem::new(
                    format!("{field}.{kind}.{resource}"),
                    format!(
                        "{:?} is not a quantity (a number with an optional suffix: 500m, 256Mi, 2, 1e3)",
                        quantity.0
                    ),
                ));
            }
        }
    }
}

/// A DNS-1035 label, what a Service name must be: `[a-z]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// A namespace name, a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_namespace_name(name: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    bytes.len() <= 63
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
}

/// A Kubernetes resource quantity: a decimal number (optional sign), then nothing, a binary
/// (Ki..Ei) or decimal (n, u, m, k, M..E) suffix, or a decimal exponent (e3, E-2).
pub fn is_quantity(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.replace('.', "");
    let number_ok = !digits.is_empty() && number.matches('.').count() <= 1;
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exponent => exponent
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())),
    };
    number_ok && suffix_ok
}

/// A Prometheus duration: one or more `<number><unit>` in the order y w d h m s ms, or `0`.
pub fn is_prometheus_duration(text: &str) -> bool {
    if text == "0" {
        return true;
    }
    let units = ["y", "w", "d", "h", "ms", "m", "s"];
    let order = ["y", "w", "d", "h", "m", "s", "ms"];
    let mut rest = text;
    let mut last = None;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = units.into_iter().find(|u| rest.starts_with(u)) else {
            return false;
        };
        let position = order.iter().position(|o| *o == unit);
        if position <= last {
            return false;
        }
        last = position;
        rest = &rest[unit.len()..];
    }
    last.is_some()
}

/// A label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name like a label value.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_kubernetes_reads_them() {
        for ok in [
            "1", "0.5", ".5", "500m", "256Mi", "1Gi", "2k", "1e3", "1E-2", "+1", "100M",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "lots", "1.2.3", "Mi", "1mi", "1 Gi", "1e", "1ee3", "--1", "1KiB",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn service_names_are_dns_labels() {
        for ok in ["pool", "p", "pool-2", "a1"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "1pool", "Pool", "pool-", "-pool", "pool.v2", "pool_2"] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
