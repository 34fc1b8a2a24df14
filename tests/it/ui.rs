//! `flakefleet ui` in a real headless Chromium: the binary serves the page
//! and signs its API calls to the Lambda under `cargo lambda watch` (port
//! 9161, a fleet of three fake hosts of its own), on the local AWS. The test
//! drives real releases (a canary that fails on a fresh fleet and halts it, a
//! good deploy, a failing canary that is rolled back, a rollback from the
//! page) and asserts on the DOM while the page refreshes by itself.

use super::browser::Browser;
use super::support::{assert_valid, endpoint, fake_hosts, fleet_instance_ids};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const GOOD: &str = "AcmeCorp/infra/=3.0.0+rev-aaaaaaa#nixosConfigurations.ui";
const BAD: &str = "AcmeCorp/infra/=3.0.1+rev-bbbbbbb#nixosConfigurations.ui";
/// What a failing host prints: markup that must show as text and never run.
const HOSTILE: &str =
    "error: <script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> unit web.service failed";
const WAIT: Duration = Duration::from_secs(60);

/// A running `flakefleet ui`; stopped when dropped.
struct Ui {
    child: Child,
    /// Its stdout: the links it prints (a new one each time a code is used).
    lines: BufReader<ChildStdout>,
    /// The page's address, its first one-time code included, as printed.
    page: String,
}

impl Ui {
    fn start(function_url: &str, extra: &[&str]) -> Self {
        Self::start_with(function_url, extra, &[])
    }

