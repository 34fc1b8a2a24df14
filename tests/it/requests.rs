//! What callers can get wrong, and what two callers at once get.

use crate::support::{gate, sample_event, Stack, GOOD, NEXT};
use base64::Engine;
use serde_json::json;

#[tokio::test]
async fn a_replayed_idempotency_key_returns_the_same_release_and_sends_nothing() {
    let stack = Stack::new(2).await;
    let controller = stack.controller();
    let body = json!({"flakeref": GOOD, "revision": "1111111", "idempotency_key": "run-42-1"}).to_string();
    let (s1, first) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    let (s2, second) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["release"]["id"], second["release"]["id"]);
    assert_eq!(stack.commands().await.len(), 1);

    // Same key, different request: refused, nothing written.
    let other = json!({"flakeref": NEXT, "idempotency_key": "run-42-1"}).to_string();
    let items = stack.item_count().await;
    let (status, err) = stack.http(&controller, "POST", "/releases", Some(&other)).await;
    assert_eq!((status, err["error"].as_str()), (409, Some("idempotency_conflict")), "{err}");
    assert_eq!(stack.item_count().await, items);

    // Still the same answer after the release finished.
    stack.settle(&controller).await;
    let (_, third) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(third["release"]["id"], first["release"]["id"]);
    assert_eq!(third["release"]["status"], "succeeded");
    assert_eq!(stack.commands().await.len(), 1);
}

#[tokio::test]
async fn of_twenty_concurrent_deploys_exactly_one_is_accepted() {
    let stack = Stack::new(2).await;
    let controller = stack.controller();
    let answers = stack.twenty_concurrent_deploys(&controller).await;
    let accepted: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
    let busy: Vec<_> = answers.iter().filter(|(s, _)| *s == 409).collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert_eq!(busy.len(), 19, "{answers:?}");
    let winner = accepted[0].1["release"]["id"].as_str().unwrap();
    assert!(busy.iter().all(|(_, b)| b["error"] == "deploy_in_flight" && b["active_release_id"] == winner));

    let (_, page) = stack.http(&controller, "GET", "/releases", None).await;
    let ids: Vec<&str> = page["releases"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [winner]);
    assert_eq!(stack.commands().await.len(), 1);
}

#[tokio::test]
async fn a_deploy_while_one_is_in_flight_is_refused_with_the_active_release() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    stack.script(json!({"instance_id": stack.instances[0], "outcome": "success", "delay_seconds": 30}));
    let first = stack.deploy(&controller, GOOD).await;
    let (items, sent) = (stack.sort_keys().await, stack.commands().await.len());
    let (status, body) =
        stack.http(&controller, "POST", "/releases", Some(&json!({"flakeref": NEXT}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("deploy_in_flight")), "{body}");
    assert_eq!(body["active_release_id"], first["id"]);
    let (status, body) =
        stack.http(&controller, "POST", "/rollback", Some(&json!({"release_id": first["id"]}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("deploy_in_flight")));
    assert_eq!((stack.sort_keys().await, stack.commands().await.len()), (items, sent), "nothing written or sent");
}

#[tokio::test]
async fn invalid_flakerefs_are_refused_and_change_nothing() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    let long = "a".repeat(10 * 1024);
    let hostile = [
        "AcmeCorp/infra/=0.1.2#web;reboot",
        "AcmeCorp/infra/=0.1.2#web && curl evil",
        "AcmeCorp/infra/=0.1.2#$(id)",
        "AcmeCorp/infra/=0.1.2#`id`",
        "AcmeCorp/infra/=0.1.2#web\nreboot",
        "AcmeCorp/infra/*#web",
        "AcmeCorp/infra/0.1.*#web",
        "/nix/store/5x2f1k9-nixos-system-web-24.05",
        "https://flakehub.com/f/AcmeCorp/infra/=0.1.2#web",
        "",
        "AcmeCorp/infra/=0.1.2#web'quote",
        long.as_str(),
    ];
    for flakeref in hostile {
        let (status, body) =
            stack.http(&controller, "POST", "/releases", Some(&json!({"flakeref": flakeref}).to_string())).await;
        assert_eq!(status, 400, "{flakeref:?}: {body}");
        assert_eq!(body["error"], "invalid_flakeref");
        assert!(body["message"].as_str().unwrap().contains("<org>/<flake>/=") || flakeref.len() > 512, "{body}");
    }
    let answer =
        flakefleet::entry::handle(&controller, &gate(), json!({"action": "deploy", "flakeref": "a/b/c;d"}), "it")
            .await
            .unwrap();
    assert_eq!((answer["status"].as_u64(), answer["error"].as_str()), (Some(400), Some("invalid_flakeref")));
    assert_eq!(stack.item_count().await, 0, "nothing written");
    assert!(stack.commands().await.is_empty(), "nothing sent");
}

