//! The exactly-once issue's cases as scenarios against the local AWS, each
//! named after what it proves and each failing before its fix: 1 (a host
//! terminated mid-wave), 2 (a deploy after a deadline), 3 (takeovers at once,
//! in three Lambda processes), 4 (a claim read in the claimer's millisecond;
//! and six Lambda processes reconciling at once), 6 (rollbacks that wait and
//! cancel) and 7 (bodies that are not objects). Case 5, a SendCommand whose
//! answer was lost, is `once::a_lost_send_answer_never_becomes_a_second_command`.

use crate::lambdas::{answer, request, scheduled, Lambdas};
use crate::support::{gate, sample_event, Stack, GOOD, NEXT};
use aws_sdk_ssm::types::Command;
use flakefleet::domain::model::fleet::FleetSettings;
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use flakefleet::AwsFleetController;
use serde_json::{json, Value};
use std::time::Duration;

/// A canary of one, then the rest in one wave; rolled back on any failure.
/// Waits until `margin` after `at`, a time a release recorded (RFC 3339): a
/// wait on the recorded clock the system itself judges by, never a guess.
async fn until_after(at: &Value, margin: Duration) {
    let at = humantime::parse_rfc3339(at.as_str().expect("a recorded time")).unwrap() + margin;
    if let Ok(left) = at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

fn staged(stack: &Stack) -> FleetSettings {
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(100);
    settings.rollout.failure_threshold = Rate::Count(0);
    settings.rollout.auto_rollback = true;
    settings
}

/// Reconciles every 200 ms until the fleet rests; answers the outcomes seen.
pub(crate) async fn run_out(controller: &AwsFleetController) -> Vec<String> {
    let event = sample_event("eventbridge-scheduled.json");
    let mut outcomes = Vec::new();
    for _ in 0..300 {
        let answer = flakefleet::entry::handle(controller, &gate(), event.clone(), "it").await;
        let outcome = match answer {
            Ok(answer) => answer["reconcile"]["outcome"].as_str().unwrap_or("?").to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let rest = matches!(outcome.as_str(), "idle" | "halted");
        outcomes.push(outcome);
        if rest {
            return outcomes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the fleet never came to rest: {outcomes:?}");
}

pub(crate) async fn release(stack: &Stack, controller: &AwsFleetController, id: &Value) -> Value {
    stack.http(controller, "GET", &format!("/releases/{}", id.as_str().unwrap()), None).await.1["release"].clone()
}

fn flakeref(command: &Command) -> String {
    command.parameters().and_then(|p| p.get("flakeref")).and_then(|v| v.first()).cloned().unwrap_or_default()
}

fn requested_secs(command: &Command) -> f64 {
    command.requested_date_time().map(|t| t.as_secs_f64()).unwrap_or_default()
}

/// Case 6: in the bad release's last wave one host fails fast, one is still
/// applying, one has not started. The rollback is sent only once the running
/// apply ended, the one not started is cancelled, and the rollback reaches
/// every host the bad release was sent to.
#[tokio::test]
async fn a_rollback_waits_for_bad_applies_still_running_and_cancels_those_not_started() {
    let stack = Stack::new(4).await;
    let controller = stack.controller_with(staged(&stack));
    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;

    let mut ids = stack.instances.clone();
    ids.sort();
    let (fails, applying, waiting) = (&ids[1], &ids[2], &ids[3]);
    stack.script(json!({"instance_id": fails, "flakeref_contains": "0.1.42", "outcome": "failed", "delay_seconds": 1}));
    stack.script(json!({"instance_id": applying, "flakeref_contains": "0.1.42", "delay_seconds": 5}));
    stack.script(json!({"instance_id": waiting, "flakeref_contains": "0.1.42",
        "start_delay_seconds": 60, "delay_seconds": 70}));
    let bad = stack.deploy(&controller, NEXT).await;
    let outcomes = run_out(&controller).await;

    let bad = release(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{outcomes:?} {bad}");
    assert_eq!(bad["stopping"]["cancelled"], json!([waiting]), "{bad}");
    assert!(bad["stopping"].get("unsettled").is_none(), "{bad}");

    let commands = stack.commands().await;
    let wave = commands.iter().find(|c| flakeref(c) == NEXT && c.instance_ids().contains(applying)).unwrap();
    let rollback = commands
        .iter()
        .filter(|c| flakeref(c) == GOOD)
        .max_by(|a, b| requested_secs(a).total_cmp(&requested_secs(b)))
        .unwrap();
    assert!(
        requested_secs(rollback) >= requested_secs(wave) + 5.0,
        "the rollback went out {:.1} s after the wave, before the running apply ended",
        requested_secs(rollback) - requested_secs(wave)
    );
    let mut reached: Vec<String> = rollback.instance_ids().to_vec();
    reached.sort();
    assert_eq!(reached, ids, "every host the bad release was sent to");

    let cancelled = stack
        .ssm
        .get_command_invocation()
        .command_id(wave.command_id().unwrap())
        .instance_id(waiting)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status().map(|s| s.as_str()), Some("Cancelled"));
}

/// Case 1: a host of the bad release's wave is terminated while its apply
/// runs. Nothing is stranded: the release waits for that apply only up to
/// the settle limit, the rollback passes the dead host over and reaches the
/// others, no reconcile answers an error, and the fleet is free again.
#[tokio::test]
async fn a_host_terminated_mid_wave_never_strands_the_fleet() {
    let stack = Stack::new(3).await;
    let mut settings = staged(&stack);
    settings.settle_limit = Duration::from_secs(3);
    let controller = stack.controller_with(settings);
    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;

    let mut ids = stack.instances.clone();
    ids.sort();
    let (fails, dies) = (&ids[1], &ids[2]);
    stack.script(json!({"instance_id": fails, "flakeref_contains": "0.1.42", "outcome": "failed", "delay_seconds": 1}));
    stack.script(json!({"instance_id": dies, "flakeref_contains": "0.1.42", "delay_seconds": 600}));
    let bad = stack.deploy(&controller, NEXT).await;
    let event = sample_event("eventbridge-scheduled.json");
    flakefleet::entry::handle(&controller, &gate(), event, "it").await.unwrap(); // the wave goes out
    stack.ec2.terminate_instances().instance_ids(dies).send().await.unwrap();
    let outcomes = run_out(&controller).await;
    assert!(outcomes.iter().all(|o| !o.starts_with("error")), "{outcomes:?}");

    let bad = release(&stack, &controller, &bad["id"]).await;
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    assert_eq!(bad["stopping"]["unsettled"], json!([dies]), "{bad}");
    let fleet = stack.http(&controller, "GET", "/fleet", None).await.1["fleet"].clone();
    assert!(fleet["lease"].is_null(), "{fleet}");
    let rollback = release(&stack, &controller, &fleet["desired_release"]["id"]).await;
    assert_eq!(rollback["status"], "succeeded", "{rollback}");
    assert_eq!(rollback["rollout"]["waves"][0]["instance_ids"], json!([ids[0], fails]), "{rollback}");
    assert_eq!(rollback["unreachable"][0]["instance_id"], json!(dies), "{rollback}");
}

/// Commands for `instance` with this flakeref.
async fn commands_to(stack: &Stack, instance: &str, flakeref: &str) -> usize {
    stack
        .commands()
        .await
        .iter()
        .filter(|c| self::flakeref(c) == flakeref && c.instance_ids().iter().any(|i| i == instance))
        .count()
}

/// Case 3: the canary's send failed and left the release pending. After the
/// takeover window a reconcile, an SSM event and the client's retry arrive
/// together, each in its own Lambda. One claim is written first; only its
/// writer sends, so the canary gets one command.
#[tokio::test]
async fn three_lambdas_taking_over_a_stalled_send_at_once_send_it_once() {
    let stack = Stack::new(3).await;
    let lambdas = Lambdas::start(&stack, 3, &[("FLAKEFLEET_TAKEOVER_SECONDS", "1")]).await;
    let mut ids = stack.instances.clone();
    ids.sort();
    let fault = json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1, "instance_id": ids[0]});
    assert!(crate::support::post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault).starts_with("HTTP/1.1 200"));
    let deploy = request("POST", "/releases", Some(json!({"flakeref": GOOD, "idempotency_key": "ci-run-3"})));
    let (status, body) = answer(&lambdas.invoke(0, deploy.clone()).await);
    assert_eq!((status, body["error"].as_str()), (503, Some("command_unconfirmed")), "{body}");
    assert_eq!(commands_to(&stack, &ids[0], GOOD).await, 0);

    // Past the takeover window (1 s) after the claim, which admission made as it recorded the release.
    until_after(&body["release"]["created_at"], Duration::from_millis(1200)).await;
    let answers = lambdas.at_once(vec![scheduled(), sample_event("eventbridge-ssm-status.json"), deploy]).await;
    assert_eq!(commands_to(&stack, &ids[0], GOOD).await, 1, "{answers:?}\nlog: {}", lambdas.log.display());
}

/// Case 4: six reconciles at once, each in its own Lambda, once the canary
/// passed. Each claims the next wave with its own token; one write wins and
/// only its writer sends: every instance gets one command.
#[tokio::test]
async fn six_lambdas_reconciling_at_once_send_each_wave_once() {
    let stack = Stack::new(4).await;
    let lambdas = Lambdas::start(&stack, 6, &[]).await;
    let (status, body) =
        answer(&lambdas.invoke(0, request("POST", "/releases", Some(json!({"flakeref": GOOD})))).await);
    assert_eq!(status, 202, "{body}");
    for _ in 0..3 {
        lambdas.at_once(vec![scheduled(); 6]).await;
    }
    for id in &stack.instances {
        assert_eq!(commands_to(&stack, id, GOOD).await, 1, "{id}; log: {}", lambdas.log.display());
    }
}

/// Case 2: a release whose canary passed only after its deadline still holds
/// the fleet. A deploy arriving then, alongside two reconciles, each in its
/// own Lambda, is refused while the late release is settled (rolled back at
/// its deadline, no wave after it); it never runs alongside.
#[tokio::test]
async fn a_deploy_after_a_deadline_never_runs_alongside_the_late_release() {
    let stack = Stack::new(3).await;
    let env = [("FLAKEFLEET_DEPLOY_TIMEOUT_SECONDS", "5"), ("FLAKEFLEET_SETTLE_SECONDS", "2")];
    let lambdas = Lambdas::start(&stack, 3, &env).await;
    let deploy = |flakeref: &str| request("POST", "/releases", Some(json!({ "flakeref": flakeref })));
    assert_eq!(answer(&lambdas.invoke(0, deploy(GOOD)).await).0, 202);
    for _ in 0..20 {
        let fleet = answer(&lambdas.invoke(0, request("GET", "/fleet", None)).await).1;
        if fleet["fleet"]["lease"].is_null() {
            break;
        }
        lambdas.invoke(0, scheduled()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ids = stack.instances.clone();
    ids.sort();
    stack.script(json!({"instance_id": ids[0], "flakeref_contains": "0.1.42", "delay_seconds": 6}));
    let (status, late) = answer(&lambdas.invoke(0, deploy(NEXT)).await);
    assert_eq!(status, 202, "{late}");

    // The canary's apply ends (after 6 s), past the release's deadline (5 s).
    let started = std::time::Instant::now();
    while !stack
        .commands()
        .await
        .iter()
        .any(|c| flakeref(c) == NEXT && c.status() == Some(&aws_sdk_ssm::types::CommandStatus::Success))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the late canary never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_after(&late["release"]["deadline"], Duration::ZERO).await;
    let third = "AcmeCorp/infra/=0.1.43+rev-3333333#nixosConfigurations.web";
    let answers = lambdas.at_once(vec![scheduled(), deploy(third), scheduled()]).await;
    let (status, refused) = answer(&answers[1]);
    assert_eq!((status, refused["error"].as_str()), (409, Some("deploy_in_flight")), "{refused}");

    let release = answer(
        &lambdas
            .invoke(0, request("GET", &format!("/releases/{}", late["release"]["id"].as_str().unwrap()), None))
            .await,
    )
    .1;
    let release = &release["release"];
    assert_eq!(release["status"], "rolled_back", "{release}");
    assert!(release["status_reason"].as_str().unwrap().contains("deadline"), "{release}");
    let sent: Vec<String> =
        stack.commands().await.iter().filter(|c| flakeref(c) == NEXT).flat_map(|c| c.instance_ids().to_vec()).collect();
    assert_eq!(sent, [ids[0].clone()], "the canary only: no wave after the deadline");
    assert_eq!(stack.commands().await.iter().filter(|c| flakeref(c) == third).count(), 0);
}

/// Case 4, to the millisecond: the reconcile that claimed wave 2 sent it,
/// but the answer was lost. Another reconcile reads that claim with the same
/// clock reading. A claim is won by its token, never by its time, so the
/// second one never sends in the claimer's place unchecked: it takes the
/// claim over first and adopts the command it finds. One command each.
#[tokio::test]
async fn a_reconcile_in_the_claimers_millisecond_never_sends_its_wave_again() {
    let stack = Stack::new(3).await;
    let controller = stack.controller_with(staged(&stack));
    stack.deploy(&controller, GOOD).await;
    let mut ids = stack.instances.clone();
    ids.sort();
    let fault = json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1,
        "instance_id": ids[1], "took_effect": true});
    assert!(crate::support::post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault).starts_with("HTTP/1.1 200"));
    let now = flakefleet::domain::model::time::Timestamp::now();
    assert!(controller.reconcile(now).await.is_err(), "the claimer's answer is lost");
    controller.reconcile(now).await.unwrap();
    run_out(&controller).await;
    for id in &stack.instances {
        assert_eq!(commands_to(&stack, id, GOOD).await, 1, "{id}");
    }
}

