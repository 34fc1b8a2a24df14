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

/// The EventBridge events that move the reconcile on: the schedule's rule,
/// SSM's command status changes, and a rollback alarm's state change (the
/// reconcile reads the alarms' states itself; the event is a hint). Anything
/// else is refused.
pub fn is_reconcile_trigger(source: &str, detail_type: &str) -> bool {
    matches!(
        (source, detail_type),
        ("aws.events", "Scheduled Event")
            | (
                "aws.ssm",
                "EC2 Command Invocation Status-change Notification" | "EC2 Command Status-change Notification"
            )
            | ("aws.cloudwatch", "CloudWatch Alarm State Change")
    )
}

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
    use crate::domain::model::flakeref::tests::{mutation, Mutation};
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn classifies_the_samples() {
        for (file, kind) in [
            ("function-url-deploy.json", "url"),
            ("eventbridge-ssm-status.json", "eb"),
            ("invoke-rollback.json", "invoke"),
            ("invoke-abort.json", "invoke"),
            ("eventbridge-alarm-state-change.json", "eb"),
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

    /// What an event makes the function do, or None when it is refused: the
    /// trigger, then the same checks the handler makes.
    fn accepted(event: Value) -> Option<String> {
        match classify(event).ok()? {
            Trigger::FunctionUrl(request) => {
                crate::entry::http::decode_request(&request).ok().map(|op| format!("url {op:?}"))
            }
            Trigger::EventBridge { source, detail_type, .. } => {
                is_reconcile_trigger(&source, &detail_type).then(|| "eventbridge reconcile".to_owned())
            }
            Trigger::Invoke { action, fields } => {
                crate::entry::invoke_operation(&action, fields).ok().map(|op| format!("invoke {op:?}"))
            }
        }
    }

    fn sample(name: &str) -> Value {
        let text = std::fs::read_to_string(format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Valid events of every trigger, each with the places (JSON pointers)
    /// whose key or string value decides what the event means.
    fn valid_events() -> Vec<(Value, Vec<&'static str>)> {
        let scheduled = sample("eventbridge-scheduled.json");
        let status = sample("eventbridge-ssm-status.json");
        let mut command = status.clone();
        command["detail-type"] = "EC2 Command Status-change Notification".into();
        let mut url = sample("function-url-deploy.json");
        url["rawPath"] = "/fleet".into();
        url["requestContext"]["http"]["method"] = "GET".into();
        // rawPath alone names the route, so renaming it must not leave another path behind.
        url["requestContext"]["http"].as_object_mut().unwrap().remove("path");
        url["body"] = Value::Null;
        let eventbridge = vec!["/source", "/detail-type"];
        vec![
            (scheduled, eventbridge.clone()),
            (status, eventbridge.clone()),
            (command, eventbridge),
            (url, vec!["/requestContext", "/requestContext/http", "/rawPath"]),
            (json!({"action": "reconcile"}), vec!["/action"]),
            (json!({"action": "status"}), vec!["/action"]),
            (json!({"action": "rollback"}), vec!["/action"]),
            (
                json!({"action": "deploy", "flakeref": "AcmeCorp/infra/=0.1.42#nixosConfigurations.web"}),
                vec!["/action"],
            ),
        ]
    }

    #[derive(Clone, Debug)]
    enum Change {
        /// The key at the place renamed by the mutation.
        Key(Mutation),
        /// The string value at the place mutated.
        Value(Mutation),
        /// One ASCII letter of the value swapped for a Cyrillic lookalike or its other case.
        Letter { nth: usize, cyrillic: bool },
    }

    fn change() -> impl Strategy<Value = Change> {
        let text = || {
            mutation()
                .prop_filter("homoglyphs of / = # need those characters", |m| !matches!(m, Mutation::Homoglyph { .. }))
        };
        prop_oneof![
            text().prop_map(Change::Key),
            text().prop_map(Change::Value),
            (any::<usize>(), any::<bool>()).prop_map(|(nth, cyrillic)| Change::Letter { nth, cyrillic }),
        ]
    }

    fn apply(event: &Value, place: &str, change: &Change) -> Value {
        let mut event = event.clone();
        let (parent, key) = place.rsplit_once('/').unwrap();
        let parent = event.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match change {
            Change::Key(mutation) => {
                let value = parent.remove(key).unwrap();
                parent.insert(mutation.apply(key), value);
            }
            Change::Value(mutation) => {
                let value = parent.get_mut(key).unwrap();
                *value = match value {
                    Value::String(s) => Value::String(mutation.apply(s)),
                    // A place holding an object: rename its key instead.
                    _ => {
                        return apply(
                            &Value::Object(std::mem::take(parent)),
                            &format!("/{key}"),
                            &Change::Key(mutation.clone()),
                        )
                    }
                };
            }
            Change::Letter { nth, cyrillic } => {
                let Some(Value::String(s)) = parent.get_mut(key) else {
                    let value = parent.remove(key).unwrap();
                    parent.insert(key.to_uppercase(), value);
                    return event;
                };
                let letters: Vec<usize> =
                    s.char_indices().filter(|(_, c)| c.is_ascii_alphabetic()).map(|(i, _)| i).collect();
                let at = letters[nth % letters.len()];
                let c = s.as_bytes()[at] as char;
                let with = match (cyrillic, c) {
                    (true, 'a') => 'а',
                    (true, 'e') => 'е',
                    (true, 'o') => 'о',
                    (true, 'c') => 'с',
                    (true, 'p') => 'р',
                    (true, 's') => 'ѕ',
                    (true, 'E') => 'Е',
                    (true, 'C') => 'С',
                    (true, 'S') => 'Ѕ',
                    (true, 'i') => 'і',
                    _ if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
                    _ => c.to_ascii_lowercase(),
                };
                s.replace_range(at..at + 1, &with.to_string());
            }
        }
        event
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        /// Each valid event of each trigger means what it should; an attacker's
        /// change to a key or value that decides its meaning (a character
        /// outside the grammar, a zero-width or bidi control, a lookalike or
        /// other-case letter, a leading `-`, 20,000 characters) gets it
        /// refused, never read as another request.
        #[test]
        fn mutated_events_are_refused(which in any::<prop::sample::Index>(), place in any::<prop::sample::Index>(), change in change()) {
            let events = valid_events();
            let (event, places) = which.get(&events);
            prop_assert!(accepted(event.clone()).is_some(), "a valid event was refused: {}", event);
            let place = place.get(places);
            let mutated = apply(event, place, &change);
            prop_assert!(mutated != *event, "{:?} at {} changed nothing", change, place);
            let meaning = accepted(mutated.clone());
            prop_assert!(meaning.is_none(), "{:?} at {} was accepted as {:?}", change, place, meaning);
        }
    }
}
