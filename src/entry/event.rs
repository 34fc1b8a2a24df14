//! Which of the three triggers sent an event, decided by its keys.

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use serde_json::{Map, Value};

/// One invocation's event, classified.
#[derive(Debug)]
pub enum Trigger {
    /// A function URL request (HTTP API payload 2.0).
    FunctionUrl(Box<LambdaFunctionUrlRequest>),
    /// An EventBridge event: a schedule or an SSM status change.
    EventBridge { source: String, detail_type: String, detail: Value },
    /// A direct invoke: `{"action": ..., ...}`, also what EventBridge
    /// Scheduler delivers as its `Input`.
    Invoke { action: String, fields: Map<String, Value> },
}

const EXPECTED: &str = "expected a function URL request (with requestContext.http), an EventBridge event \
(with source, detail-type and detail) or a direct invoke ({\"action\": \"deploy\" | \"rollback\" | \"status\" | \"reconcile\", ...})";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownEvent(pub String);

pub fn classify(event: Value) -> Result<Trigger, UnknownEvent> {
    let Value::Object(mut map) = event else {
        return Err(UnknownEvent(format!("the event is not a JSON object; {EXPECTED}")));
    };
    if map.get("requestContext").and_then(|c| c.get("http")).is_some() {
        return serde_json::from_value(Value::Object(map)).map(|r| Trigger::FunctionUrl(Box::new(r))).map_err(|e| {
            UnknownEvent(format!("the event looks like a function URL request but does not decode: {e}"))
        });
    }
    if map.contains_key("detail-type") && map.contains_key("source") {
        let text = |v: Option<Value>, key: &str| match v {
            Some(Value::String(s)) => Ok(s),
            _ => Err(UnknownEvent(format!("the EventBridge event's {key} is not a string"))),
        };
        let source = text(map.remove("source"), "source")?;
        let detail_type = text(map.remove("detail-type"), "detail-type")?;
        return Ok(Trigger::EventBridge { source, detail_type, detail: map.remove("detail").unwrap_or(Value::Null) });
    }
    match map.remove("action") {
        Some(Value::String(action)) => Ok(Trigger::Invoke { action, fields: map }),
        Some(_) => Err(UnknownEvent(format!("\"action\" must be a string; {EXPECTED}"))),
        None => {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(10).collect();
            Err(UnknownEvent(format!("unrecognised event with keys {keys:?}; {EXPECTED}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn classifies_the_samples() {
        for (file, kind) in [
            ("function-url-deploy.json", "url"),
            ("eventbridge-ssm-status.json", "eb"),
            ("invoke-rollback.json", "invoke"),
        ] {
            let text = std::fs::read_to_string(format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            let trigger = classify(serde_json::from_str(&text).unwrap()).unwrap();
            let got = match trigger {
                Trigger::FunctionUrl(_) => "url",
                Trigger::EventBridge { .. } => "eb",
                Trigger::Invoke { .. } => "invoke",
            };
            assert_eq!(got, kind, "{file}");
        }
    }

    #[test]
    fn unknown_shapes_say_what_was_expected() {
        let err = classify(json!({"hello": 1})).unwrap_err();
        assert!(err.0.contains("requestContext.http") && err.0.contains("\"hello\""), "{err}");
        assert!(classify(json!([1])).unwrap_err().0.contains("not a JSON object"));
        assert!(classify(json!({"requestContext": {"http": {}}})).unwrap_err().0.contains("does not decode"));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            let keys = prop_oneof![
                Just("requestContext".to_owned()),
                Just("http".to_owned()),
                Just("source".to_owned()),
                Just("detail-type".to_owned()),
                Just("detail".to_owned()),
                Just("action".to_owned()),
                Just("body".to_owned()),
                Just("isBase64Encoded".to_owned()),
                Just("timeEpoch".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn classify_never_panics(event in arb_json()) {
            let _ = classify(event);
        }
    }
}
