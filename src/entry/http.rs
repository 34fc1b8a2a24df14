//! The function URL's HTTP API: routes, body decoding and responses.

use super::error::{ApiError, MAX_BODY_BYTES};
use super::operation::{
    control_request, decode, page_limit, release_id, DeployBody, Operation, RollbackBody, DEPLOY_SHAPE, ROLLBACK_SHAPE,
};
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine;
use serde_json::{json, Value};

/// Turns a request into an operation, or the error that answers it.
pub fn decode_request(request: &LambdaFunctionUrlRequest) -> Result<Operation, ApiError> {
    let method = request.request_context.http.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let raw_path = request.raw_path.as_deref().or(request.request_context.http.path.as_deref()).unwrap_or("/");
    let path = match raw_path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    let allowed: &[&str] = match segments.as_slice() {
        ["healthz"] | ["fleet"] | ["releases", _] => &["GET"],
        ["releases"] => &["GET", "POST"],
        ["rollback"] | ["reconcile"] | ["releases", _, "pause" | "resume" | "abort"] => &["POST"],
        _ => {
            return Err(ApiError::new(
                404,
                "not_found",
                format!(
                    "no route {path}; routes are GET /healthz, GET /fleet, GET|POST /releases, GET /releases/{{id}}, \
                     POST /releases/{{id}}/pause|resume|abort, POST /rollback, POST /reconcile"
                ),
            ))
        }
    };
    if !allowed.contains(&method.as_str()) {
        return Err(ApiError {
            details: Box::new(crate::api::ErrorDetails {
                allow: Some(allowed.iter().map(|m| m.to_string()).collect()),
                ..Default::default()
            }),
            ..ApiError::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed on {path}; use {}", allowed.join(" or ")),
            )
        });
    }

    match (method.as_str(), segments.as_slice()) {
        ("GET", ["healthz"]) => Ok(Operation::Health),
        ("GET", ["fleet"]) => Ok(Operation::FleetStatus),
        ("POST", ["reconcile"]) => {
            // It takes no fields, but a body that is not an object is refused as on every POST.
            json_body(request)?;
            Ok(Operation::Reconcile)
        }
        ("GET", ["releases", id]) => Ok(Operation::GetRelease(release_id(id)?)),
        ("GET", ["releases"]) => {
            let query = &request.query_string_parameters;
            let limit = page_limit(query.get("limit").map(String::as_str))?;
            let after = query.get("cursor").filter(|c| !c.is_empty()).map(|c| release_id(c)).transpose()?;
            Ok(Operation::ListReleases { limit, after })
        }
        ("POST", ["releases"]) => {
            let body = json_body(request)?.ok_or_else(|| {
                ApiError::bad_request("invalid_json", format!("the body is empty; expected {DEPLOY_SHAPE}"))
            })?;
            decode::<DeployBody>(body, DEPLOY_SHAPE)?.into_operation()
        }
        ("POST", ["releases", id, verb]) => {
            let id = release_id(id)?;
            // `by` is the authenticated caller's, set once the gate has let the request in.
            Ok(Operation::Control { id, request: control_request(verb, json_body(request)?)?, by: String::new() })
        }
        ("POST", ["rollback"]) => match json_body(request)? {
            None => RollbackBody::default().into_operation(),
            Some(body) => decode::<RollbackBody>(body, ROLLBACK_SHAPE)?.into_operation(),
        },
        _ => unreachable!("every allowed route is matched above"),
    }
}