    fn start_with(function_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flakefleet"))
            .args(["--url", function_url, "--region", "us-east-1", "ui", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "ui-test-key")
            .env("AWS_SECRET_ACCESS_KEY", "ui-test-secret")
            .env_remove("AWS_PROFILE")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("flakefleet ui starts");
        let lines = BufReader::new(child.stdout.take().unwrap());
        let mut ui = Self { child, lines, page: String::new() };
        ui.page = ui.next_link();
        ui
    }

    /// The next link it prints: the first at start, then one each time a code is spent.
    fn next_link(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        assert!(line.starts_with("http://127.0.0.1:") && line.contains("/?code="), "{line}");
        assert!(!line.contains("token"), "{line}");
        line.trim().to_owned()
    }

    fn origin(&self) -> &str {
        self.page.split("/?").next().unwrap()
    }

    fn code(&self) -> &str {
        self.page.split("code=").nth(1).unwrap()
    }

    /// curl against the ui server: status line, headers and body.
    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl").args(["-s", "-i"]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Trades `code` for the session's token, as the page does.
    fn trade(&self, code: &str) -> String {
        let answer = self.curl(&[
            "-X",
            "POST",
            "-H",
            &format!("X-Flakefleet-Code: {code}"),
            &format!("{}/session", self.origin()),
        ]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        body["token"].as_str().unwrap().to_owned()
    }
}

/// The same curl run as the unprivileged user `nobody`: another user of the machine.
fn curl_as_nobody(args: &[&str]) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s", "-i"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call to the Lambda; its JSON answer, or Null when it gave none.
fn lambda(method: &str, url: &str, body: Option<Value>) -> Value {
    let mut command = Command::new("curl");
    command.args(["-s", "-X", method, url, "-H", "content-type: application/json"]);
    if let Some(body) = body {
        command.args(["--data-binary", &body.to_string()]);
    }
    serde_json::from_slice(&command.output().unwrap().stdout).unwrap_or(Value::Null)
}

/// Reconciles (as the schedule would) until the fleet is free again.
fn run_out(url: &str) {
    let started = Instant::now();
    loop {
        let fleet = lambda("GET", &format!("{url}/fleet"), None);
        // An error answer has no fleet: not the same as a free one.
        if fleet["fleet"].is_object() && fleet["fleet"]["lease"].is_null() {
            return;
        }
        assert!(started.elapsed() < WAIT, "the fleet stayed held: {fleet}");
        lambda("POST", &format!("{url}/reconcile"), None);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn deploy(url: &str, flakeref: &str) -> String {
    let answer = lambda("POST", &format!("{url}/releases"), Some(json!({"flakeref": flakeref})));
    answer["release"]["id"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

/// The shown release's status and the waves' count lines, once it shows `id`
/// as `status` after a refresh without error.
fn shown(browser: &Browser, id: &str, status: &str) -> Value {
    let script = format!(
        "const h = document.getElementById('release-heading').textContent;
         const s = document.querySelector('#release-body [data-status]');
         const fresh = document.getElementById('error').hidden;
         if (!fresh || !h.endsWith('{id}') || !s || s.dataset.status !== '{status}') return null;
         return {{waves: [...document.querySelectorAll('#release-body .wave')].map(w =>
                    [w.dataset.wave, w.querySelector('.counts').textContent]),
                  bars: document.querySelectorAll('#release-body svg.timeline rect').length,
                  text: document.getElementById('release-body').innerText}};"
    );
    let shown = browser.wait_for(&format!("release {id} shown as {status}"), &script, WAIT);
    let text = shown["text"].as_str().unwrap_or_default();
    assert!(!text.contains("null") && !text.contains("undefined"), "a missing value leaked as text: {text}");
    shown
}

#[test]
fn the_proxy_refuses_what_it_was_not_started_for_and_never_gives_its_token_away() {
    let mut ui = Ui::start(&endpoint("FLAKEFLEET_TEST_UI_URL"), &[]);
    let origin = ui.origin().to_owned();
    let first_code = ui.code().to_owned();
    let port = origin.rsplit(':').next().unwrap().to_owned();

    // Another user of this machine, before the operator opens the link:
    // every door it can knock on answers without the token or the code.
    let mut answers = Vec::new();
    for args in [
        vec![format!("{origin}/")],
        vec!["-H".into(), format!("Host: attacker.example:{port}"), format!("{origin}/")],
        vec!["-H".into(), "Host:".into(), format!("{origin}/api/fleet")],
        vec![format!("{origin}/api/fleet")],
        vec!["-X".into(), "POST".into(), format!("{origin}/session")],
        vec!["-X".into(), "POST".into(), "-H".into(), "X-Flakefleet-Code: guess".into(), format!("{origin}/session")],
        vec![
            "-H".into(),
            format!("Host: attacker.example:{port}"),
            "-X".into(),
            "POST".into(),
            format!("{origin}/session"),
        ],
    ] {
        let answer = curl_as_nobody(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(answer.starts_with("HTTP/1.1 "), "curl as nobody reached the server: {args:?}: {answer}");
        answers.push((args, answer));
    }
    assert!(answers[1].1.starts_with("HTTP/1.1 403") && answers[1].1.contains("foreign_host"), "{:?}", answers[1]);
    assert!(answers[5].1.contains("\"error\":\"code_spent\""), "a wrong code: {:?}", answers[5]);
    // A wrong code spends nothing: the operator's link still works, once.
    let token = ui.trade(&first_code);
    let header = format!("X-Flakefleet-Token: {token}");
    let second_link = ui.next_link();
    assert_ne!(second_link, ui.page, "a new link for another tab");
    let spent =
        ui.curl(&["-X", "POST", "-H", &format!("X-Flakefleet-Code: {first_code}"), &format!("{origin}/session")]);
    assert!(spent.starts_with("HTTP/1.1 403") && spent.contains("code_spent"), "{spent}");

    let page = ui.curl(&[&format!("{origin}/")]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{page}");
    let read = ui.curl(&["-H", &header, &format!("{origin}/api/fleet")]);
    assert!(read.starts_with("HTTP/1.1 200") && read.contains("\"fleet\""), "{read}");
    assert!(!read.to_lowercase().contains("access-control-allow"), "no CORS headers: {read}");

    let refusals = [
        (vec![format!("{origin}/api/fleet")], "403", "missing_token"),
        (vec!["-H".into(), "X-Flakefleet-Token: wrong".into(), format!("{origin}/api/fleet")], "403", "missing_token"),
        // DNS rebinding: another name for this address.
        (
            vec![
                "-H".into(),
                header.clone(),
                "-H".into(),
                format!("Host: evil.example:{port}"),
                format!("{origin}/api/fleet"),
            ],
            "403",
            "foreign_host",
        ),
        (vec!["-H".into(), format!("Host: evil.example:{port}"), format!("{origin}/")], "403", "foreign_host"),
        (vec!["-H".into(), "Host:".into(), format!("{origin}/")], "403", "foreign_host"),
        (
            vec!["-X".into(), "POST".into(), "-H".into(), header.clone(), format!("{origin}/api/rollback")],
            "405",
            "read_only",
        ),
        (vec!["-H".into(), header.clone(), format!("{origin}/api/reconcile")], "404", "no_route"),
        (vec!["-H".into(), header.clone(), format!("{origin}/api/releases?limit=500")], "400", "invalid_query"),
        (vec!["-H".into(), header.clone(), format!("{origin}/api/releases/x")], "400", "invalid_release_id"),
        (vec![format!("{origin}/elsewhere")], "404", "not_found"),
        (vec!["-X".into(), "POST".into(), format!("{origin}/")], "405", "method_not_allowed"),
        (vec![format!("{origin}/session")], "405", "method_not_allowed"),
        (vec!["-X".into(), "POST".into(), format!("{origin}/session")], "400", "missing_code"),
    ];
    for (args, status, code) in &refusals {
        let answer = ui.curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{args:?}: {answer}");
        assert!(answer.contains(&format!("{{\"error\":\"{code}\"")), "{args:?}: {answer}");
        answers.push((args.clone(), answer));
    }
    // Every route that answers 200 too: the page, its assets, each read.
    for path in ["/", "/app.js", "/app.css", "/api/fleet", "/api/releases", "/api/releases?limit=1"] {
        let answer = ui.curl(&["-H", &header, &format!("{origin}{path}")]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        answers.push((vec![path.to_owned()], answer));
    }
    // Nothing but the one trade of a code ever carried the token, or a code.
    let second_code = second_link.split("code=").nth(1).unwrap();
    for (args, answer) in &answers {
        for secret in [token.as_str(), first_code.as_str(), second_code] {
            assert!(!answer.contains(secret), "{args:?} answered a secret: {answer}");
        }
    }
    // The process's own argv holds none either (readable by every user).
    let argv = std::fs::read(format!("/proc/{}/cmdline", ui.child.id())).unwrap();
    let argv = String::from_utf8_lossy(&argv);
    assert!(!argv.contains(&token) && !argv.contains(second_code), "{argv}");
}

/// `--open` hands the browser a file only this user can read, never the link.
#[test]
fn open_passes_no_secret_on_a_command_line() {
    let dir = std::env::temp_dir().join(format!("flakefleet-open-{}", std::process::id()));
    let (bin, runtime) = (dir.join("bin"), dir.join("runtime"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    // A stand-in opener that records what it was given (nothing opens here).
    let opener = bin.join("xdg-open");
    std::fs::write(&opener, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}/argv\n", dir.display())).unwrap();
    Command::new("chmod").args(["755"]).arg(&opener).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let ui = Ui::start_with(
        &endpoint("FLAKEFLEET_TEST_UI_URL"),
        &["--open"],
        &[("PATH", path.as_str()), ("XDG_RUNTIME_DIR", runtime.to_str().unwrap())],
    );
    let argv_file = dir.join("argv");
    let started = Instant::now();
    while !argv_file.exists() {
        assert!(started.elapsed() < WAIT, "the opener was never run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let argv = std::fs::read_to_string(&argv_file).unwrap();
    assert!(!argv.contains(ui.code()) && !argv.contains("code="), "{argv}");
    let opened = std::path::Path::new(argv.trim());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(opened).unwrap().permissions().mode() & 0o777, 0o600, "{argv}");
    assert_eq!(std::fs::metadata(opened.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(std::fs::read_to_string(opened).unwrap().contains(&ui.page), "the file sends the browser to the link");
    let peek = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(opened)
        .output()
        .unwrap();
    assert!(!peek.status.success() && peek.stdout.is_empty(), "another user read the link");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_status_page_shows_rollouts_halts_rollbacks_and_host_output_as_text() {
    let url = endpoint("FLAKEFLEET_TEST_UI_URL");
    let fleet = lambda("GET", &format!("{url}/fleet"), None);
    let ids = fleet_instance_ids(&fleet);
    assert_eq!(ids.len(), 3, "{fleet}");
    assert!(fleet["fleet"]["desired_release"].is_null(), "a fresh fleet: {fleet}");
    fake_hosts(&ids, json!({"activation_for": {"3.0.1": "errors"}, "fh_error": HOSTILE}));

    let ui = Ui::start(&url, &[]);
    let browser = Browser::start(1280, 1500);
    browser.open(&ui.page);
    browser.wait_for("the fleet", "return document.getElementById('fleet-name').textContent === 'ui'", WAIT);
    // The link's code was traded for the session and left the address bar;
    // the code in the printed link (and so in the browser's history) is spent.
    let address = browser.run("return location.href");
    assert!(!address.as_str().unwrap().contains("code="), "{address}");
    let spent = ui.curl(&[
        "-X",
        "POST",
        "-H",
        &format!("X-Flakefleet-Code: {}", ui.code()),
        &format!("{}/session", ui.origin()),
    ]);
    assert!(spent.starts_with("HTTP/1.1 403") && spent.contains("code_spent"), "{spent}");

    // 1. A fresh fleet's first release fails its canary: nothing to roll back
    // to, so the fleet halts. Before any reconcile the canary is in flight.
    // An idle page does not refresh: the operator presses Refresh once, and
    // from then on the page follows the rollout by itself to its end.
    let first = deploy(&url, BAD);
    browser.run("document.getElementById('refresh').click()");
    let flight = browser.wait_for(
        "the rollout in flight",
        "const r = document.getElementById('rollout');
         return !r.hidden && document.getElementById('refreshed').textContent.includes('every 2 s')
           && document.querySelector('#release-body .wave .counts')?.textContent;",
        WAIT,
    );
    assert!(flight.as_str().unwrap().contains("1 pending"), "{flight}");
    run_out(&url);
    let halted = shown(&browser, &first, "halted");
    assert_eq!(halted["waves"][0][1], "✓ 0 succeeded · ✗ 1 failed · ⊘ 0 unreachable · … 0 pending", "{halted}");
    let banner = browser.wait_for(
        "the halted banner",
        "const b = document.getElementById('halted'); return !b.hidden && b.textContent;",
        WAIT,
    );
    assert!(banner.as_str().unwrap().contains("Fleet halted"), "{banner}");
    // The host's output is shown, as text: no element came of it, nothing ran.
    let tail = browser.run(
        "return {tail: document.querySelector('#outcomes-table pre.stderr')?.textContent,
                 injected: document.querySelectorAll('#release-body script, #release-body img').length,
                 pwned: window.pwned === undefined ? null : window.pwned};",
    );
    assert!(tail["tail"].as_str().unwrap_or_default().contains(HOSTILE), "{tail}");
    assert_eq!((tail["injected"].as_u64(), &tail["pwned"]), (Some(0), &Value::Null), "{tail}");

    // 2. A good deploy lifts the halt; its waves are counted and drawn.
    let good = deploy(&url, GOOD);
    browser.run("document.getElementById('refresh').click()");
    run_out(&url);
    let done = shown(&browser, &good, "succeeded");
    let waves: Vec<&str> = done["waves"].as_array().unwrap().iter().map(|w| w[1].as_str().unwrap()).collect();
    assert_eq!(
        waves,
        [
            "✓ 1 succeeded · ✗ 0 failed · ⊘ 0 unreachable · … 0 pending",
            "✓ 2 succeeded · ✗ 0 failed · ⊘ 0 unreachable · … 0 pending"
        ],
        "{done}"
    );
    assert_eq!(done["bars"], 2, "a timeline bar per wave: {done}");
    assert!(done["text"].as_str().unwrap().contains("judged"), "{done}");
    browser.wait_for("the banner gone", "return document.getElementById('halted').hidden", WAIT);
    // Idle: the page stops refreshing.
    let idle = browser.wait_for(
        "idle",
        "const t = document.getElementById('refreshed').textContent; return t.includes('idle') && t;",
        WAIT,
    );
    // Nothing scheduled: the page's refresh timer (app.js's `timer`) is unset while idle.
    assert_eq!(browser.run("return timer === null"), json!(true), "no refresh scheduled while idle");
    assert_eq!(browser.run("return document.getElementById('refreshed').textContent"), idle, "no refresh while idle");

    // 3. A failing canary, rolled back by itself.
    let bad = deploy(&url, BAD);
    run_out(&url);
    browser.open(&format!("{}#release={bad}", ui.page));
    let rolled = shown(&browser, &bad, "rolled_back");
    let text = rolled["text"].as_str().unwrap();
    assert!(text.contains("Rolled back by"), "{text}");
    assert!(text.contains("unit web.service failed"), "the failed canary's tail: {text}");
    // Every host runs the desired flakeref again (the canary under the rollback).
    let states = browser
        .run("return [...document.querySelectorAll('#instances-table tbody tr')].map(r => r.cells[3].textContent)");
    assert_eq!(states, json!(["✓ current", "✓ current", "✓ current"]), "{states}");
    let history = browser.run(
        "return [...document.querySelectorAll('#history-table tbody tr')].map(r =>
           [...r.cells].map(c => c.textContent));",
    );
    let kinds: Vec<(&str, &str)> =
        history.as_array().unwrap().iter().map(|r| (r[1].as_str().unwrap(), r[2].as_str().unwrap())).collect();
    assert_eq!(
        kinds,
        [("rollback", "✓ succeeded"), ("deploy", "↺ rolled back"), ("deploy", "✓ succeeded"), ("deploy", "■ halted")],
        "{history}"
    );

    // 4. A 4xx shows as an error; what was read stays on screen.
    browser.open(&format!("{}#release=01AAAAAAAAAAAAAAAAAAAAAAAA", ui.page));
    let kept = browser.wait_for(
        "the 404 shown",
        "const e = document.getElementById('error');
         return !e.hidden && e.textContent.includes('404')
           && {said: e.textContent, rows: document.querySelectorAll('#instances-table tbody tr').length};",
        WAIT,
    );
    assert_eq!(kept["rows"], 3, "{kept}");

    // 5. Tab reaches every link and button, in the page's order, and shows focus.
    browser.open(&format!("{}#release={bad}", ui.page));
    shown(&browser, &bad, "rolled_back");
    let count = browser
        .run(
            "const all = [...document.querySelectorAll('a[href], button:not([disabled])')]
               .filter(e => e.offsetParent !== null);
             all.forEach((e, i) => e.dataset.tab = i);
             document.activeElement.blur();
             return all.length;",
        )
        .as_u64()
        .unwrap();
    assert!(count >= 10, "links and buttons: {count}");
    let mut reached = Vec::new();
    for _ in 0..count + 5 {
        browser.tab();
        let focused = browser.run(
            "const e = document.activeElement;
             return e && e.dataset.tab !== undefined
               ? [Number(e.dataset.tab), getComputedStyle(e).outlineStyle] : null;",
        );
        if let Some(pair) = focused.as_array() {
            assert_ne!(pair[1], "none", "focus is visible on element {}", pair[0]);
            let index = pair[0].as_u64().unwrap();
            if reached.last() != Some(&index) && !reached.contains(&index) {
                reached.push(index);
            }
        }
    }
    assert_eq!(reached, (0..count).collect::<Vec<_>>(), "Tab order");

    // 6. Screenshots, and 375 px wide without sideways scrolling.
    browser.screenshot(".dev/ui-desktop.png");
    browser.emulate_width(375, 1400);
    let widths = browser.wait_for(
        "the narrow layout",
        "return window.innerWidth <= 400 && [document.documentElement.scrollWidth, window.innerWidth];",
        WAIT,
    );
    assert!(widths[0].as_u64() <= widths[1].as_u64(), "the page scrolls sideways at 375 px: {widths}");
    browser.screenshot(".dev/ui-375.png");

    // 7. With --allow-writes: roll back to the good release, after a confirmation.
    let writer = Ui::start(&url, &["--allow-writes"]);
    browser.desktop();
    browser.open(&format!("{}#release={good}", writer.page));
    shown(&browser, &good, "succeeded");
    browser.run("document.getElementById('rollback').click()");
    let asked = browser.wait_for(
        "the confirmation",
        "return document.activeElement.id === 'confirm-rollback' && document.querySelector('.confirm').textContent;",
        WAIT,
    );
    assert!(asked.as_str().unwrap().contains(GOOD), "{asked}");
    browser.run("document.getElementById('confirm-rollback').click()");
    let new_id = browser.wait_for(
        "the rollback release",
        &format!("const m = /^#release=(\\w+)$/.exec(location.hash); return m && m[1] !== '{good}' && m[1];"),
        WAIT,
    );
    let rollback = lambda("GET", &format!("{url}/releases/{}", new_id.as_str().unwrap()), None);
    assert_eq!(
        (rollback["release"]["kind"].as_str(), rollback["release"]["rollback_of"].as_str()),
        (Some("rollback"), Some(good.as_str())),
        "{rollback}"
    );
    run_out(&url);
    shown(&browser, new_id.as_str().unwrap(), "succeeded");

    // What the page read, read again: each answer is what the published contract says.
    let fleet = lambda("GET", &format!("{url}/fleet"), None);
    let page = lambda("GET", &format!("{url}/releases"), None);
    let releases: Vec<Value> = page["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| lambda("GET", &format!("{url}/releases/{}", r["id"].as_str().unwrap()), None))
        .collect();
    assert!(releases.len() >= 4, "{page}");
    assert_valid("FleetBody", &[&fleet]);
    assert_valid("ReleasePage", &[&page]);
    assert_valid("ReleaseBody", &releases.iter().collect::<Vec<_>>());
}

#[test]
fn an_unreachable_function_url_is_shown_as_an_error() {
    // Nothing listens on port 9: every call fails to connect.
    let ui = Ui::start("http://127.0.0.1:9/lambda-url/flakefleet-lambda", &[]);
    let browser = Browser::start(1280, 900);
    browser.open(&ui.page);
    let error = browser.wait_for(
        "the error",
        "const e = document.getElementById('error'); return !e.hidden && e.textContent;",
        WAIT,
    );
    assert!(error.as_str().unwrap().contains("502 unreachable"), "{error}");
}

/// `make bench` (dev/bench.sh), not `make test`: the page's size and the time
/// to a rendered page with 100 releases and a 100-instance rollout in
/// flight, in headless Chromium. Prints Markdown for docs/performance.md.
#[test]
#[ignore = "a benchmark: dev/bench.sh runs it"]
fn bench_the_status_page() {
    let url = endpoint("FLAKEFLEET_BENCH_UI_URL");
    // Every release, page by page (a page stops at DynamoDB's 1 MB).
    let listed = || {
        let (mut count, mut cursor) = (0, String::new());
        loop {
            let page = lambda("GET", &format!("{url}/releases?limit=100{cursor}"), None);
            count += page["releases"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return count,
            }
        }
    };
    for n in listed()..99 {
        deploy(&url, &format!("AcmeCorp/infra/=4.0.{n}#nixosConfigurations.bench"));
        run_out(&url);
    }
    // The 100th stays in flight: its canary and second wave passed, its last wave sent.
    let last = deploy(&url, "AcmeCorp/infra/=4.1.0#nixosConfigurations.bench");
    for _ in 0..60 {
        lambda("POST", &format!("{url}/reconcile"), None);
        let release = lambda("GET", &format!("{url}/releases/{last}"), None);
        if release["release"]["rollout"]["waves"].as_array().map_or(0, Vec::len) >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let fleet = lambda("GET", &format!("{url}/fleet"), None);
    let instances = fleet["fleet"]["instances"].as_array().map_or(0, Vec::len);

    let ui = Ui::start(&url, &[]);
    let browser = Browser::start(1280, 1500);
    // Per load: to the rendered page; its start to the first API call; the
    // API calls; the last answer to the render; one redraw alone.
    let mut times: [Vec<f64>; 5] = Default::default();
    let mut sizes = Value::Null;
    for run in 0..11 {
        browser.open(&format!("{}&run={run}", ui.page));
        browser.wait_for(
            "the first rendered page",
            "return performance.getEntriesByName('flakefleet:rendered').length;",
            WAIT,
        );
        let split = browser.run(
            "const api = performance.getEntriesByType('resource').filter(e => e.name.includes('/api/'));
             const rendered = performance.getEntriesByName('flakefleet:rendered')[0].startTime;
             const start = Math.min(...api.map(e => e.startTime)), end = Math.max(...api.map(e => e.responseEnd));
             const t = performance.now(); render(); const redraw = performance.now() - t;
             return [rendered, start, end - start, rendered - end, redraw];",
        );
        sizes = browser.run(
            "const size = (e) => [e.name.replace(location.origin, '').replace(/\\?.*/, ''), e.decodedBodySize, e.duration];
             return [size(performance.getEntriesByType('navigation')[0]),
                     ...performance.getEntriesByType('resource').map(size)];",
        );
        if run > 0 {
            for (kept, value) in times.iter_mut().zip(split.as_array().unwrap()) {
                kept.push(value.as_f64().unwrap());
            }
        }
    }
    let rows = sizes.as_array().unwrap();
    let assets: f64 =
        rows.iter().filter(|r| !r[0].as_str().unwrap().starts_with("/api/")).map(|r| r[1].as_f64().unwrap()).sum();
    println!(
        "### Status page (`flakefleet ui`), {} releases listed 10 a page, a rollout of {instances} instances in flight",
        listed()
    );
    println!();
    println!("| what | bytes (uncompressed) | last load's time |\n|---|---:|---:|");
    for row in rows {
        println!("| `{}` | {} | {:.0} ms |", row[0].as_str().unwrap(), row[1], row[2].as_f64().unwrap());
    }
    println!("| page and assets, total | {assets:.0} | |");
    println!();
    println!("| 10 loads (after one to warm up) | median | max |\n|---|---:|---:|");
    let what = [
        "request to a rendered page (navigation start to the first full render)",
        "of which: the page's start (HTML, CSS, script) to its first API call",
        "of which: the API calls, side by side (proxy, Lambda, local AWS)",
        "of which: the last answer to the rendered page",
        "the page's own redraw (DOM and SVG from the read JSON)",
    ];
    for (label, mut values) in what.into_iter().zip(times) {
        values.sort_by(f64::total_cmp);
        println!("| {label} | {:.1} ms | {:.1} ms |", values[values.len() / 2], values[values.len() - 1]);
    }
}
