//! .github/scripts/flakefleet.sh in github-oidc mode, run with bash against a
//! stand-in for GitHub's token endpoint and the function URL on 127.0.0.1:
//! each request gets a fresh token with the configured audience, and no token
//! reaches the job's output.

use crate::support::serve_http;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn github_oidc_mode_sends_a_fresh_token_with_every_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let mut issued = 0;
    serve_http(listener, move |head| {
        let line = head.lines().next().unwrap_or("").to_owned();
        let authorization = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_owned()))
            .unwrap_or_default();
        log.lock().unwrap().push(format!("{line} | {authorization}"));
        if line.starts_with("GET /token") {
            issued += 1;
            (200, format!(r#"{{"value": "header.payload.signature-{issued}"}}"#))
        } else {
            (200, r#"{"release": {"id": "01JDQ7Z6J3W9C7Q4V1R2N8K5TB", "status": "succeeded", "instances": []}}"#.into())
        }
    });

    let run = |args: &'static [&'static str]| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg(".github/scripts/flakefleet.sh")
                .args(args)
                .env("FLAKEFLEET_AUTH", "github-oidc")
                .env("FLAKEFLEET_AUDIENCE", "flakefleet-prod")
                .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{base}/token?api-version=2.0"))
                .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
                .env("FUNCTION_URL", format!("{base}/"))
                .output()
                .unwrap()
        })
    };
    let deploy = run(&["request", "POST", "/releases", r#"{"flakeref": "a/b/=1.0.0#x"}"#]).await.unwrap();
    assert!(deploy.status.success(), "{}", String::from_utf8_lossy(&deploy.stderr));
    let wait = run(&["wait", "01JDQ7Z6J3W9C7Q4V1R2N8K5TB"]).await.unwrap();
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stderr));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "GET /token?api-version=2.0&audience=flakefleet-prod HTTP/1.1 | bearer runner-request-token",
            "POST /releases HTTP/1.1 | Bearer header.payload.signature-1",
            "GET /token?api-version=2.0&audience=flakefleet-prod HTTP/1.1 | bearer runner-request-token",
            "GET /releases/01JDQ7Z6J3W9C7Q4V1R2N8K5TB HTTP/1.1 | Bearer header.payload.signature-2",
        ]
    );
    for output in [&deploy.stdout, &wait.stdout, &deploy.stderr, &wait.stderr] {
        let text = String::from_utf8_lossy(output);
        assert!(
            !text.contains("header.payload") && !text.contains("runner-request-token"),
            "a token is printed: {text}"
        );
    }
}
