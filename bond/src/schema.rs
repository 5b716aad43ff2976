//! The OpenAPI schema of [`BondOptions`]: each option's type, range and description, for a
//! spec that embeds it with `#[serde(flatten)]`. Only formats Kubernetes knows.

use serde_json::{json, Map, Value};

use crate::options::{BondOptions, OptionSpec};

/// One option's schema: its value's, with the table's range and description.
pub(crate) fn property(spec: Option<&OptionSpec>, mut schema: Value) -> Value {
    let Some(spec) = spec else { return schema };
    let doc: Vec<&str> = spec.doc.lines().map(str::trim).collect();
    let obj = schema.as_object_mut().expect("option schemas are objects");
    obj.insert("description".into(), Value::from(doc.join(" ").trim()));
    let is_integer = obj.get("type") == Some(&json!("integer")) && !obj.contains_key("enum");
    if spec.is_list {
        obj.insert("maxItems".into(), Value::from(spec.max));
    } else if is_integer {
        obj.insert("minimum".into(), Value::from(spec.min));
        obj.insert("maximum".into(), Value::from(spec.max));
    } else if obj.get("type") == Some(&json!("string")) && !obj.contains_key("enum") {
        // An interface name.
        obj.insert("maxLength".into(), Value::from(15));
    }
    schema
}

impl schemars::JsonSchema for BondOptions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BondOptions".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let properties: Map<String, Value> = BondOptions::property_schemas()
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema))
            .collect();
        schemars::Schema::try_from(json!({"type": "object", "properties": properties}))
            .unwrap_or_default()
    }
}
