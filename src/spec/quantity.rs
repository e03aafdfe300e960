//! Value types shared by the wire format and the internal policy: durations
//! written as `30s` / `5m` / `1h30m`, and counts written either as a number or
//! as a percentage such as `"20%"` (Kubernetes' `IntOrString`).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The regular expression a duration string must match; also published in the
/// JSON Schema so editors flag a bad duration before `stevedore validate` does.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// The regular expression a percentage string must match.
pub const PERCENT_PATTERN: &str = r"^[0-9]+%$";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "`{0}` is not a duration: write a number followed by a unit, such as `30s`, `5m` or `1h30m` (units: ms, s, m, h)"
    )]
    Syntax(String),
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

/// Parses `30s`, `5m`, `1h30m`, `250ms`. A bare number is rejected on purpose:
/// `cooldown: 60` is ambiguous (seconds? minutes?) and the fix is one letter.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax(text.to_owned());
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(syntax());
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow(text.to_owned()))?;
        rest = &rest[digits..];
        let (unit_ms, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(syntax());
        };
        rest = &rest[unit_len..];
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// A count of tasks given either absolutely or as a percentage of the
/// service's desired count, as written by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrPercent {
    /// A plain number, such as `2`. Kept signed so that `-1` reaches
    /// validation and gets a clear message instead of a type error.
    Int(i64),
    /// A string such as `"20%"`, kept as written until validation.
    Text(String),
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Text(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntOrPercentVisitor;
        impl Visitor<'_> for IntOrPercentVisitor {
            type Value = IntOrPercent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of tasks or a percentage such as \"20%\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IntOrPercent::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(IntOrPercent::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IntOrPercent::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(IntOrPercentVisitor)
    }
}

impl JsonSchema for IntOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "IntOrPercent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of tasks, or a percentage of the service's desired count such as \"20%\".",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": PERCENT_PATTERN }
            ]
        })
    }
}

/// Schema-only marker for duration strings; the wire types keep the text
/// (with its position) and validation parses it.
pub struct DurationSchema;

impl JsonSchema for DurationSchema {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number followed by a unit (ms, s, m, h), such as \"30s\", \"5m\" or \"1h30m\".",
            "type": "string",
            "pattern": DURATION_PATTERN
        })
    }
}

/// A validated count: absolute, or a percentage of the desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TaskCount {
    Tasks(u32),
    Percent(u32),
}

impl TaskCount {
    /// Resolves against a desired count, rounding up (as ECS and Kubernetes
    /// do for `maxUnavailable`-style budgets) and never below `floor`.
    pub fn resolve(self, desired: u32, floor: u32) -> u32 {
        let n = match self {
            TaskCount::Tasks(n) => n,
            TaskCount::Percent(p) => {
                ((u64::from(desired) * u64::from(p)).div_ceil(100)).min(u64::from(u32::MAX)) as u32
            }
        };
        n.max(floor)
    }
}

impl fmt::Display for TaskCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskCount::Tasks(n) => write!(f, "{n}"),
            TaskCount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Parses a percentage string such as `"20%"` into its number.
pub fn parse_percent(text: &str) -> Option<u32> {
    let digits = text.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_combination() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("250ms", 250),
            ("1h30m", 5_400_000),
            ("1m30s500ms", 90_500),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn durations_reject_bare_numbers_units_and_junk() {
        for text in ["60", "s", "5 m", "5min", "1.5s", "-5s", "5d", "m5"] {
            assert!(
                matches!(parse_duration(text), Err(DurationError::Syntax(_))),
                "{text}"
            );
        }
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn percentages_parse_only_digits_then_percent() {
        assert_eq!(parse_percent("20%"), Some(20));
        assert_eq!(parse_percent("0%"), Some(0));
        for text in ["%", "20", "2 0%", "-5%", "20%%", "1.5%"] {
            assert_eq!(parse_percent(text), None, "{text}");
        }
    }

    #[test]
    fn task_counts_round_percentages_up_and_respect_the_floor() {
        assert_eq!(TaskCount::Percent(10).resolve(15, 1), 2);
        assert_eq!(TaskCount::Percent(10).resolve(0, 1), 1);
        assert_eq!(TaskCount::Percent(100).resolve(7, 1), 7);
        assert_eq!(TaskCount::Tasks(3).resolve(100, 1), 3);
        assert_eq!(TaskCount::Tasks(0).resolve(100, 1), 1);
    }
}
