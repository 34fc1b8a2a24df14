//! Rollouts on fake hosts that run the apply document's own script: the SSM
//! simulator executes the text from template.yaml as an agent would (the
//! parameter pasted in; `SSM_<name>` too from agent 3.3.2746.0 on), so the
//! statuses flakefleet judges are the script's own exits.

use crate::support::{agent_version, fake_hosts, get_control, Stack, GOOD, NEXT};
use flakefleet::domain::model::rollout::{Rate, RolloutMode};
use serde_json::json;

/// Three fake hosts whose releases declare a health check that passes, but
/// for NEXT (0.1.42), whose check `next_health` ("fails" or "degrades");
/// the first host on an old agent.
async fn healthy_hosts_but_next(next_health: &str) -> (Stack, Vec<String>) {
    let stack = Stack::new(3).await;
    let ids = stack.instances.clone();
    fake_hosts(&ids, json!({"activation": "works", "health": "passes", "health_for": {"0.1.42": next_health}}));
    agent_version(&ids[1..], "3.3.2746.0");
    (stack, ids)
}

/// Staged waves of `wave` percent, rolled back automatically.
fn staged(stack: &Stack, wave: usize) -> flakefleet::domain::model::fleet::FleetSettings {
    let mut settings = stack.settings();
    settings.rollout.mode = RolloutMode::Staged;
    settings.rollout.wave = Rate::Percent(wave);
    settings.rollout.auto_rollback = true;
    settings
}