/// The body as JSON; None when empty. Refuses oversized, undecodable or
/// non-JSON bodies.
fn json_body(request: &LambdaFunctionUrlRequest) -> Result<Option<Value>, ApiError> {
    let raw = request.body.as_deref().unwrap_or("");
    let too_large =
        || ApiError::new(413, "body_too_large", format!("the body is over the limit of {MAX_BODY_BYTES} bytes"));
    let bytes = if request.is_base64_encoded {
        if raw.len() > MAX_BODY_BYTES.div_ceil(3) * 4 {
            return Err(too_large());
        }
        base64::engine::general_purpose::STANDARD.decode(raw.trim()).map_err(|e| {
            ApiError::bad_request("invalid_body", format!("the body is marked base64 but does not decode: {e}"))
        })?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    // serde builds a struct from a sequence too: `[]` would be a rollback and
    // `["a/b/=1.0.0#x"]` a deploy. Only an object is a body.
    let kind = match &value {
        Value::Object(_) => return Ok(Some(value)),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    Err(ApiError::bad_request("invalid_json", format!("the body is {kind}; it must be a JSON object")))
}

/// A function URL response with a JSON body.
pub fn response(status: u16, body: &Value) -> Value {
    let mut headers = json!({ "content-type": "application/json" });
    // A 405 names the methods the route takes in an Allow header too (RFC 9110 §15.5.6).
    if let (405, Some(allow)) = (status, body["allow"].as_array()) {
        let methods: Vec<&str> = allow.iter().filter_map(Value::as_str).collect();
        headers["allow"] = methods.join(", ").into();
    }
    json!({
        "statusCode": status,
        "headers": headers,
        "body": body.to_string(),
        "isBase64Encoded": false,
        "cookies": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::flakeref::tests::{mutation, valid_flakeref, Mutation};
    use proptest::prelude::*;

    fn request(method: &str, path: &str, body: Option<&str>, base64: bool) -> LambdaFunctionUrlRequest {
        let event = json!({
            "version": "2.0", "rawPath": path, "rawQueryString": "", "headers": {},
            "requestContext": { "http": { "method": method, "path": path }, "timeEpoch": 0 },
            "body": body, "isBase64Encoded": base64,
        });
        serde_json::from_value(event).unwrap()
    }

    fn error_of(method: &str, path: &str, body: Option<&str>, base64: bool) -> ApiError {
        decode_request(&request(method, path, body, base64)).unwrap_err()
    }

    #[test]
    fn routes_and_methods() {
        assert!(matches!(decode_request(&request("GET", "/healthz", None, false)), Ok(Operation::Health)));
        assert!(matches!(
            decode_request(&request("GET", "/releases/", None, false)),
            Ok(Operation::ListReleases { limit: 20, after: None })
        ));
        assert!(matches!(decode_request(&request("post", "/rollback", None, false)), Ok(Operation::Rollback(_))));
        assert_eq!(error_of("GET", "/nope", None, false).status, 404);
        assert_eq!(error_of("DELETE", "/releases", None, false).status, 405);
        assert_eq!(error_of("POST", "/releases/x", None, false).status, 405);
        assert_eq!(error_of("GET", "/releases/not-an-id", None, false).code, "invalid_release_id");
    }

    #[test]
    fn steering_routes_take_a_release_id_and_only_an_abort_takes_a_field() {
        use crate::domain::planner::control::ControlRequest;
        let id = "01J0000000000000000000000A";
        let steer = |verb: &str, body: Option<&str>| {
            decode_request(&request("POST", &format!("/releases/{id}/{verb}"), body, false))
        };
        assert!(matches!(steer("pause", None), Ok(Operation::Control { request: ControlRequest::Pause, .. })));
        assert!(matches!(steer("resume", Some("{}")), Ok(Operation::Control { request: ControlRequest::Resume, .. })));
        assert!(matches!(
            steer("abort", Some(r#"{"rollback": true}"#)),
            Ok(Operation::Control { request: ControlRequest::Abort { rollback: true }, .. })
        ));
        assert!(matches!(
            steer("abort", None),
            Ok(Operation::Control { request: ControlRequest::Abort { rollback: false }, .. })
        ));
        assert_eq!(steer("pause", Some(r#"{"rollback": true}"#)).unwrap_err().code, "invalid_json");
        assert_eq!(steer("abort", Some(r#"{"rollback": "yes"}"#)).unwrap_err().code, "invalid_json");
        assert_eq!(steer("abort", Some(r#"{"force": true}"#)).unwrap_err().code, "invalid_json");
        assert_eq!(steer("promote", None).unwrap_err().status, 404);
        assert_eq!(error_of("GET", &format!("/releases/{id}/pause"), None, false).status, 405);
        assert_eq!(error_of("POST", "/releases/not-an-id/pause", None, false).code, "invalid_release_id");
    }

    #[test]
    fn bodies() {
        let ok = r#"{"flakeref": "a/b/=1.2.3#nixosConfigurations.x", "revision": "abcdef1"}"#;
        assert!(matches!(decode_request(&request("POST", "/releases", Some(ok), false)), Ok(Operation::Deploy(_))));
        let b64 = base64::engine::general_purpose::STANDARD.encode(ok);
        assert!(matches!(decode_request(&request("POST", "/releases", Some(&b64), true)), Ok(Operation::Deploy(_))));
        assert_eq!(error_of("POST", "/releases", Some("{"), false).code, "invalid_json");
        assert_eq!(error_of("POST", "/releases", Some("!!"), true).code, "invalid_body");
        assert_eq!(error_of("POST", "/releases", None, false).code, "invalid_json");
        assert_eq!(error_of("POST", "/releases", Some(r#"{"flakeRef": "x"}"#), false).code, "invalid_json");
        assert_eq!(error_of("POST", "/releases", Some(r#"{"flakeref": "a/b/0.1#x"}"#), false).code, "invalid_flakeref");
        let big = format!(r#"{{"flakeref": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
        assert_eq!(error_of("POST", "/releases", Some(&big), false).status, 413);
    }

    /// A valid ULID release id.
    fn valid_release_id() -> impl Strategy<Value = String> {
        "[0-7][0-9A-HJKMNP-TV-Z]{25}"
    }

    /// What an attacker does to a release id: the flakeref's insertions, a
    /// leading `-`, growth past any limit, and a letter or digit swapped for
    /// a Cyrillic or fullwidth lookalike.
    fn release_id_mutation() -> impl Strategy<Value = (Mutation, Option<(usize, char)>)> {
        prop_oneof![
            mutation()
                .prop_filter("release ids have no / = #", |m| !matches!(m, Mutation::Homoglyph { .. }))
                .prop_map(|m| (m, None)),
            (
                0usize..26,
                prop::sample::select(&['\u{0410}', '\u{041E}', '\u{0415}', '\u{FF10}', '\u{FF21}', '\u{0399}'][..])
            )
                .prop_map(|swap| (Mutation::LeadingDash, Some(swap))),
        ]
    }

    fn mutate_release_id(valid: &str, (mutation, swap): &(Mutation, Option<(usize, char)>)) -> String {
        match swap {
            Some((at, with)) => valid.chars().enumerate().map(|(i, c)| if i == *at { *with } else { c }).collect(),
            None => mutation.apply(valid),
        }
    }

    /// What a request with this body must answer: 413 past the size limit, else `code`.
    fn refusal(body: &str, code: &'static str) -> (u16, &'static str) {
        if body.len() > MAX_BODY_BYTES {
            (413, "body_too_large")
        } else {
            (400, code)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        /// Valid deploy bodies are decoded to exactly their flakeref; every
        /// attacker mutation of the flakeref inside a well-formed JSON body
        /// (so it reaches the validator, escaped as a client would send it)
        /// is refused with the exact error, base64 or not.
        #[test]
        fn hostile_flakerefs_in_deploy_bodies_are_refused(
            valid in valid_flakeref(),
            mutation in mutation(),
            revision in proptest::option::of("[0-9a-f]{7,40}"),
            key in proptest::option::of("[A-Za-z0-9._:/+=-]{1,128}"),
            base64 in any::<bool>(),
        ) {
            let body = |flakeref: &str| json!({"flakeref": flakeref, "revision": revision, "idempotency_key": key}).to_string();
            let send = |body: &str| {
                let encoded = if base64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_owned() };
                decode_request(&request("POST", "/releases", Some(&encoded), base64))
            };
            match send(&body(&valid)) {
                Ok(Operation::Deploy(deploy)) => prop_assert_eq!(deploy.flakeref.as_str(), valid.as_str()),
                other => prop_assert!(false, "a valid body was not a deploy: {:?}", other),
            }
            let hostile = body(&mutation.apply(&valid));
            let err = send(&hostile).expect_err("a mutated flakeref was accepted");
            prop_assert_eq!((err.status, err.code), refusal(&hostile, "invalid_flakeref"), "{:?}: {}", mutation, err);
        }

        /// The same for rollback bodies and their release id.
        #[test]
        fn hostile_release_ids_in_rollback_bodies_are_refused(
            valid in valid_release_id(),
            mutation in release_id_mutation(),
            base64 in any::<bool>(),
        ) {
            let send = |body: &str| {
                let encoded = if base64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_owned() };
                decode_request(&request("POST", "/rollback", Some(&encoded), base64))
            };
            match send(&json!({"release_id": valid}).to_string()) {
                Ok(Operation::Rollback(rollback)) => {
                    prop_assert_eq!(rollback.target.as_ref().map(|id| id.as_str()), Some(valid.as_str()))
                }
                other => prop_assert!(false, "a valid body was not a rollback: {:?}", other),
            }
            let hostile = json!({"release_id": mutate_release_id(&valid, &mutation)}).to_string();
            let err = send(&hostile).expect_err("a mutated release id was accepted");
            prop_assert_eq!((err.status, err.code), refusal(&hostile, "invalid_release_id"), "{:?}: {}", mutation, err);
        }

        /// Anything at all as a body: a 4xx or a decoded operation, never a panic or a 5xx.
        #[test]
        fn bodies_that_are_not_objects_are_refused(
            valid in valid_flakeref(),
            shape in 0..5usize,
            path in prop_oneof![Just("/releases"), Just("/rollback"), Just("/reconcile")],
        ) {
            let object = json!({"flakeref": valid, "release_id": "01M8MVDV43Z0F8SNAH9K8ZWQ7N"});
            let body = match shape {
                0 => json!([valid]),
                1 => json!([object]),
                2 => json!([]),
                3 => json!(valid),
                _ => json!(7),
            }
            .to_string();
            let err = decode_request(&request("POST", path, Some(&body), false)).expect_err("not an object, yet accepted");
            prop_assert_eq!((err.status, err.code), (400, "invalid_json"), "{}: {}", body, err);
            prop_assert!(err.message.contains("must be a JSON object"), "{}", err.message);
        }

        #[test]
        fn arbitrary_bodies_get_4xx_or_a_valid_operation(
            body in prop_oneof!["\\PC{0,200}", "[ -~]{0,200}"],
            base64 in any::<bool>(),
            path in prop_oneof![Just("/releases"), Just("/rollback")],
        ) {
            let encoded = if base64 { base64::engine::general_purpose::STANDARD.encode(&body) } else { body.clone() };
            if let Err(e) = decode_request(&request("POST", path, Some(&encoded), base64)) {
                prop_assert!((400..500).contains(&e.status), "{e}");
            }
        }
    }
}
