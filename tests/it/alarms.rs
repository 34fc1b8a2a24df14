//! Rollback alarms against moto's CloudWatch (the SDK's own protocol, RPC v2
//! CBOR): a deploy refused while one is in ALARM, or recorded as ignoring it;
//! an alarm entering ALARM mid-rollout (its EventBridge state-change event,
//! which moto does not emit, injected here as EventBridge would deliver it)
//! stops the rollout and rolls it back.

use crate::support::{gate, sample_event, Stack, GOOD, NEXT};
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use serde_json::json;

/// A metric alarm named `name` (unique to the test), in state OK.
async fn alarm(stack: &Stack, name: &str) {
    stack
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("App")
        .metric_name("5xx")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    set(stack, name, StateValue::Ok).await;
}

async fn set(stack: &Stack, name: &str, state: StateValue) {
    stack.cloudwatch.set_alarm_state().alarm_name(name).state_value(state).state_reason("test").send().await.unwrap();
}

#[tokio::test]
async fn rollback_alarms_refuse_deploys_and_stop_rollouts() {
    let stack = Stack::new(4).await;
    let (web, db) = (format!("{}-web-5xx", stack.tag.value), format!("{}-db", stack.tag.value));
    alarm(&stack, &web).await;
    alarm(&stack, &db).await;
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(50);
    settings.rollout.auto_rollback = true;
    settings.rollout.alarms = vec![web.clone(), db.clone()];
    let controller = stack.controller_with(settings.clone());

    // In ALARM: refused, nothing recorded or sent; ignored on request, and recorded.
    set(&stack, &web, StateValue::Alarm).await;
    let body = json!({"flakeref": GOOD}).to_string();
    let (status, refused) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("alarm_active")), "{refused}");
    assert_eq!(refused["alarms"], json!([web]));
    assert!(refused["message"].as_str().unwrap().contains("ignore_alarms"), "{refused}");
    assert_eq!(stack.item_count().await, 0, "nothing recorded");
    assert!(stack.commands().await.is_empty(), "nothing sent");
    let body = json!({"flakeref": GOOD, "ignore_alarms": true}).to_string();
    let (status, accepted) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["release"]["ignored_alarms"], json!([web]));
    stack.settle(&controller).await;
    let path = format!("/releases/{}", accepted["release"]["id"].as_str().unwrap());
    let (_, good) = stack.http(&controller, "GET", &path, None).await;
    assert_eq!(good["release"]["status"], "succeeded", "the ignored alarm never stopped it: {good}");
    set(&stack, &web, StateValue::Ok).await;

    // The next release: an alarm goes off while its canary runs.
    let next = stack.deploy(&controller, NEXT).await;
    set(&stack, &db, StateValue::Alarm).await;
    let answer =
        flakefleet::entry::handle(&controller, &gate(), sample_event("eventbridge-alarm-state-change.json"), "it")
            .await
            .unwrap();
    assert_eq!(answer["reconcile"]["outcome"], "rolled_back", "{answer}");
    let (_, stopped) =
        stack.http(&controller, "GET", &format!("/releases/{}", next["id"].as_str().unwrap()), None).await;
    assert_eq!(stopped["release"]["status"], "rolled_back");
    assert_eq!(stopped["release"]["status_reason"], format!("rollback alarm {db} is in ALARM"));

    // A name CloudWatch does not know is a configuration error, said as such.
    settings.rollout.alarms = vec![format!("{}-missing", stack.tag.value)];
    let broken = stack.controller_with(settings);
    let (status, body) = stack.http(&broken, "POST", "/releases", Some(&json!({"flakeref": GOOD}).to_string())).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("alarms_unavailable")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("FLAKEFLEET_ROLLBACK_ALARMS"), "{body}");
}

/// A composite alarm among the rollback alarms is read like a metric alarm.
/// CloudWatch returns composite alarms only when DescribeAlarms names them in
/// `AlarmTypes` (the local CloudWatch does the same): without that, every
/// deploy would answer `503 alarms_unavailable`.
#[tokio::test]
async fn a_composite_rollback_alarm_is_read_and_refuses_deploys_while_in_alarm() {
    let stack = Stack::new(2).await;
    let (part, combined) = (format!("{}-part", stack.tag.value), format!("{}-combined", stack.tag.value));
    alarm(&stack, &part).await;
    stack
        .cloudwatch
        .put_composite_alarm()
        .alarm_name(&combined)
        .alarm_rule(format!("ALARM(\"{part}\")"))
        .send()
        .await
        .expect("PutCompositeAlarm");
    set(&stack, &combined, StateValue::Ok).await;
    // The local CloudWatch hides it from a DescribeAlarms that does not ask, as CloudWatch does.
    let plain = stack.cloudwatch.describe_alarms().alarm_names(&combined).send().await.unwrap();
    assert!(plain.composite_alarms().is_empty() && plain.metric_alarms().is_empty(), "{plain:?}");

    let mut settings = stack.settings();
    settings.rollout.alarms = vec![combined.clone()];
    let controller = stack.controller_with(settings);
    set(&stack, &combined, StateValue::Alarm).await;
    let body = json!({"flakeref": GOOD}).to_string();
    let (status, refused) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("alarm_active")), "{refused}");
    assert_eq!(refused["alarms"], json!([combined]));
    set(&stack, &combined, StateValue::Ok).await;
    let (status, accepted) = stack.http(&controller, "POST", "/releases", Some(&body)).await;
    assert_eq!(status, 202, "{accepted}");
}
