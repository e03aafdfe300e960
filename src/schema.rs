//! The JSON Schema of the policy format, generated from the wire types so
//! that the schema editors validate against cannot drift from the parser.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::spec::v1alpha1::{AnyDocument, ServicePolicy};

/// Where the committed schema of every kind lives (ServicePolicy and
/// DisruptionBudget), relative to the repository root: what spec files'
/// modelines name.
pub const SCHEMA_PATH: &str = "schema/v1alpha1.json";

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://stevedore.io/schema/v1alpha1.json";

/// Where the committed ServicePolicy-only schema lives (published first;
/// kept for the modelines that name it).
pub const SERVICEPOLICY_SCHEMA_PATH: &str = "schema/servicepolicy-v1alpha1.json";

/// Every kind of spec file, as pretty JSON (draft 2020-12), with a
/// trailing newline.
pub fn specs_json() -> String {
    generate::<AnyDocument>(SCHEMA_ID)
}

/// Where the committed scenario schema lives.
pub const SCENARIO_SCHEMA_PATH: &str = "schema/scenario-v1alpha1.json";

/// The ServicePolicy schema alone.
pub fn servicepolicy_json() -> String {
    generate::<ServicePolicy>("https://stevedore.io/schema/servicepolicy-v1alpha1.json")
}

/// The schema of simulator scenario files.
pub fn scenario_json() -> String {
    generate::<crate::sim::scenario::ScenarioFile>(
        "https://stevedore.io/schema/scenario-v1alpha1.json",
    )
}

fn generate<T: schemars::JsonSchema>(id: &str) -> String {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    strip_null(&mut value);
    if let Value::Object(map) = &mut value {
        map.insert("$id".to_owned(), id.into());
    }
    let mut text = serde_json::to_string_pretty(&value).expect("a schema is always serializable");
    text.push('\n');
    text
}

/// Optional fields are simply not required; schemars also lets them be
/// `null` (`anyOf: [T, {type: null}]`), which makes editors answer every typo
/// in an optional section with "not valid under any of the given schemas".
/// Leaving `null` out makes their messages point at the field itself.
fn strip_null(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(any_of)) = map.get("anyOf") {
                let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
                if any_of.len() == 2 && any_of.iter().any(is_null) {
                    let inner = any_of
                        .iter()
                        .find(|v| !is_null(v))
                        .cloned()
                        .unwrap_or_default();
                    map.remove("anyOf");
                    if let Value::Object(inner) = inner {
                        for (k, v) in inner {
                            map.entry(k).or_insert(v);
                        }
                    }
                }
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".to_owned(), only);
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}