/// Reconciles every 100 ms until the fleet rests (each apply runs a real script).
async fn run_out(controller: &flakefleet::AwsFleetController) {
    let event = crate::support::sample_event("eventbridge-scheduled.json");
    for _ in 0..600 {
        let answer = flakefleet::entry::handle(controller, &crate::support::gate(), event.clone(), "it").await.unwrap();
        if matches!(answer["reconcile"]["outcome"].as_str(), Some("idle" | "halted")) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the fleet never came to rest");
}

fn running(id: &str) -> String {
    get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{id}"))["current"].as_str().unwrap().to_owned()
}

/// Old and new agents both apply a release; a host whose activation fails
/// the way fh does it (exit 0, the old system still running) fails the
/// document, its verdict reaches the release, and the automatic rollback puts
/// every host back on the good system.
#[tokio::test]
async fn a_rollout_on_hosts_running_the_real_script_old_and_new_agents() {
    let stack = Stack::new(3).await;
    let mut ids = stack.instances.clone();
    ids.sort();
    // 300 lines of copy progress: more than SSM keeps of a command's output.
    fake_hosts(&ids, json!({"activation": "works", "noise_lines": 300}));
    agent_version(&ids[..1], "3.3.2746.0");
    agent_version(&ids[1..], "3.3.1345.0");
    let controller = stack.controller_with(staged(&stack, 100));

    let good = stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;
    let (_, done) = stack.http(&controller, "GET", &format!("/releases/{}", good["id"].as_str().unwrap()), None).await;
    assert_eq!(done["release"]["status"], "succeeded", "{done}");
    let good_system = running(&ids[0]);
    assert!(ids.iter().all(|id| running(id) == good_system), "every host on the good system, old agents too");

    fake_hosts(&ids[2..], json!({"activation": "fails"}));
    let bad = stack.deploy(&controller, NEXT).await;
    run_out(&controller).await;
    let (_, answer) = stack.http(&controller, "GET", &format!("/releases/{}", bad["id"].as_str().unwrap()), None).await;
    let bad = &answer["release"];
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    let failed = bad["instances"].as_array().unwrap().iter().find(|i| i["instance_id"] == ids[2].as_str()).unwrap();
    let verdict =
        format!("{}{}", failed["stdout_tail"].as_str().unwrap_or(""), failed["stderr_tail"].as_str().unwrap_or(""));
    assert!(verdict.contains("activation did not take"), "the script's own verdict: {failed}");
    assert!(!verdict.contains("dependency-1 "), "fh's copy progress stays in the host's log: {verdict}");
    assert!(ids.iter().all(|id| running(id) == good_system), "rolled back: every host on the good system");
}

/// A release that activates but whose health check fails on the canary: the
/// host switches itself back (its boot entry too), reports Failed with the
/// check's answer, and flakefleet rolls back, a no-op on a host already back.
#[tokio::test]
async fn a_canary_failing_its_health_check_switches_itself_back_and_the_release_rolls_back() {
    let (stack, ids) = healthy_hosts_but_next("fails").await;
    let controller = stack.controller_with(staged(&stack, 50));

    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;
    let good_system = running(&ids[0]);
    let bad = stack.deploy(&controller, NEXT).await;
    run_out(&controller).await;
    let (_, answer) = stack.http(&controller, "GET", &format!("/releases/{}", bad["id"].as_str().unwrap()), None).await;
    let bad = &answer["release"];
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    let canary = bad["rollout"]["waves"][0]["instance_ids"][0].as_str().unwrap();
    let failed = bad["instances"].as_array().unwrap().iter().find(|i| i["instance_id"] == canary).unwrap();
    let verdict = failed["stderr_tail"].as_str().unwrap_or("");
    assert!(
        verdict.contains("health check web failed 2 times; its last answer: HTTP 500")
            && verdict.contains(&format!("switched back to {good_system}")),
        "{failed}"
    );
    let host = get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{canary}"));
    assert_eq!((host["current"].as_str(), host["profile"].as_str()), (Some(&*good_system), Some(&*good_system)));
    assert!(ids.iter().all(|id| running(id) == good_system), "every host on the good system");
}

/// Baking on real scripts: each wave stays healthy for the bake, then its
/// hosts run the document's `check` action (the health checks of the release
/// they run, changing nothing), before the next wave. A release whose check
/// passes at its apply and fails afterwards is stopped at the end of the
/// canary's bake, and rolled back.
#[tokio::test]
async fn a_release_that_degrades_while_its_canary_bakes_is_stopped_by_the_checks_at_its_end() {
    let (stack, _) = healthy_hosts_but_next("degrades").await;
    let mut settings = staged(&stack, 50);
    settings.rollout.bake = std::time::Duration::from_secs(1);
    let controller = stack.controller_with(settings);

    let good = stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;
    let (_, answer) =
        stack.http(&controller, "GET", &format!("/releases/{}", good["id"].as_str().unwrap()), None).await;
    assert_eq!(answer["release"]["status"], "succeeded", "{answer}");
    let checks: Vec<_> = stack
        .commands()
        .await
        .into_iter()
        .filter(|c| c.parameters().is_some_and(|p| p["action"] == ["check".to_owned()]))
        .collect();
    assert_eq!(checks.len(), 2, "one check command per wave: the canary, then the other two");

    let bad = stack.deploy(&controller, NEXT).await;
    run_out(&controller).await;
    let (_, answer) = stack.http(&controller, "GET", &format!("/releases/{}", bad["id"].as_str().unwrap()), None).await;
    let bad = &answer["release"];
    assert_eq!(bad["status"], "rolled_back", "{bad}");
    let reason = bad["status_reason"].as_str().unwrap();
    assert!(reason.contains("the health checks at the end of wave 1's bake failed on 1 of 1 hosts"), "{reason}");
    assert!(!reason.contains("HTTP 500") && reason.contains("(check "), "names the check, not its output: {reason}");
    let failed = &bad["rollout"]["waves"][0]["bake"]["checks"]["failed"];
    assert!(
        failed[0]["stdout_tail"].as_str().unwrap_or_default().contains("HTTP 500")
            || failed[0]["stderr_tail"].as_str().unwrap_or_default().contains("HTTP 500"),
        "the check's own answer: {failed}"
    );
    let canary = bad["rollout"]["waves"][0]["instance_ids"][0].as_str().unwrap();
    assert_eq!(bad["instances"].as_array().unwrap().len(), 1, "its apply, which passed: {bad}");
    assert_eq!(bad["instances"][0]["instance_id"], canary);
}

/// The system a fake host's fh resolves `flakeref` to (dev/ssm_hosts.py's `store_path`).
fn store_path(flakeref: &str) -> String {
    let out = std::process::Command::new("sh").args(["-c", "printf '%s' \"$1\" | sha256sum", "sh", flakeref]).output();
    let hash = String::from_utf8(out.unwrap().stdout).unwrap();
    format!("/nix/store/{}-nixos-system", &hash[..32])
}

/// Sends the document to one host as flakefleet does; answers the command id.
async fn send(stack: &Stack, id: &str, flakeref: &str) -> String {
    let sent = stack
        .ssm
        .send_command()
        .document_name(crate::support::ssm_settings().document)
        .instance_ids(id)
        .parameters("flakeref", vec![flakeref.to_owned()])
        .parameters("action", vec!["switch".to_owned()])
        .comment(format!("flakefleet {} kill test", stack.tag.value))
        .send()
        .await
        .expect("SendCommand");
    sent.command().unwrap().command_id().unwrap().to_owned()
}

/// The invocation's status and details once `done` says so, polled.
async fn invocation_when(stack: &Stack, command: &str, id: &str, done: impl Fn(&str) -> bool) -> (String, String) {
    let started = std::time::Instant::now();
    loop {
        let got = stack.ssm.get_command_invocation().command_id(command).instance_id(id).send().await;
        if let Ok(got) = got {
            let status = got.status().map(|s| s.as_str().to_owned()).unwrap_or_default();
            if done(&status) {
                return (status, got.status_details().unwrap_or_default().to_owned());
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{command} on {id} never got there");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn until_running(id: &str, system: &str) {
    let started = std::time::Instant::now();
    while running(id) != system {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{id} never switched to {system}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The agent kills a running script's process group on a cancel and at the
/// step's timeout (the simulator does the same). The document's apply runs
/// detached, so the switch completes either way, and the invocation reads
/// Cancelled, or TimedOut (Execution Timed Out).
#[tokio::test]
async fn a_cancel_or_a_timeout_kills_the_script_and_never_the_switch() {
    let stack = Stack::new(2).await;
    let mut ids = stack.instances.clone();
    ids.sort();
    fake_hosts(&ids, json!({"activation": "works", "apply_seconds": 4}));
    // Killed 2 s in: the script's own set-up takes milliseconds, so fh is applying by then.
    stack.script(json!({"instance_id": ids[1], "execution_timeout_seconds": 2}));

    let cancelled = send(&stack, &ids[0], GOOD).await;
    // Cancelled once fh is applying (the fake fh notes its calls as it starts).
    let started = std::time::Instant::now();
    while !get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{}", ids[0]))["calls"]
        .as_array()
        .is_some_and(|calls| calls.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with("fh apply"))))
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "fh never started applying");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stack.ssm.cancel_command().command_id(&cancelled).instance_ids(&ids[0]).send().await.expect("CancelCommand");
    let (status, _) = invocation_when(&stack, &cancelled, &ids[0], |s| s != "InProgress" && s != "Cancelling").await;
    assert_eq!(status, "Cancelled");
    until_running(&ids[0], &store_path(GOOD)).await;

    let timed_out = send(&stack, &ids[1], NEXT).await;
    let ended = invocation_when(&stack, &timed_out, &ids[1], |s| !matches!(s, "Pending" | "InProgress")).await;
    assert_eq!(ended, ("TimedOut".to_owned(), "Execution Timed Out".to_owned()));
    let calls = get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{}", ids[1]))["calls"].clone();
    assert!(calls.to_string().contains("fh apply"), "killed while fh applied: {calls}");
    until_running(&ids[1], &store_path(NEXT)).await;
}

/// The hosts' agents upload each apply's whole output to CloudWatch Logs with
/// the instance's own credentials, each call judged by the host's policy
/// (the simulator's dev/ssm_output.py, as the agent calls them). The policy
/// the stack ships lets every call through and the whole output arrives;
/// the one earlier READMEs gave (the group's ARN alone) gets CreateLogGroup
/// and then DescribeLogGroups refused, and nothing arrives, silently.
#[tokio::test]
async fn the_shipped_host_policy_lets_the_agents_upload_the_whole_output() {
    let stack = Stack::new(2).await;
    let mut ids = stack.instances.clone();
    ids.sort();
    let group = crate::support::ssm_settings().output_log_group.unwrap();
    let arn = format!("arn:aws:logs:us-east-1:123456789012:log-group:{group}:*");
    let earlier = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams", "logs:DescribeLogGroups"],
        "Resource": [arn, format!("{arn}:log-stream:*")]}]});
    fake_hosts(&ids[..1], json!({"activation": "works"}));
    fake_hosts(&ids[1..], json!({"activation": "works", "iam_policy": earlier}));
    let controller = stack.controller_with(staged(&stack, 100));
    stack.deploy(&controller, GOOD).await;
    run_out(&controller).await;
    let commands = stack.commands().await;
    let command_to = |id: &str| {
        commands.iter().find(|c| c.instance_ids().iter().any(|i| i == id)).unwrap().command_id().unwrap().to_owned()
    };

    // The calls a host's agent made for its upload: (action, allowed), in order.
    let upload_calls = |id: &str| -> Vec<(String, bool)> {
        let host = get_control("FLAKEFLEET_TEST_SSM_URL", &format!("/_sim/hosts/{id}"));
        let calls = host["uploads"][command_to(id)]["calls"].as_array().cloned().unwrap_or_default();
        calls.iter().map(|c| (c["action"].as_str().unwrap().to_owned(), c["allowed"].as_bool().unwrap())).collect()
    };
    let stream_of = |id: &str| format!("{}/{id}/applyNixos/stdout", command_to(id));

    let calls = upload_calls(&ids[0]);
    assert!(!calls.is_empty() && calls.iter().all(|(_, allowed)| *allowed), "every call allowed: {calls:?}");
    assert_eq!(calls[0].0, "logs:CreateLogGroup", "{calls:?}");
    let stream = stream_of(&ids[0]);
    let events = crate::support::fleet_py(&["log-events", &group, &stream]);
    let count: usize = events.lines().next().unwrap().parse().unwrap();
    let invocation =
        stack.ssm.get_command_invocation().command_id(command_to(&ids[0])).instance_id(&ids[0]).send().await.unwrap();
    let printed = invocation.standard_output_content().unwrap_or_default();
    assert_eq!(count, printed.lines().filter(|l| !l.is_empty()).count(), "every line the script printed: {events}");
    assert!(events.lines().nth(1).unwrap().starts_with("flakefleet: switch of"), "the verdict last: {events}");

    let refused = [("logs:CreateLogGroup".to_owned(), false), ("logs:DescribeLogGroups".to_owned(), false)];
    assert_eq!(upload_calls(&ids[1]), refused);
    assert_eq!(crate::support::fleet_py(&["log-events", &group, &stream_of(&ids[1])]).lines().next(), Some("0"));
    // And the command itself succeeded: nothing flakefleet reads says the log is empty.
    let (_, answer) = stack.http(&controller, "GET", "/fleet", None).await;
    assert!(answer["fleet"]["desired_release"]["status"] == "succeeded", "{answer}");
}
