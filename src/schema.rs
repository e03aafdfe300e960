//! The JSON Schema of the policy format, generated from the wire types so
//! that the schema editors validate against cannot drift from the parser.

use schemars::generate::SchemaSettings;

use crate::spec::v1alpha1::ServicePolicy;

/// Where the committed copy lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schema/servicepolicy-v1alpha1.json";

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://stevedore.io/schema/servicepolicy-v1alpha1.json";

/// The schema as pretty JSON (draft 2020-12), with a trailing newline.
pub fn servicepolicy_json() -> String {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<ServicePolicy>();
    schema.insert("$id".to_owned(), SCHEMA_ID.into());
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is always serializable");
    text.push('\n');
    text
}
