//! Kafka client settings shared by the change feed's consumer
//! (`invalidation/kafka.rs`) and `sqlcache cdc`'s producer (`cdc/publish.rs`).

use rdkafka::ClientConfig;

/// Applies `[… .properties]`-style tables verbatim to a librdkafka config
/// (strings as they are, numbers and booleans as TOML prints them); they
/// override the defaults set before.
pub fn set_properties(
    c: &mut ClientConfig,
    props: &std::collections::BTreeMap<String, toml::Value>,
) {
    for (k, v) in props {
        let v = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        c.set(k, v);
    }
}
