//! The operator CLI against the local stack: the real binary, signing its
//! requests, talking to the Lambda under `cargo lambda watch` (started by
//! `make test` with dev/test-lambda.env) over the local AWS.

use crate::support::fleet_instance_ids;
use serde_json::Value;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    let url = std::env::var("FLAKEFLEET_TEST_FUNCTION_URL").expect(
        "FLAKEFLEET_TEST_FUNCTION_URL is not set: run the tests with `make test`, which starts cargo lambda watch",
    );
    cli_at(&url).args(args).output().expect("the flakefleet binary runs")
}

/// The CLI with test credentials, calling `url`.
fn cli_at(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flakefleet"));
    command
        .env("FLAKEFLEET_URL", url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    command
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the CLI says when the URL is wrong, nobody answers, or something
/// other than flakefleet answers: the exit code for each, what to check, and
/// with `--json` one JSON line on stdout.
#[test]
fn wrong_urls_and_foreign_answers_get_their_own_exit_codes_and_say_what_to_check() {
    let out = cli_at("abc123.lambda-url.us-east-1.on.aws").arg("fleet").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("has no scheme") && stderr(&out).contains("https://"), "{}", stderr(&out));

    // Nothing listens there (a port just freed): unreachable, exit 4.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = cli_at(&format!("http://127.0.0.1:{port}")).args(["--json", "fleet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let error = json(&out);
    assert_eq!(error["error"], "unreachable", "{error}");
    assert!(error["message"].as_str().unwrap().contains("did not answer"), "{error}");

    // The local AWS's S3 answers this URL with its own XML 404: shown, with what to check.
    let moto = crate::support::endpoint("FLAKEFLEET_TEST_MOTO_URL");
    let out = cli_at(&moto).arg("fleet").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.starts_with("flakefleet: 404 http_404: not flakefleet's answer"), "{said}");
    assert!(said.contains("Not Found") && said.contains("FunctionUrl output"), "{said}");
    let out = cli_at(&moto).args(["--json", "releases"]).output().unwrap();
    assert_eq!((out.status.code(), json(&out)["status"].as_u64()), (Some(3), Some(404)));
    assert!(stderr(&out).is_empty(), "with --json the error is on stdout: {}", stderr(&out));
}

/// A 2xx that is not the API's (a function of another version, a stand-in)
/// is refused by the CLI, which reads the typed contract: exit 3,
/// `unexpected_answer`, naming the field, and nothing printed as if it were.
#[tokio::test]
async fn an_answer_that_is_not_the_apis_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    crate::support::serve_http(listener, |_| (200, r#"{"fleet": {"fleet": "prod", "instances": []}}"#.into()));
    let out =
        tokio::task::spawn_blocking(move || cli_at(&base).args(["--json", "fleet"]).output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let error = json(&out);
    assert_eq!(error["error"], "unexpected_answer", "{error}");
    assert!(error["message"].as_str().unwrap().contains("target_tag"), "{error}");
}

/// A reader that stops early (`| head -c 10`) ends the CLI quietly, with
/// the command's own exit code.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    for args in [&["--json", "releases", "--limit", "100"][..], &["releases"], &["completions", "bash"]] {
        let mut child = cli_at(&std::env::var("FLAKEFLEET_TEST_FUNCTION_URL").unwrap())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
    }
}

/// A local endpoint that answers every request with a fleet and records each
/// request's head: its base URL and the heads so far.
async fn recording_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let heads: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = heads.clone();
    crate::support::serve_http(listener, move |head| {
        seen.lock().unwrap().push(head.to_owned());
        // A whole FleetBody: the CLI refuses an answer that is not the API's.
        let fleet = r#"{"fleet": {"fleet": "prod", "target_tag": {"key": "Name", "value": "x"}, "instances": [],
            "desired_release": null, "last_good_release_id": null, "lease": null, "rollout": null, "halted": null,
            "unreachable": []}}"#;
        (200, fleet.into())
    });
    (base, heads)
}

