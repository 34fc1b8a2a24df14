//! The operator CLI against the local stack: the real binary, signing its
//! requests, talking to the Lambda under `cargo lambda watch` (started by
//! `make test` with dev/test-lambda.env) over the local AWS.

use serde_json::Value;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    let url = std::env::var("FLAKEFLEET_TEST_FUNCTION_URL").expect(
        "FLAKEFLEET_TEST_FUNCTION_URL is not set: run the tests with `make test`, which starts cargo lambda watch",
    );
    Command::new(env!("CARGO_BIN_EXE_flakefleet"))
        .args(args)
        .env("FLAKEFLEET_URL", url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the flakefleet binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn plain_http_urls_are_refused_before_anything_is_signed() {
    let out = Command::new(env!("CARGO_BIN_EXE_flakefleet"))
        .args(["--url", "http://abc123.lambda-url.us-east-1.on.aws", "fleet"])
        .env("AWS_ACCESS_KEY_ID", "AKIDCLITEST")
        .env("AWS_SECRET_ACCESS_KEY", "cli-secret-never-printed")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not https"), "{stderr}");
    assert!(!stderr.contains("cli-secret-never-printed") && !stdout(&out).contains("AKIDCLITEST"));
}

/// One story, in order, since the CLI's stack has one fleet.
#[test]
fn deploy_wait_fail_roll_back_and_inspect_with_the_cli() {
    let good = "AcmeCorp/infra/=1.0.0+rev-aaaaaaa#nixosConfigurations.cli";
    let bad = "AcmeCorp/infra/=1.0.1+rev-bbbbbbb#nixosConfigurations.cli";

    let out = cli(&["deploy", good, "--revision", "aaaaaaa", "--wait", "--drive", "--interval", "1"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("status:       succeeded"), "{}", stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wave"), "progress is shown while waiting");

    // A refused request: a clear message and exit 2.
    let out = cli(&["deploy", "not a flakeref"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("400 invalid_flakeref"));

    // The SSM simulator fails the bad release everywhere: the canary fails,
    // flakefleet rolls back, and --wait exits 1.
    let fleet = json(&cli(&["--json", "fleet"]));
    for instance in fleet["fleet"]["instances"].as_array().unwrap() {
        // A host's output may carry terminal escape sequences.
        let rule = serde_json::json!({"instance_id": instance["instance_id"], "flakeref_contains": "1.0.1", "outcome": "failed",
            "stderr": "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31mactivation failed"});
        crate::support::script_simulator(rule);
    }
    let out = cli(&["--json", "deploy", bad, "--wait", "--drive", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(json(&out)["release"]["status"], "rolled_back");

    // What the host printed is shown, without what a terminal would act on.
    let bad_id = json(&out)["release"]["id"].as_str().unwrap().to_owned();
    for args in [vec!["show", bad_id.as_str()], vec!["--json", "show", bad_id.as_str()]] {
        let shown = stdout(&cli(&args));
        assert!(shown.contains("activation failed"), "{shown}");
        assert!(!shown.contains('\u{1b}') && !shown.contains('\u{9b}') && !shown.contains('\u{7}'), "{shown:?}");
        assert!(!shown.contains("\\u001b"), "not even JSON-escaped: {shown}");
    }

    let releases = json(&cli(&["--json", "releases", "--limit", "5"]));
    let kinds: Vec<&str> =
        releases["releases"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[..3], ["rollback", "deploy", "deploy"]);
    let table = stdout(&cli(&["releases"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("rolled_back"));

    // The automatic rollback's wave is judged by the next reconcile.
    let out = cli(&["reconcile"]);
    assert!(out.status.success() && stdout(&out).starts_with("reconcile: finished"), "{}", stdout(&out));
    let rollback_id = releases["releases"][0]["id"].as_str().unwrap().to_owned();
    let shown = stdout(&cli(&["show", &rollback_id]));
    assert!(shown.contains("kind:         rollback") && shown.contains("status:       succeeded"), "{shown}");
    assert!(shown.contains("INSTANCE"), "{shown}");
    let out = cli(&["rollback", &rollback_id, "--wait", "--drive", "--interval", "1"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&cli(&["fleet"])).contains("halted:       no"));
}
