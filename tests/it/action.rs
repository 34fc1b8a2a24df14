//! The GitHub Action (.github/actions/deploy), its one step run with bash as
//! a runner runs it: the step's `env:` read from action.yml with the inputs
//! put in (defaults from action.yml), `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`,
//! `GITHUB_ACTION_PATH` and the OIDC request variables set as GitHub
//! documents them. Against the Lambda under `cargo lambda watch` on the local
//! AWS (dev/test.sh starts it twice on one fleet of three fake hosts: without
//! auth, and in github-oidc mode trusting the issuer served here), while the
//! test reconciles as the schedule would.

use crate::support::{assert_valid, endpoint, fake_hosts, fleet_instance_ids, serve_http};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const GOOD: &str = "AcmeCorp/infra/=2.0.0+rev-aaaaaaa#nixosConfigurations.action";
const BAD: &str = "AcmeCorp/infra/=2.0.1+rev-bbbbbbb#nixosConfigurations.action";
const NEXT: &str = "AcmeCorp/infra/=2.0.2+rev-ccccccc#nixosConfigurations.action";
const SECRET_KEY: &str = "action-secret-key-0d9e";
const RUNNER_TOKEN: &str = "action-runner-token-51b2";
/// The issuer dev/test-action-oidc-lambda.env trusts.
const ISSUER: &str = "127.0.0.1:9160";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of the step left: its exit code, its log, its outputs and its summary.
struct Step {
    code: Option<i32>,
    log: String,
    outputs: BTreeMap<String, String>,
    summary: String,
}

