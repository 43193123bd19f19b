//! The local stack's AWS side: the table and signing key that `template.yaml` defines, created
//! on the local stand-in (moto) from the template itself, so there is one definition.

use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use serde_yaml_ng::Value;

/// The repository's `template.yaml`.
pub fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

/// Reads the template; CloudFormation's short-form tags (`!Ref`, `!Sub`) parse as tagged values.
pub fn read_template(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn resource<'a>(template: &'a Value, logical_id: &str) -> Result<&'a Value, String> {
    template
        .get("Resources")
        .and_then(|r| r.get(logical_id))
        .ok_or_else(|| format!("template has no resource {logical_id}"))
}

fn text<'a>(value: &'a Value, key: &str) -> Result<&'a str, String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("template: {key} missing or not a string"))
}

fn parse_key_schema(list: &Value) -> Result<Vec<KeySchemaElement>, String> {
    list.as_sequence()
        .ok_or("KeySchema is not a list")?
        .iter()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(text(element, "AttributeName")?)
                .key_type(KeyType::from(text(element, "KeyType")?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The parts of the table definition the stand-in needs.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeySchemaElement>,
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub ttl_attribute: Option<String>,
    /// The stream (the events' outbox), when the template enables one.
    pub stream_view_type: Option<String>,
}

pub fn table_definition(template: &Value, logical_id: &str) -> Result<TableDefinition, String> {
    let properties = resource(template, logical_id)?
        .get("Properties")
        .ok_or("table has no Properties")?;
    let attribute_definitions = properties
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or("AttributeDefinitions missing")?
        .iter()
        .map(|definition| {
            AttributeDefinition::builder()
                .attribute_name(text(definition, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(
                    definition,
                    "AttributeType",
                )?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, String>>()?;
    let key_schema = parse_key_schema(properties.get("KeySchema").ok_or("KeySchema missing")?)?;
    let global_secondary_indexes = match properties
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
    {
        None => Vec::new(),
        Some(indexes) => indexes
            .iter()
            .map(|index| {
                let projection = index.get("Projection").ok_or("GSI Projection missing")?;
                GlobalSecondaryIndex::builder()
                    .index_name(text(index, "IndexName")?)
                    .set_key_schema(Some(parse_key_schema(
                        index.get("KeySchema").ok_or("GSI KeySchema missing")?,
                    )?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(text(
                                projection,
                                "ProjectionType",
                            )?))
                            .set_non_key_attributes(
                                projection
                                    .get("NonKeyAttributes")
                                    .and_then(Value::as_sequence)
                                    .map(|names| {
                                        names
                                            .iter()
                                            .filter_map(Value::as_str)
                                            .map(str::to_owned)
                                            .collect()
                                    }),
                            )
                            .build(),
                    )
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, String>>()?,
    };
    let ttl_attribute = properties
        .get("TimeToLiveSpecification")
        .filter(|ttl| ttl.get("Enabled").and_then(Value::as_bool) == Some(true))
        .and_then(|ttl| ttl.get("AttributeName"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stream_view_type = properties
        .get("StreamSpecification")
        .and_then(|stream| stream.get("StreamViewType"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(TableDefinition {
        attribute_definitions,
        key_schema,
        global_secondary_indexes,
        ttl_attribute,
        stream_view_type,
    })
}

/// Creates the table (on-demand, as the template says) with its TTL.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    definition: &TableDefinition,
) -> Result<(), String> {
    let stream = definition
        .stream_view_type
        .as_deref()
        .map(|view| {
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .map_err(|e| e.to_string())
        })
        .transpose()?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(definition.attribute_definitions.clone()))
        .set_key_schema(Some(definition.key_schema.clone()))
        .set_global_secondary_indexes(
            (!definition.global_secondary_indexes.is_empty())
                .then(|| definition.global_secondary_indexes.clone()),
        )
        .set_stream_specification(stream)
        .send()
        .await
        .map_err(|e| format!("CreateTable {name}: {}", store::error_chain(&e)))?;
    if let Some(attribute) = &definition.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map_err(|e| format!("UpdateTimeToLive {name}: {}", store::error_chain(&e)))?;
    }
    Ok(())
}

/// Creates the signing key with the spec and usage the template gives it, and an alias.
/// Returns the alias name (`alias/...`), which is what the functions are configured with.
pub async fn create_signing_key(
    client: &aws_sdk_kms::Client,
    template: &Value,
    logical_id: &str,
    alias: &str,
) -> Result<String, String> {
    let properties = resource(template, logical_id)?
        .get("Properties")
        .ok_or("key has no Properties")?;
    let created = client
        .create_key()
        .key_spec(KeySpec::from(text(properties, "KeySpec")?))
        .key_usage(KeyUsageType::from(text(properties, "KeyUsage")?))
        .description("local stack: Alipay application signing key")
        .send()
        .await
        .map_err(|e| format!("CreateKey: {}", store::error_chain(&e)))?;
    let key_id = created
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or("CreateKey returned no key id")?;
    let alias = format!("alias/{}", alias.trim_start_matches("alias/"));
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .map_err(|e| format!("CreateAlias {alias}: {}", store::error_chain(&e)))?;
    Ok(alias)
}

/// The stand-in's endpoint, refusing anything but loopback: tests must never reach real AWS.
pub fn endpoint_from_env() -> Result<String, String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
        "AWS_ENDPOINT_URL is not set: these tests need the local AWS stand-in. Run `make test`, or \
         `scripts/moto.sh start` and export AWS_ENDPOINT_URL plus dummy credentials (see README)."
            .to_owned()
    })?;
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    if !loopback.iter().any(|prefix| endpoint.starts_with(prefix)) {
        return Err(format!(
            "AWS_ENDPOINT_URL={endpoint} is not a loopback address; refusing to touch it"
        ));
    }
    Ok(endpoint)
}