#[tokio::test]
async fn routes_methods_and_malformed_bodies() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    let cases: [(&str, &str, Option<&str>, u16, &str); 11] = [
        ("GET", "/nowhere", None, 404, "not_found"),
        ("DELETE", "/releases", None, 405, "method_not_allowed"),
        ("PUT", "/rollback", None, 405, "method_not_allowed"),
        ("GET", "/releases/01JDZZZZZZZZZZZZZZZZZZZZZZ", None, 404, "release_not_found"),
        ("GET", "/releases?limit=0", None, 400, "invalid_query"),
        ("GET", "/releases?limit=101", None, 400, "invalid_query"),
        ("GET", "/releases?limit=ten", None, 400, "invalid_query"),
        ("POST", "/releases", Some("{\"flakeref\": "), 400, "invalid_json"),
        ("POST", "/releases", Some("[]"), 400, "invalid_json"),
        ("POST", "/releases", Some("{\"flakeref\": \"AcmeCorp/infra/=0.1.2#web\", \"extra\": 1}"), 400, "invalid_json"),
        ("POST", "/rollback", Some("{\"release_id\": \"yesterday\"}"), 400, "invalid_release_id"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = stack.http(&controller, method, path, body).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{method} {path}: {answer}");
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(stack.item_count().await, 0, "a refused request writes nothing");
    assert!(stack.commands().await.is_empty(), "a refused request sends nothing");

    // Base64 bodies: decoded when valid, refused when not.
    let mut event = sample_event("function-url-deploy.json");
    event["body"] = base64::engine::general_purpose::STANDARD.encode(json!({"flakeref": GOOD}).to_string()).into();
    event["isBase64Encoded"] = true.into();
    let (status, _) = stack.raw_http(&controller, event.clone()).await;
    assert_eq!(status, 202);
    let (items, sent) = (stack.item_count().await, stack.commands().await.len());
    event["body"] = "not base64!".into();
    let (status, body) = stack.raw_http(&controller, event.clone()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")));
    event["isBase64Encoded"] = false.into();
    event["body"] = json!({"flakeref": "x".repeat(20_000)}).to_string().into();
    let (status, body) = stack.raw_http(&controller, event).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("body_too_large")));
    assert_eq!((stack.item_count().await, stack.commands().await.len()), (items, sent), "nothing written or sent");

    let (status, body) = stack.http(&controller, "GET", "/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = stack.http(&controller, "GET", "/releases?limit=100", None).await;
    assert_eq!(status, 200, "100 is the largest page: {body}");

    // A 405 says which methods the route takes, in the body and in an Allow header.
    for (method, path, allow) in
        [("DELETE", "/releases", "GET, POST"), ("PUT", "/rollback", "POST"), ("POST", "/fleet", "GET")]
    {
        let mut event = sample_event("function-url-deploy.json");
        event["rawPath"] = path.into();
        event["requestContext"]["http"]["method"] = method.into();
        let response = flakefleet::entry::handle(&controller, &gate(), event, "it").await.unwrap();
        assert_eq!(response["statusCode"], 405);
        assert_eq!(response["headers"]["allow"], allow, "{method} {path}");
        let body: serde_json::Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body["allow"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect::<Vec<_>>().join(", "),
            allow
        );
    }
}

/// SSM unreachable when the request sends: 503 command_unconfirmed, the
/// release recorded pending; the next reconcile sends it, once.
#[tokio::test]
async fn an_unreachable_ssm_answers_503_and_the_reconcile_sends_later() {
    let stack = Stack::new(1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nowhere = aws_sdk_ssm::Client::from_conf(
        stack.ssm.config().to_builder().endpoint_url(format!("http://{closed}")).build(),
    );
    let unreachable = flakefleet::domain::usecases::FleetController::new(
        flakefleet::aws::DynamoReleaseStore::new(stack.ddb.clone(), &stack.table),
        flakefleet::aws::Ec2FleetInventory::new(stack.ec2.clone()),
        flakefleet::aws::SsmCommandRunner::new(nowhere, crate::support::ssm_settings()),
        flakefleet::aws::CloudWatchAlarms::new(stack.cloudwatch.clone()),
        stack.settings(),
    );
    let (status, body) =
        stack.http(&unreachable, "POST", "/releases", Some(&json!({"flakeref": GOOD}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("command_unconfirmed")), "{body}");
    assert_eq!(body["release"]["status"], "pending", "{body}");
    assert!(stack.commands().await.is_empty());
    let controller = stack.controller();
    let (_, stored) =
        stack.http(&controller, "GET", &format!("/releases/{}", body["release"]["id"].as_str().unwrap()), None).await;
    assert_eq!(stored["release"]["status"], "pending", "recorded before the send");
    let settled = stack.settle(&controller).await;
    assert_eq!(settled["release"]["id"], body["release"]["id"]);
    assert_eq!(settled["release"]["status"], "succeeded", "{settled}");
    assert_eq!(stack.commands().await.len(), 1);
}

/// A rollback's idempotency key: a retry returns the same rollback and sends nothing more.
#[tokio::test]
async fn a_replayed_rollback_key_returns_the_same_rollback() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    let good = stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;
    let sent = stack.commands().await.len();
    let body = json!({"release_id": good["id"], "idempotency_key": "rollback-run-7-1"}).to_string();
    let (s1, first) = stack.http(&controller, "POST", "/rollback", Some(&body)).await;
    let (s2, second) = stack.http(&controller, "POST", "/rollback", Some(&body)).await;
    assert_eq!((s1, s2), (202, 202), "{first} {second}");
    assert_eq!(first["release"]["id"], second["release"]["id"]);
    assert_eq!(first["release"]["rollback_of"], good["id"]);
    assert_eq!(stack.commands().await.len(), sent + 1, "one rollback command");
    // The same key for another rollback is a conflict.
    let other = json!({"idempotency_key": "rollback-run-7-1"}).to_string();
    let (status, err) = stack.http(&controller, "POST", "/rollback", Some(&other)).await;
    assert_eq!((status, err["error"].as_str()), (409, Some("idempotency_conflict")), "{err}");
}

#[tokio::test]
async fn unknown_events_and_actions_say_what_was_expected() {
    let stack = Stack::new(0).await;
    let controller = stack.controller();
    let err = flakefleet::entry::handle(&controller, &gate(), json!({"Records": []}), "it").await.unwrap_err();
    assert!(matches!(err, flakefleet::entry::HandlerError::UnknownEvent(_)), "{err}");
    assert!(err.to_string().contains("expected a function URL request"), "{err}");
    let err = flakefleet::entry::handle(
        &controller,
        &gate(),
        json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
        "it",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, flakefleet::entry::HandlerError::UnsupportedEvent { .. }), "{err}");
    assert!(err.to_string().contains("unsupported EventBridge event aws.s3/Object Created"), "{err}");
    let answer = flakefleet::entry::handle(&controller, &gate(), json!({"action": "explode"}), "it").await.unwrap();
    assert_eq!((answer["status"].as_u64(), answer["error"].as_str()), (Some(400), Some("unknown_action")));
    assert!(answer["message"].as_str().unwrap().contains("deploy, rollback, status, reconcile, pause, resume, abort"));
    let answer = flakefleet::entry::handle(&controller, &gate(), json!({"action": "pause"}), "it").await.unwrap();
    assert_eq!((answer["status"].as_u64(), answer["error"].as_str()), (Some(400), Some("invalid_json")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("release_id"), "{answer}");
    // The sample abort names a release this fleet never had.
    let answer =
        flakefleet::entry::handle(&controller, &gate(), sample_event("invoke-abort.json"), "it").await.unwrap();
    assert_eq!(
        (answer["status"].as_u64(), answer["error"].as_str()),
        (Some(404), Some("release_not_found")),
        "{answer}"
    );
    assert_eq!(stack.item_count().await, 0, "nothing written");
    assert!(stack.commands().await.is_empty(), "nothing sent");
}

#[tokio::test]
async fn a_failing_store_answers_500_with_an_opaque_message() {
    let stack = Stack::new(1).await;
    let broken = flakefleet::domain::usecases::FleetController::new(
        flakefleet::aws::DynamoReleaseStore::new(stack.ddb.clone(), "no-such-table"),
        flakefleet::aws::Ec2FleetInventory::new(stack.ec2.clone()),
        flakefleet::aws::SsmCommandRunner::new(stack.ssm.clone(), crate::support::ssm_settings()),
        flakefleet::aws::CloudWatchAlarms::new(stack.cloudwatch.clone()),
        stack.settings(),
    );
    let (status, body) = stack.http(&broken, "POST", "/releases", Some(&json!({"flakeref": GOOD}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("internal_error")), "{body}");
    assert!(!body["message"].as_str().unwrap().contains("no-such-table"), "the cause stays in the log: {body}");
    assert!(stack.commands().await.is_empty());
}

#[tokio::test]
async fn a_command_ssm_refuses_fails_the_release_and_frees_the_fleet() {
    let stack = Stack::new(1).await;
    let mut ssm = crate::support::ssm_settings();
    ssm.document = "NoSuchDocument".into();
    let refusing = flakefleet::domain::usecases::FleetController::new(
        flakefleet::aws::DynamoReleaseStore::new(stack.ddb.clone(), &stack.table),
        flakefleet::aws::Ec2FleetInventory::new(stack.ec2.clone()),
        flakefleet::aws::SsmCommandRunner::new(stack.ssm.clone(), ssm),
        flakefleet::aws::CloudWatchAlarms::new(stack.cloudwatch.clone()),
        stack.settings(),
    );
    let (status, body) = stack.http(&refusing, "POST", "/releases", Some(&json!({"flakeref": GOOD}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("command_rejected")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("InvalidDocument"), "{body}");
    assert_eq!(body["release"]["status"], "failed");
    // Recorded, and the fleet is free for the next deploy.
    let controller = stack.controller();
    let (_, page) = stack.http(&controller, "GET", "/releases", None).await;
    assert_eq!(page["releases"][0]["id"], body["release"]["id"]);
    assert_eq!(stack.deploy(&controller, NEXT).await["status"], "in_progress");
}

/// DynamoDB deletes expired items lazily (up to days later), so the store must
/// treat a key past its window as free even while the item is still there.
#[tokio::test]
async fn an_expired_idempotency_key_is_free_again_though_dynamodb_still_holds_it() {
    use flakefleet::domain::model::flakeref::Flakeref;
    use flakefleet::domain::model::ids::IdempotencyKey;
    use flakefleet::domain::model::time::Timestamp;
    use flakefleet::domain::usecases::DeployRequest;
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    let request = || DeployRequest {
        flakeref: Flakeref::parse(GOOD).unwrap(),
        revision: None,
        idempotency_key: Some(IdempotencyKey::parse("run-9-1").unwrap()),
        ignore_alarms: false,
        instance_ids: None,
        origin: Default::default(),
    };
    let now = Timestamp::now();
    let first = controller.deploy(request(), now).await.unwrap();
    stack.settle(&controller).await;
    let ttl = stack.settings().idempotency_ttl;
    let inside = controller.deploy(request(), now.plus(ttl - std::time::Duration::from_secs(1))).await.unwrap();
    assert_eq!(inside.id, first.id);
    assert!(stack.sort_keys().await.iter().any(|k| k.starts_with("IDEMPOTENCY#")), "the key's item is still stored");
    let after = controller.deploy(request(), now.plus(ttl + std::time::Duration::from_secs(1))).await.unwrap();
    assert_ne!(after.id, first.id, "past its window the key starts a new release");
    assert_eq!(stack.commands().await.len(), 2);
}