/// The step's environment as action.yml declares it, with `inputs` (the
/// rest from their defaults) and the pushed commit's message.
fn step_env(inputs: &[(&str, &str)], commit_message: &str) -> Vec<(String, String)> {
    let action: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join(".github/actions/deploy/action.yml")).unwrap())
            .unwrap();
    let step = &action["runs"]["steps"][0];
    assert_eq!(step["run"].as_str(), Some(r#""$GITHUB_ACTION_PATH/run.sh""#), "a thin step");
    let input = |name: &str| -> String {
        inputs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()).unwrap_or_else(|| {
            let spec = &action["inputs"][name];
            assert!(!spec.is_null(), "no input {name} in action.yml");
            spec["default"].as_str().unwrap_or_default().to_owned()
        })
    };
    for (name, _) in inputs {
        assert!(!action["inputs"][*name].is_null(), "the test gives {name}, which action.yml lacks");
    }
    step["env"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let expression = v.as_str().unwrap().trim();
            let inner = expression.strip_prefix("${{").and_then(|e| e.strip_suffix("}}")).unwrap().trim();
            let value = match inner.strip_prefix("inputs.") {
                Some(name) => input(name),
                None if inner == "github.event.head_commit.message" => commit_message.to_owned(),
                None => panic!("the test cannot evaluate {inner}"),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Runs the step as a runner would, in a fresh runner directory.
async fn run_step(inputs: &[(&str, &str)], runner: &[(&str, String)]) -> Step {
    let dir = std::env::temp_dir().join(format!("flakefleet-runner-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let (output_file, summary_file) = (dir.join("output"), dir.join("summary"));
    std::fs::write(&output_file, "").unwrap();
    std::fs::write(&summary_file, "").unwrap();
    let env = step_env(inputs, "web: räumt auf \u{202e}txt\n\nthe body of the commit");
    let runner: Vec<(String, String)> = runner.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let (outputs, summary) = (output_file.clone(), summary_file.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-e", "-c", r#""$GITHUB_ACTION_PATH/run.sh""#])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .env("GITHUB_ACTION_PATH", root().join(".github/actions/deploy"))
            .env("GITHUB_OUTPUT", &outputs)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_REPOSITORY", "acme/infra")
            .env("GITHUB_RUN_ID", fastrand::u32(..).to_string())
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_ACTOR", "alice")
            .env("GITHUB_SHA", "aaaaaaa")
            .envs(env)
            .envs(runner)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let outputs = std::fs::read_to_string(&output_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let summary = std::fs::read_to_string(&summary_file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Step { code: out.status.code(), log, outputs, summary }
}

/// iam mode: the job's AWS credentials (the Lambda under `cargo lambda watch`
/// checks no signature; see the README's testing notes).
fn iam_runner() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIDACTIONTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_SESSION_TOKEN", "action-session-token".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// Reconciles every 300 ms, as the schedule and SSM's events do in AWS,
/// until dropped.
struct Schedule(Arc<AtomicBool>);

impl Schedule {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        std::thread::spawn(move || {
            while !running.load(Ordering::Relaxed) {
                let _ = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-X", "POST", &format!("{url}/reconcile")])
                    .status();
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        });
        Self(stop)
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A table's rows: each `| a | b |` line of the summary under `heading`, split into cells.
fn rows(summary: &str, heading: &str) -> Vec<Vec<String>> {
    summary
        .split(heading)
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect())
        .collect()
}

fn assert_no_secret(step: &Step, secrets: &[&str]) {
    for secret in secrets {
        assert!(!step.log.contains(secret), "{secret} in the log: {}", step.log);
        assert!(!step.summary.contains(secret), "{secret} in the summary: {}", step.summary);
        assert!(step.outputs.values().all(|v| !v.contains(secret)), "{secret} in the outputs");
    }
}

/// A GitHub OIDC issuer on 127.0.0.1:9160: its keys, and the runner's token
/// endpoint, which mints a token for this repository's production job. Answers
/// the tokens it minted.
async fn serve_issuer() -> Arc<Mutex<Vec<String>>> {
    let listener = tokio::net::TcpListener::bind(ISSUER).await.expect("port 9160 is free for the test issuer");
    let minted: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = minted.clone();
    serve_http(listener, move |head| {
        let line = head.lines().next().unwrap_or_default();
        if line.starts_with("GET /.well-known/jwks ") {
            return (200, json!({"keys": [crate::auth::jwk(crate::auth::KID)]}).to_string());
        }
        let authorized = head.lines().any(|l| l.eq_ignore_ascii_case(&format!("authorization: bearer {RUNNER_TOKEN}")));
        if !line.starts_with("GET /token?") || !authorized || !line.contains("audience=flakefleet-action-test") {
            return (403, r#"{"message": "not the runner's request"}"#.into());
        }
        let now = flakefleet::domain::model::time::Timestamp::now().secs();
        let token = crate::auth::token(&json!({
            "iss": format!("http://{ISSUER}"), "aud": "flakefleet-action-test", "iat": now - 5, "nbf": now - 5,
            "exp": now + 300, "jti": format!("jti-{}", fastrand::u64(..)),
            "sub": "repo:acme/infra:environment:production", "repository": "acme/infra",
            "repository_id": "4242", "repository_owner": "acme", "repository_owner_id": "77",
            "ref": "refs/heads/main", "environment": "production",
            "job_workflow_ref": "acme/infra/.github/workflows/deploy.yml@refs/heads/main",
        }));
        log.lock().unwrap().push(token.clone());
        (200, json!({ "value": token }).to_string())
    });
    minted
}

/// What a hostile host (or a foreign answer) prints: every way Markdown,
/// GFM and HTML make a link, an image or an element out of plain text.
const HOSTILE_TEXTS: [&str; 12] = [
    r"\[Approve here](https://evil.example/a)",
    "[link](https://evil.example/b) ![img](https://evil.example/c.png)",
    "https://evil.example/bare and www.evil.example and ops@evil.example",
    "<img src=x onerror=alert(1)> <a href=https://evil.example/d>d</a> <script>x()</script>",
    "&lt;b&gt;entity&lt;/b&gt; &#x3C;i&#x3E; &amp;",
    r"a\|b | **owned** _em_ ~~gone~~ `tick` ``two``",
    r"trailing backslash\",
    "<https://evil.example/angle> <ops@evil.example>",
    "[ref]: https://evil.example/ref",
    "# heading\t> quote",
    "- [x] task",
    "\u{202e}reversed\u{200b}zero-width",
];

/// Renders Markdown as GitHub does (cmark-gfm, dev/render_gfm.py).
fn render_gfm(markdown: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(root().join(".dev/venv/bin/python"))
        .arg(root().join("dev/render_gfm.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(markdown.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered summary makes no link, image or element of its own beyond
/// the summary's frame, and host text stands only inside code.
fn assert_inert(markdown: &str, frame: &[&str]) {
    let html = render_gfm(markdown);
    let tags = regex::Regex::new(r"<([A-Za-z][A-Za-z0-9]*)").unwrap();
    for found in tags.captures_iter(&html) {
        assert!(frame.contains(&&found[1]), "<{}> from host text:\n{markdown}\n{html}", &found[1]);
    }
    // Outside code, none of the hostile words shows: they all sit in <code>.
    let outside = regex::Regex::new(r"(?s)<code>.*?</code>").unwrap().replace_all(&html, "");
    for word in ["evil", "owned", "Approve", "entity", "backslash", "reversed", "task", "heading"] {
        assert!(!outside.contains(word), "{word} outside code:\n{markdown}\n{html}");
    }
}

/// Host output reaches the summary as text: each verdict, reason and name
/// in a code span of its own cell, rendered as GitHub renders it.
#[test]
fn host_output_in_the_summary_is_text() {
    let instances: Vec<Value> = HOSTILE_TEXTS
        .iter()
        .enumerate()
        .map(|(n, text)| {
            json!({"instance_id": format!("i-{n}"), "status": "Failed", "detail": text,
                   "stderr_tail": format!("first line\n{text}\n")})
        })
        .collect();
    let release = json!({"id": "01A", "kind": "deploy", "fleet": HOSTILE_TEXTS[2], "flakeref": "a/b/=1#x",
        "status": "failed", "status_reason": HOSTILE_TEXTS[0], "requested_by": HOSTILE_TEXTS[3],
        "revision": HOSTILE_TEXTS[5], "phase": "final", "shape": "all_at_once", "command_id": "c-1",
        "created_at": "2026-11-30T09:00:00.000Z", "updated_at": "2026-11-30T09:00:09.000Z",
        "deadline": "2026-11-30T09:10:00.000Z", "version": 3, "instances": instances});
    // Hostile, yet an answer the API could give: what summary.jq is fed.
    assert_valid("ReleaseBody", &[&json!({ "release": release })]);
    let out = Command::new("jq")
        .args(["-r", "--arg", "waited", "true", "--arg", "timed_out", "false", "--arg", "elapsed", "9"])
        .args(["--arg", "repo", "r", "-f"])
        .arg(root().join(".github/actions/deploy/summary.jq"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(release.to_string().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let summary = String::from_utf8(out.stdout).unwrap();
    let failed = rows(&summary, "#### Instances that did not succeed");
    assert_eq!(failed.len(), HOSTILE_TEXTS.len(), "{summary}");
    assert!(failed.iter().all(|row| row.len() == 3), "a cell held its pipe: {failed:?}");
    assert_eq!(failed[5][2], r"`a\ \|b \| **owned** _em_ ~~gone~~ 'tick' ''two''`");
    assert_inert(&summary, &["h3", "h4", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "strong", "pre"]);
    // Each cell shows exactly the host's line, as text.
    let html = render_gfm(&summary);
    assert!(html.contains("<code>a\\ |b | **owned** _em_ ~~gone~~ 'tick' ''two''</code>"), "{html}");
    assert!(html.contains("<code>&lt;img src=x onerror=alert(1)&gt;"), "{html}");
}

/// A message `run.sh` writes for a refusal (here an input echoed back) is
/// fenced: nothing in it becomes markup either.
#[tokio::test]
async fn a_refusals_message_in_the_summary_is_text() {
    for hostile in HOSTILE_TEXTS.iter().chain(["```\n<img src=x>\n```", "````` fence"].iter()) {
        let step = run_step(&[("command", hostile)], &[]).await;
        assert_eq!(step.code, Some(2), "{}", step.log);
        assert!(step.summary.starts_with("### flakefleet: not done"), "{}", step.summary);
        assert_inert(&step.summary, &["h3", "pre", "code"]);
    }
}

/// One story on one fleet, in order: a deploy that succeeds, one whose canary
/// fails and is rolled back, a rollback command, a refused request, the same
/// action in github-oidc mode, and a wait that times out.
#[tokio::test]
async fn the_action_deploys_waits_summarises_and_rolls_back_as_a_runner_runs_it() {
    let url = endpoint("FLAKEFLEET_TEST_ACTION_URL");
    let oidc_url = endpoint("FLAKEFLEET_TEST_ACTION_OIDC_URL");
    let _schedule = Schedule::start(url.clone());
    let fleet: Value =
        serde_json::from_slice(&Command::new("curl").args(["-s", &format!("{url}/fleet")]).output().unwrap().stdout)
            .unwrap();
    let ids = fleet_instance_ids(&fleet);
    assert_eq!(ids.len(), 3, "{fleet}");
    fake_hosts(
        &ids,
        json!({"activation_for": {"2.0.1": "errors"}, "fh_error": "error: <script>alert(1)</script> | unit web.service failed"}),
    );

    // A deploy that succeeds: outputs, exit 0, and a summary of its waves.
    let good = run_step(
        &[("function-url", &url), ("flakeref", GOOD), ("revision", "aaaaaaa"), ("interval", "1")],
        &iam_runner(),
    )
    .await;
    assert_eq!(good.code, Some(0), "{}", good.log);
    assert_eq!(good.outputs["status"], "succeeded", "{:?}", good.outputs);
    let good_id = good.outputs["release-id"].clone();
    assert!(good.summary.contains(&format!("### flakefleet deploy {good_id}: **succeeded**")), "{}", good.summary);
    let waves = rows(&good.summary, "#### Waves");
    assert!(!waves.is_empty(), "{}", good.summary);
    let instances: usize = waves.iter().map(|w| w[1].parse::<usize>().unwrap()).sum();
    let succeeded: usize = waves.iter().map(|w| w[2].parse::<usize>().unwrap()).sum();
    assert_eq!((instances, succeeded), (3, 3), "{waves:?}");
    assert!(!good.summary.contains("did not succeed"), "{}", good.summary);
    assert_no_secret(&good, &[SECRET_KEY]);
    let recorded: Value = serde_json::from_slice(
        &Command::new("curl").args(["-s", &format!("{url}/releases/{good_id}")]).output().unwrap().stdout,
    )
    .unwrap();
    let release = &recorded["release"];
    assert!(
        release["run_url"].as_str().unwrap().starts_with("https://github.com/acme/infra/actions/runs/"),
        "{release}"
    );
    assert_eq!(release["reason"], "web: räumt auf txt", "the commit's first line, its bidi override removed");

    // The canary fails (fh errors on 2.0.1): rolled back, exit 1, the failed
    // instance in the summary and as an annotation, its output as text.
    let bad = run_step(&[("function-url", &url), ("flakeref", BAD), ("interval", "1")], &iam_runner()).await;
    assert_eq!(bad.code, Some(1), "{}", bad.log);
    assert_eq!(bad.outputs["status"], "rolled_back");
    let failed = rows(&bad.summary, "#### Instances that did not succeed");
    assert_eq!(failed.len(), 1, "the canary only: {}", bad.summary);
    // Every value in a code span: the instance, its status, its verdict.
    let instance = failed[0][0].trim_matches('`').to_owned();
    assert!(ids.contains(&instance) && failed[0][1].starts_with("`Failed`"), "{failed:?}");
    // The verdict line: the document's last line on the host.
    assert!(failed[0][2].contains("fh apply failed (exit 1)"), "{failed:?}");
    assert!(!bad.summary.contains("<script>"), "{}", bad.summary);
    assert!(bad.summary.contains("flakefleet rolled it back by itself"), "{}", bad.summary);
    assert!(bad.log.contains(&format!("::error::flakefleet: {instance} Failed")), "{}", bad.log);
    assert!(bad.log.contains("::error::flakefleet: release") && bad.log.contains("ended rolled_back"), "{}", bad.log);

    // A rollback by hand, to the good release: exit 0.
    let rollback = run_step(
        &[("function-url", &url), ("command", "rollback"), ("release-id", &good_id), ("interval", "1")],
        &iam_runner(),
    )
    .await;
    assert_eq!(rollback.code, Some(0), "{}", rollback.log);
    assert_eq!(rollback.outputs["status"], "succeeded");
    assert!(rollback.summary.contains(&format!("| Puts back | {good_id} |")), "{}", rollback.summary);

    // Refused: exit 3, the API's error in the log and the summary, no outputs.
    let refused = run_step(&[("function-url", &url), ("flakeref", "AcmeCorp/infra/2")], &iam_runner()).await;
    assert_eq!(refused.code, Some(3), "{}", refused.log);
    assert!(refused.log.contains("::error::flakefleet: deploy refused: 400 invalid_flakeref"), "{}", refused.log);
    assert!(refused.summary.contains("not done") && refused.outputs.is_empty(), "{}", refused.summary);
    // Bad inputs: exit 2.
    let usage = run_step(&[("function-url", &url), ("command", "ship")], &iam_runner()).await;
    assert_eq!(usage.code, Some(2), "{}", usage.log);

    // github-oidc mode: a fresh token per request from the runner's endpoint,
    // verified by the Lambda against the keys served here; none printed.
    let minted = serve_issuer().await;
    let oidc_runner = vec![
        ("ACTIONS_ID_TOKEN_REQUEST_URL", format!("http://{ISSUER}/token?api-version=2.0")),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", RUNNER_TOKEN.to_owned()),
    ];
    let inputs = [
        ("function-url", oidc_url.as_str()),
        ("flakeref", NEXT),
        ("auth", "github-oidc"),
        ("audience", "flakefleet-action-test"),
        ("interval", "1"),
    ];
    let oidc = run_step(&inputs, &oidc_runner).await;
    assert_eq!(oidc.code, Some(0), "{}", oidc.log);
    assert_eq!(oidc.outputs["status"], "succeeded");
    assert!(
        oidc.summary.contains("| Requested by | `repo:acme/infra:environment:production (repository acme/infra)` |"),
        "{}",
        oidc.summary
    );
    let tokens = minted.lock().unwrap().clone();
    assert!(tokens.len() >= 2, "a token per request: {}", tokens.len());
    let secrets: Vec<&str> = tokens.iter().map(String::as_str).chain([RUNNER_TOKEN]).collect();
    assert_no_secret(&oidc, &secrets);
    // Without the audience: exit 2, nothing asked.
    let no_audience =
        run_step(&[("function-url", &oidc_url), ("flakeref", NEXT), ("auth", "github-oidc")], &oidc_runner).await;
    assert_eq!(no_audience.code, Some(2), "{}", no_audience.log);

    // Waiting runs out: exit 5, the release goes on (and ends, for whoever comes next).
    drop(_schedule);
    let slow =
        run_step(&[("function-url", &url), ("flakeref", GOOD), ("timeout", "2"), ("interval", "1")], &iam_runner())
            .await;
    assert_eq!(slow.code, Some(5), "{}", slow.log);
    assert!(slow.log.contains("is still") && slow.log.contains("it goes on"), "{}", slow.log);
    assert!(slow.summary.contains("stopped waiting; the release goes on"), "{}", slow.summary);
    let _schedule = Schedule::start(url.clone());
    let id = slow.outputs["release-id"].clone();
    for _ in 0..60 {
        let shown: Value = serde_json::from_slice(
            &Command::new("curl").args(["-s", &format!("{url}/releases/{id}")]).output().unwrap().stdout,
        )
        .unwrap();
        if !matches!(shown["release"]["status"].as_str(), Some("pending" | "in_progress")) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("the release the action stopped waiting for never ended");
}
