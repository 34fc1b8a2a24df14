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

    // The stack's hosts run the document's own script (dev/test.sh makes them
    // fake hosts, one on an old agent). fh fails to apply the bad release
    // everywhere: the canary fails, flakefleet rolls back, and --wait exits 1.
    let fleet = json(&cli(&["--json", "fleet"]));
    let ids: Vec<String> = fleet["fleet"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{fleet}");
    // What fh prints may carry terminal escape sequences; the script passes
    // its last lines on.
    let host = serde_json::json!({"activation_for": {"1.0.1": "errors"},
        "fh_error": "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31mactivation failed"});
    crate::support::fake_hosts(&ids, host);
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

    // Steering: a deploy paused after its canary, resumed, and over once resumed.
    let held = "AcmeCorp/infra/=1.0.2+rev-ccccccc#nixosConfigurations.cli";
    let id = json(&cli(&["--json", "deploy", held]))["release"]["id"].as_str().unwrap().to_owned();
    let out = cli(&["pause", &id]);
    assert!(out.status.success() && stdout(&out).contains("PAUSED:"), "{}", stdout(&out));
    for _ in 0..5 {
        assert!(cli(&["reconcile"]).status.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let fleet = stdout(&cli(&["fleet"]));
    assert!(fleet.contains("PAUSED:") && fleet.contains(&format!("flakefleet resume {id}")), "{fleet}");
    assert_eq!(json(&cli(&["--json", "show", &id]))["release"]["rollout"]["waves"].as_array().unwrap().len(), 1);
    assert!(cli(&["resume", &id]).status.success());
    let mut status = String::new();
    for _ in 0..60 {
        cli(&["reconcile"]);
        status = json(&cli(&["--json", "show", &id]))["release"]["status"].as_str().unwrap().to_owned();
        if status != "in_progress" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(status, "succeeded");
    let out = cli(&["abort", &id, "--rollback"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409 not_steerable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `x-amz-date` (`20261129T192300Z`) as a time.
fn amz_date(text: &str) -> std::time::SystemTime {
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let days = days_from_civil(n(0..4), n(4..6), n(6..8));
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
}

/// The Authorization header SigV4 gives `method url` with these headers at
/// `time`, signed with the given secret: computed here with the aws-sigv4
/// crate, independently of the CLI's code path.
fn expected_authorization(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    time: std::time::SystemTime,
    secret: &str,
    session_token: &str,
) -> String {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let credentials =
        aws_credential_types::Credentials::new("AKIDCLISIGNED", secret, Some(session_token.into()), None, "test");
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-2")
        .name("lambda")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let (headers, _) = instructions.into_parts();
    headers.into_iter().find(|h| h.name() == "authorization").unwrap().value().to_owned()
}

/// The CLI's requests carry a valid SigV4 signature for service `lambda` in
/// the region, with the session token signed in: a local endpoint recomputes
/// it with the aws-sigv4 crate from the request it received. No credential
/// appears in the CLI's output.
#[tokio::test]
async fn the_cli_signs_its_requests_with_sigv4() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let heads: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = heads.clone();
    crate::support::serve_http(listener, move |head| {
        seen.lock().unwrap().push(head.to_owned());
        (200, r#"{"fleet": {"fleet": "prod", "target_tag": {"key": "Name", "value": "x"}, "instances": []}}"#.into())
    });
    let (secret, token) = ("cli-secret-key-9f3a", "cli-session-token-77e1");
    let url = base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_flakefleet"))
            .args(["--url", &url, "--region", "eu-west-2", "fleet"])
            .env("AWS_ACCESS_KEY_ID", "AKIDCLISIGNED")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_SESSION_TOKEN", token)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for output in [stdout(&out), String::from_utf8_lossy(&out.stderr).into_owned()] {
        assert!(!output.contains(secret) && !output.contains(token), "a credential is printed: {output}");
    }

    let head = heads.lock().unwrap()[0].clone();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let authorization = header("authorization");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDCLISIGNED/")
            && authorization.contains("/eu-west-2/lambda/aws4_request"),
        "{authorization}"
    );
    let signed: Vec<&str> =
        authorization.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap().split(';').collect();
    assert!(signed.contains(&"x-amz-security-token") && signed.contains(&"host"), "{signed:?}");
    assert_eq!(header("x-amz-security-token"), token);
    // Recompute from what arrived: the headers the CLI chose to sign (the signer adds host, date and token).
    let chosen: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| {
            signed.contains(&k.as_str()) && !["host", "x-amz-date", "x-amz-security-token"].contains(&k.as_str())
        })
        .cloned()
        .collect();
    let path = request_line.split(' ').nth(1).unwrap();
    let time = amz_date(&header("x-amz-date"));
    let url = format!("{base}{path}");
    assert_eq!(authorization, expected_authorization("GET", &url, &chosen, time, secret, token));
    // The check can fail: another secret, or another path, gives another signature.
    assert_ne!(authorization, expected_authorization("GET", &url, &chosen, time, "another-secret", token));
    assert_ne!(authorization, expected_authorization("GET", &format!("{base}/releases"), &chosen, time, secret, token));
}
