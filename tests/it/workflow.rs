//! The action's request script (.github/actions/deploy/request.sh), run with bash against a stand-in for
//! GitHub's token endpoint and the function URL on 127.0.0.1 (neither is an
//! AWS API): each request gets a fresh token with the configured audience or
//! a SigV4 signature, no secret reaches the job's output, and none is ever on
//! a command line (a `curl` shim first on PATH records every argv).

use crate::support::serve_http;
use std::sync::{Arc, Mutex};

const SECRET_KEY: &str = "wJalrXUtnFEMI-secret-key-7Q2xk";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzE-session-token-9vQ";
const RUNNER_TOKEN: &str = "runner-request-token-5d1c";

/// A directory holding a `curl` that appends its arguments to `argv.log`, then runs the real one.
fn curl_shim() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flakefleet-curl-shim-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let real = std::process::Command::new("bash").args(["-c", "command -v curl"]).output().unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
    let shim = dir.join("curl");
    std::fs::write(
        &shim,
        format!("#!/usr/bin/env bash\nprintf '%s\\n' \"$*\" >> '{}/argv.log'\nexec '{real}' \"$@\"\n", dir.display()),
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&shim).status().unwrap();
    dir
}

struct Run {
    seen: Vec<String>,
    outputs: Vec<String>,
    argv: String,
}

/// Runs `request.sh POST /releases …` then `request.sh GET /releases/<id>` in `auth` mode.
async fn run_script(auth: &'static str) -> Run {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let mut issued = 0;
    serve_http(listener, move |head| {
        let line = head.lines().next().unwrap_or("").to_owned();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.to_ascii_lowercase().starts_with(name).then(|| l[name.len()..].trim().to_owned()))
                .unwrap_or_default()
        };
        let authorization = header("authorization:");
        // SigV4: keep what identifies the signer; the signature changes with the time.
        let authorization = match authorization.split_once(", Signature=") {
            Some((signed, _)) => format!("{signed} | token {}", header("x-amz-security-token:")),
            None => authorization,
        };
        log.lock().unwrap().push(format!("{line} | {authorization}"));
        if line.starts_with("GET /token") {
            issued += 1;
            (200, format!(r#"{{"value": "header.payload.signature-{issued}"}}"#))
        } else {
            (200, r#"{"release": {"id": "01JDQ7Z6J3W9C7Q4V1R2N8K5TB", "status": "succeeded", "instances": []}}"#.into())
        }
    });

    let shim = curl_shim();
    let run = |args: &'static [&'static str]| {
        let (base, shim) = (base.clone(), shim.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg(".github/actions/deploy/request.sh")
                .args(args)
                .env("PATH", format!("{}:{}", shim.display(), std::env::var("PATH").unwrap()))
                .env("FLAKEFLEET_AUTH", auth)
                .env("FLAKEFLEET_AUDIENCE", "flakefleet-prod")
                .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{base}/token?api-version=2.0"))
                .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", RUNNER_TOKEN)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "AKIDFLAKEFLEETTEST")
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
                .env("FUNCTION_URL", format!("{base}/"))
                .output()
                .unwrap()
        })
    };
    let deploy = run(&["POST", "/releases", r#"{"flakeref": "a/b/=1.0.0#x"}"#]).await.unwrap();
    assert!(deploy.status.success(), "{}", String::from_utf8_lossy(&deploy.stderr));
    let wait = run(&["GET", "/releases/01JDQ7Z6J3W9C7Q4V1R2N8K5TB"]).await.unwrap();
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));
    let argv = std::fs::read_to_string(shim.join("argv.log")).unwrap();
    std::fs::remove_dir_all(&shim).unwrap();
    let outputs = [&deploy.stdout, &wait.stdout, &deploy.stderr, &wait.stderr]
        .iter()
        .map(|o| String::from_utf8_lossy(o).into_owned())
        .collect();
    let seen = seen.lock().unwrap().clone();
    Run { seen, outputs, argv }
}

fn assert_no_secret(run: &Run) {
    let secrets = [SECRET_KEY, SESSION_TOKEN, RUNNER_TOKEN, "header.payload"];
    for secret in secrets {
        assert!(!run.argv.contains(secret), "{secret} is on curl's command line: {}", run.argv);
        for output in &run.outputs {
            assert!(!output.contains(secret), "{secret} is printed: {output}");
        }
    }
    assert!(
        run.argv.lines().all(|l| l.contains("--config -")),
        "every curl reads its secrets from stdin: {}",
        run.argv
    );
}

#[tokio::test]
async fn github_oidc_mode_sends_a_fresh_token_with_every_request() {
    let run = run_script("github-oidc").await;
    assert_eq!(
        run.seen,
        [
            format!("GET /token?api-version=2.0&audience=flakefleet-prod HTTP/1.1 | bearer {RUNNER_TOKEN}"),
            "POST /releases HTTP/1.1 | Bearer header.payload.signature-1".into(),
            format!("GET /token?api-version=2.0&audience=flakefleet-prod HTTP/1.1 | bearer {RUNNER_TOKEN}"),
            "GET /releases/01JDQ7Z6J3W9C7Q4V1R2N8K5TB HTTP/1.1 | Bearer header.payload.signature-2".into(),
        ]
    );
    assert_eq!(run.argv.lines().count(), 4, "{}", run.argv);
    assert_no_secret(&run);
}

#[tokio::test]
async fn iam_mode_signs_with_sigv4_and_keeps_keys_off_the_command_line() {
    let run = run_script("iam").await;
    assert_eq!(run.seen.len(), 2, "{:?}", run.seen);
    for (request, line) in ["POST /releases", "GET /releases/01JDQ7Z6J3W9C7Q4V1R2N8K5TB"].iter().zip(&run.seen) {
        assert!(line.starts_with(request), "{line}");
        assert!(
            line.contains("AWS4-HMAC-SHA256 Credential=AKIDFLAKEFLEETTEST/")
                && line.contains("/us-east-1/lambda/aws4_request"),
            "signed for lambda in the region: {line}"
        );
        assert!(line.ends_with(&format!("| token {SESSION_TOKEN}")), "the session token travels as a header: {line}");
    }
    assert_no_secret(&run);
}