/// The stack is updated mid-rollout: the document gets a new version under
/// the same name (UpdateMethod NewVersion) and the function's next process
/// sends that version. The wave whose answer was lost under the old version
/// is found by its comment across versions and adopted, never sent again;
/// the waves after it name the new version.
#[tokio::test]
async fn a_document_update_mid_rollout_never_applies_a_wave_twice() {
    use crate::support::{template, DOCUMENT};
    let stack = Stack::new(3).await;
    let document = &template()["Resources"]["ApplyNixosDocument"]["Properties"];
    let first = document["VersionName"].as_str().unwrap().to_owned();
    // Waves of one: the canary, the wave whose answer is lost, one more.
    let mut settings = staged(&stack);
    settings.rollout.wave = Rate::Count(1);
    let before = stack.controller_sending_version(settings.clone(), &first);
    stack.deploy(&before, GOOD).await;
    let mut ids = stack.instances.clone();
    ids.sort();
    // The stack update: the same script, a new description, a new version
    // (the default from now on). The running process still sends its own.
    let mut content = serde_json::to_value(&document["Content"]).unwrap();
    content["description"] = json!("Apply an exact FlakeHub release (updated mid-rollout).");
    let second = format!("it-{}", fastrand::u32(..));
    stack
        .ssm
        .update_document()
        .name(DOCUMENT)
        .content(content.to_string())
        .document_version("$LATEST")
        .version_name(&second)
        .send()
        .await
        .expect("UpdateDocument");
    let fault = json!({"operation": "SendCommand", "error": "InternalServerError", "count": 1,
        "instance_id": ids[1], "took_effect": true});
    assert!(crate::support::post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/faults", &fault).starts_with("HTTP/1.1 200"));
    let now = flakefleet::domain::model::time::Timestamp::now();
    assert!(before.reconcile(now).await.is_err(), "wave 2's answer is lost");
    // The function's next process, configured by the update, takes over.
    let after = stack.controller_sending_version(settings, &second);
    after.reconcile(now).await.unwrap();
    run_out(&after).await;
    for id in &stack.instances {
        assert_eq!(commands_to(&stack, id, GOOD).await, 1, "{id}");
    }
    let version_of = |name: &str| {
        let stack = &stack;
        let name = name.to_owned();
        async move {
            let described = stack.ssm.describe_document().name(DOCUMENT).version_name(name).send().await.unwrap();
            described.document().unwrap().document_version().unwrap().to_owned()
        }
    };
    let (old, new) = (version_of(&first).await, version_of(&second).await);
    assert_ne!(old, new);
    let mut sent: Vec<(String, String)> = Vec::new();
    for command in stack.commands().await {
        let to = command.instance_ids().first().cloned().unwrap_or_default();
        sent.push((to, command.document_version().unwrap_or_default().to_owned()));
    }
    sent.sort();
    assert_eq!(
        sent,
        [(ids[0].clone(), old.clone()), (ids[1].clone(), old), (ids[2].clone(), new)],
        "the canary and the adopted wave under the old version, the last wave under the new"
    );
}

/// Case 7: a body that is JSON but not an object (an array, a string, a
/// number) is a 400 on every route, and starts nothing: `[]` to `POST
/// /rollback` once started a real rollback.
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_and_starts_nothing() {
    let stack = Stack::new(1).await;
    let controller = stack.controller();
    stack.deploy(&controller, GOOD).await;
    stack.settle(&controller).await;
    stack.deploy(&controller, NEXT).await;
    stack.settle(&controller).await;
    let (items, sent) = (stack.item_count().await, stack.commands().await.len());
    for path in ["/releases", "/rollback", "/reconcile"] {
        for body in ["[]", r#"["AcmeCorp/infra/=0.1.41+rev-1111111#nixosConfigurations.web"]"#, "\"x\"", "5", "null"] {
            let (status, answer) = stack.http(&controller, "POST", path, Some(body)).await;
            assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_json")), "{path} {body}: {answer}");
            assert!(answer["message"].as_str().unwrap().contains("object"), "{answer}");
        }
    }
    assert_eq!((stack.item_count().await, stack.commands().await.len()), (items, sent), "nothing written or sent");
}