/// `credential_process` profiles (aws-vault, granted) sign the CLI's
/// requests: a local endpoint sees the process's access key in the
/// signature, for `--profile` and for AWS_PROFILE alike; the region comes from the profile.
#[tokio::test]
async fn a_credential_process_profile_signs_the_requests() {
    let dir = std::env::temp_dir().join(format!("flakefleet-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let process = dir.join("credentials.sh");
    std::fs::write(
        &process,
        "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIDFROMPROCESS\", \
         \"SecretAccessKey\": \"process-secret\", \"SessionToken\": \"process-token\"}'\n",
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&process).status().unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!("[profile ops]\ncredential_process = {}\nregion = eu-north-1\n", process.display()),
    )
    .unwrap();

    let (base, heads) = recording_endpoint().await;
    for how in ["--profile", "AWS_PROFILE"] {
        let (base, config) = (base.clone(), config.clone());
        let out = tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_flakefleet"));
            command
                .args(["--url", &base, "fleet"])
                .env("AWS_CONFIG_FILE", &config)
                .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_REGION")
                .env_remove("AWS_DEFAULT_REGION");
            match how {
                "--profile" => command.args(["--profile", "ops"]).env_remove("AWS_PROFILE"),
                _ => command.env("AWS_PROFILE", "ops"),
            };
            command.output().unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{how}: {}", stderr(&out));
        let head = heads.lock().unwrap().pop().unwrap();
        assert!(head.contains("Credential=AKIDFROMPROCESS/") && head.contains("/eu-north-1/lambda/"), "{how}: {head}");
        assert!(head.contains("x-amz-security-token: process-token"), "{how}: {head}");
    }
    // Without the profile there are no credentials: exit 2, and what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_flakefleet"))
        .args(["--url", &base, "--region", "eu-north-1", "fleet"])
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no AWS credentials") && stderr(&out).contains("--profile"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_need_no_url() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_flakefleet"))
            .args(["completions", shell])
            .env_remove("FLAKEFLEET_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("watch") && script.contains("timeout"), "{shell}: {script}");
    }
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

    // A refused request: a clear message and exit 3; with --json, the API's error.
    let out = cli(&["deploy", "not a flakeref"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("400 invalid_flakeref"), "{}", stderr(&out));
    let out = cli(&["--json", "deploy", "not a flakeref"]);
    assert_eq!((out.status.code(), json(&out)["error"].as_str()), (Some(3), Some("invalid_flakeref")));

    // The stack's hosts run the document's own script (dev/test.sh makes them
    // fake hosts, one on an old agent). fh fails to apply the bad release
    // everywhere: the canary fails, flakefleet rolls back, and --wait exits 1.
    let fleet = json(&cli(&["--json", "fleet"]));
    let ids = fleet_instance_ids(&fleet);
    assert_eq!(ids.len(), 3, "{fleet}");
    // What fh prints may carry terminal escape sequences; the script passes
    // its last lines on.
    let host = serde_json::json!({"activation_for": {"1.0.1": "errors"},
        "fh_error": "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31mactivation failed"});
    crate::support::fake_hosts(&ids, host);
    let out = cli(&["--json", "deploy", bad, "--wait", "--drive", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // A progress line per change, then the release.
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines[..lines.len() - 1].iter().all(|l| l["progress"].is_object()), "{lines:?}");
    let last = lines.last().unwrap();
    assert_eq!(last["release"]["status"], "rolled_back");
    // It names the automatic rollback that replaced it.
    assert!(last["release"]["rolled_back_by"].is_string(), "{last}");

    // What the host printed is shown, without what a terminal would act on.
    let bad_id = last["release"]["id"].as_str().unwrap().to_owned();
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
    // Anyone can follow it; a wait that runs out says so (exit 5), and the release goes on.
    let out = cli(&["watch", &id, "--timeout", "2s", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("`flakefleet watch {id}`")), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("wave 1 (paused): 1/3 succeeded, 0 failed, 2 pending"), "{said}");
    // A deploy meanwhile is refused, and told how to follow the one in flight.
    let out = cli(&["deploy", "AcmeCorp/infra/=1.0.3+rev-ddddddd#nixosConfigurations.cli"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains(&format!("flakefleet watch {id}")), "{}", stderr(&out));
    assert!(cli(&["resume", &id]).status.success());
    // Followed to its end, one JSON line per change, then the release.
    let out = cli(&["--json", "watch", &id, "--drive", "--interval", "1", "--timeout", "2m"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (last, progress) = lines.split_last().unwrap();
    assert_eq!(last["release"]["status"], "succeeded", "{last}");
    assert!(progress.len() >= 2 && progress.iter().all(|p| p["progress"]["release_id"] == id.as_str()), "{progress:?}");
    let done = &progress.last().unwrap()["progress"];
    assert_eq!(
        (done["succeeded"].as_u64(), done["total"].as_u64(), done["pending"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    let out = cli(&["abort", &id, "--rollback"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("409 not_steerable"), "{}", stderr(&out));
    // What `show` tells: the fleet, who asked, each wave's SSM command ids.
    let shown = stdout(&cli(&["show", &id]));
    assert!(shown.contains("fleet:        ") && shown.contains("requested_by: "), "{shown}");
    let waves = json(&cli(&["--json", "show", &id]))["release"]["rollout"]["waves"].clone();
    for (n, wave) in waves.as_array().unwrap().iter().enumerate() {
        let ids: Vec<&str> = wave["command_ids"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert!(shown.contains(&format!("wave {}:       commands {}", n + 1, ids.join(" "))), "{shown}");
    }
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
    let (base, heads) = recording_endpoint().await;
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
