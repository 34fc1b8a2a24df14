//! `make bench` (dev/bench.sh): measures the release `bootstrap` as Lambda
//! would run it, against the local AWS, and prints Markdown tables for
//! docs/performance.md. Timings are wall-clock on this machine; AWS call
//! counts come from the Lambda's own log (its SDK interceptor).
//!
//! Each Lambda process is driven through a minimal Lambda Runtime API served
//! here on 127.0.0.1: the process is spawned, asks for its first event (init
//! done), answers it (first event handled), and so on.
//!
//! Arguments: <bootstrap> <python with boto3> <aws cli>. Environment:
//! AWS_ENDPOINT_URL (moto) and AWS_ENDPOINT_URL_SSM (the simulator).

#[path = "../tests/runtime_api/mod.rs"]
mod runtime_api;

use runtime_api::RuntimeApi;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEPLOY_ROLE: &str = "arn:aws:iam::123456789012:role/flakefleet-deploy";
const RELEASE: &str = "AcmeCorp/infra/=0.1.41+rev-1111111#nixosConfigurations.web";

/// One Lambda process: the release bootstrap, its log, its Runtime API.
struct Lambda {
    child: Child,
    api: RuntimeApi,
    spawned: Instant,
    log: Arc<Mutex<Vec<String>>>,
}

impl Lambda {
    async fn start(bootstrap: &str, env: &[(&str, String)]) -> Self {
        let api = RuntimeApi::start().await;
        let spawned = Instant::now();
        let mut child = runtime_api::lambda_process(bootstrap, &api, "flakefleet-bench")
            .env("AWS_ENDPOINT_URL", std::env::var("AWS_ENDPOINT_URL").unwrap())
            .env("AWS_ENDPOINT_URL_SSM", std::env::var("AWS_ENDPOINT_URL_SSM").unwrap())
            .env("FLAKEFLEET_DOCUMENT", "ApplyNixosDocument")
            .env("FLAKEFLEET_ALLOWED_FLAKES", "AcmeCorp/infra")
            .env("FLAKEFLEET_WRITERS", DEPLOY_ROLE)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the bootstrap starts");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let lines = log.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, api, spawned, log }
    }

    /// Sends one event; answers the response and how long it took from the event's hand-over.
    async fn invoke(&self, event: Value) -> (Value, Duration) {
        let sent = Instant::now();
        // Generous: moto answers a 1,000-instance DescribeInstances page in seconds.
        let answer = self.api.invoke(event, Duration::from_secs(900)).await;
        (answer, sent.elapsed())
    }

    fn init_time(&self) -> Duration {
        self.api.first_poll.lock().unwrap().expect("the runtime polled") - self.spawned
    }

    /// The `aws_calls` and `aws_ms` of the n-th invocation's "invocation done" line.
    async fn calls(&self, n: usize) -> (String, f64) {
        for _ in 0..100 {
            let log = self.log.lock().unwrap().clone();
            let done: Vec<Value> = log
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["message"] == "invocation done")
                .collect();
            if let Some(line) = done.get(n) {
                return (
                    line["aws_calls"].as_str().unwrap_or("?").to_owned(),
                    line["aws_ms"].as_f64().unwrap_or(f64::NAN),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ("?".into(), f64::NAN)
    }

    /// CPU time the process has used (user + system), at the kernel's 10 ms tick.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// A number field of the first log line with this message.
    fn logged(&self, message: &str, field: &str) -> Option<f64> {
        let log = self.log.lock().unwrap().clone();
        log.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == message)
            .and_then(|l| l[field].as_f64())
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn function_url(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string("events/function-url-deploy.json").unwrap()).unwrap();
    event["rawPath"] = path.into();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["body"] = body.map_or(Value::Null, |b| b.to_string().into());
    event
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, python, aws] = args.as_slice() else {
        panic!("usage: bench <bootstrap> <python with boto3> <aws cli>");
    };
    let table = "flakefleet-bench";
    // BENCH_ONLY=side,sizes,warm,convergence,reconcile,flood (any of them) runs those sections.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runs = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    if runs("side") {
        side_by_side(bootstrap, python, aws, table).await;
    }
    if runs("sizes") {
        deploy_by_size(bootstrap, python, table).await;
    }
    if runs("warm") {
        warm_up_table(bootstrap, python, table).await;
    }
    if runs("convergence") {
        convergence_table(bootstrap, python, table).await;
    }
    if runs("reconcile") {
        reconcile_table(bootstrap, python, table).await;
    }
    if runs("flood") {
        flood(bootstrap, python, table).await;
    }
}

/// github-oidc mode puts the URL on the internet: how fast one execution
/// answers junk with 401, and how a bounded flood delays a reconcile queued
/// behind it on that execution.
async fn flood(bootstrap: &str, python: &str, table: &str) {
    fresh_emulators(python, table, &[(3, "bench-flood")]);
    let lambda = Lambda::start(
        bootstrap,
        &[
            ("FLAKEFLEET_TABLE", table.to_owned()),
            ("FLAKEFLEET_FLEET", "flood".to_owned()),
            ("FLAKEFLEET_TARGET_TAG_VALUE", "bench-flood".to_owned()),
            ("FLAKEFLEET_AUTH", "github-oidc".to_owned()),
            ("FLAKEFLEET_OIDC_AUDIENCE", "flakefleet-bench".to_owned()),
            ("FLAKEFLEET_OIDC_REPOSITORY_ID", "1".to_owned()),
            ("FLAKEFLEET_OIDC_REPOSITORY_OWNER_ID", "2".to_owned()),
            // Never fetched: a request without a token is refused before any key is needed.
            ("FLAKEFLEET_OIDC_JWKS_URL", "http://127.0.0.1:9/jwks".to_owned()),
        ],
    )
    .await;
    let mut junk = function_url("POST", "/releases", Some(json!({ "flakeref": RELEASE })));
    junk["requestContext"]["authorizer"] = Value::Null;
    if let Some(headers) = junk["headers"].as_object_mut() {
        headers.retain(|name, _| !name.eq_ignore_ascii_case("authorization"));
    }
    let reconcile = json!({"action": "reconcile"});
    lambda.invoke(reconcile.clone()).await;
    let mut per_401 = Vec::new();
    for _ in 0..2_000 {
        let (answer, took) = lambda.invoke(junk.clone()).await;
        assert_eq!(answer["statusCode"], 401, "{answer}");
        per_401.push(took);
    }
    let mut alone = Vec::new();
    for _ in 0..20 {
        alone.push(lambda.invoke(reconcile.clone()).await.1);
    }
    let (d401, alone) = (median(per_401), median(alone));
    let capacity = 1.0 / d401.as_secs_f64();
    println!("### A flood of unauthenticated requests (github-oidc mode)\n");
    println!("One warm release `bootstrap` behind the bench's Runtime API, as one Lambda execution. A request");
    println!("without a token is answered 401 in a median {} ms from hand-over to answer (2,000 requests),", ms(d401));
    println!(
        "so one execution absorbs about {capacity:.0} such requests a second; a reconcile alone takes {} ms.",
        ms(alone)
    );
    println!("Then a 3 s flood at a share of that capacity, with one scheduled reconcile queued 1 s in:\n");
    println!("| flood (req/s) | share of one execution | reconcile answered after (ms) | 401s answered |");
    println!("|---:|---:|---:|---:|");
    for share in [0.25, 0.5, 0.9, 1.5] {
        let rate = capacity * share;
        let gap = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        let lambda = &lambda;
        let sender = async {
            let mut answered = 0usize;
            let mut inflight = futures::stream::FuturesUnordered::new();
            let mut next = Instant::now();
            // Sends on schedule while polling what is in flight, so each request is handed over when due.
            while started.elapsed() < Duration::from_secs(3) {
                if Instant::now() >= next {
                    inflight.push(lambda.invoke(junk.clone()));
                    next += gap;
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    Some((answer, _)) = futures::StreamExt::next(&mut inflight), if !inflight.is_empty() => {
                        answered += usize::from(answer["statusCode"] == 401);
                    }
                }
            }
            while let Some((answer, _)) = futures::StreamExt::next(&mut inflight).await {
                answered += usize::from(answer["statusCode"] == 401);
            }
            answered
        };
        let scheduled = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            lambda.invoke(reconcile.clone()).await.1
        };
        let (answered, waited) = tokio::join!(sender, scheduled);
        println!("| {rate:.0} | {:.0}% | {} | {answered} |", share * 100.0, ms(waited));
    }
    println!();
}

async fn side_by_side(bootstrap: &str, python: &str, aws: &str, table: &str) {
    // Side by side first, while the emulators hold only these 10 instances.
    fresh_emulators(python, table, &[(10, "bench-10")]);
    println!("### The demo's deploy path against flakefleet's, same emulator\n");
    println!("`aws ssm send-command` (awscli, as the demo's workflow runs it) against the SSM simulator, and a");
    println!("flakefleet deploy request (records the release, takes the lease, sends the command, records it)");
    println!("handled by a warm release `bootstrap` (after one `GET /healthz`), to the same 10 instances.");
    println!("Five runs each; medians. \"waiting on AWS\" is the time flakefleet's SDK clients spent between");
    println!("handing a request to HTTP and reading the answer's head, i.e. the emulators' share.\n");
    let sim = std::env::var("AWS_ENDPOINT_URL_SSM").unwrap();
    let mut demo = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let targets = "Key=tag:Name,Values=bench-10";
        let parameters = format!("flakeref={RELEASE},action=switch");
        let region = ["--region", "us-east-1", "--output", "json", "--endpoint-url", &sim];
        let command = ["ssm", "send-command", "--document-name", "ApplyNixosDocument", "--targets", targets];
        run(aws, &[&command[..], &["--parameters", &parameters], &region[..]].concat());
        demo.push(started.elapsed());
    }
    let (mut ours, mut waiting) = (Vec::new(), Vec::new());
    for run_no in 0..5 {
        let env = [
            ("FLAKEFLEET_TABLE", table.to_owned()),
            ("FLAKEFLEET_FLEET", format!("side-{run_no}")),
            ("FLAKEFLEET_TARGET_TAG_VALUE", "bench-10".to_owned()),
        ];
        let lambda = Lambda::start(bootstrap, &env).await;
        lambda.invoke(function_url("GET", "/healthz", None)).await;
        let (answer, took) =
            lambda.invoke(function_url("POST", "/releases", Some(json!({ "flakeref": RELEASE })))).await;
        assert_eq!(answer["statusCode"], 202, "{answer}");
        ours.push(took);
        waiting.push(Duration::from_secs_f64(lambda.calls(1).await.1 / 1000.0));
    }
    let (demo, ours, waiting) = (median(demo), median(ours), median(waiting));
    println!("| path | median ms |");
    println!("|---|---:|");
    println!("| `aws ssm send-command` (awscli process) | {} |", ms(demo));
    println!("| flakefleet `POST /releases`, whole request | {} |", ms(ours));
    println!("| of which waiting on AWS (the emulators) | {} |", ms(waiting));
    println!(
        "\nflakefleet's whole request takes {:.2}x the demo's call (target: at most 0.25x).\n",
        ours.as_secs_f64() / demo.as_secs_f64()
    );
}

async fn deploy_by_size(bootstrap: &str, python: &str, table: &str) {
    println!("### Cold start and one deploy request per fleet size\n");
    println!("Each row: the emulators restarted holding only a fleet of N instances, then a fresh process of");
    println!("the release `bootstrap` with `FLAKEFLEET_WARM_CONNECTIONS=false`. Init is spawn to its first poll of");
    println!("the Runtime API (configuration read, SDK config loaded, clients built; no connection opened); first event is spawn to the answer of");
    println!("`GET /healthz` (no AWS call); then one `POST /releases`, its AWS calls and the part of its time");
    println!("spent waiting on the emulators. Peak RSS is the process's high-water mark.\n");
    println!("| instances | init ms | first event ms | deploy request ms | waiting on AWS ms | flakefleet's own ms | AWS calls of the deploy | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---|---:|");
    for size in [10usize, 100, 1000, 5000] {
        let tag = format!("bench-{size}");
        fresh_emulators(python, table, &[(size, &tag)]);
        let env = [
            ("FLAKEFLEET_TABLE", table.to_owned()),
            ("FLAKEFLEET_FLEET", format!("size-{size}")),
            ("FLAKEFLEET_TARGET_TAG_VALUE", tag),
            // Init without the warm-up; the warm-up is measured on its own.
            ("FLAKEFLEET_WARM_CONNECTIONS", "false".to_owned()),
        ];
        let lambda = Lambda::start(bootstrap, &env).await;
        let (health, _) = lambda.invoke(function_url("GET", "/healthz", None)).await;
        assert_eq!(health["statusCode"], 200, "{health}");
        let first_event = lambda.spawned.elapsed();
        let (answer, deploy) =
            lambda.invoke(function_url("POST", "/releases", Some(json!({ "flakeref": RELEASE })))).await;
        assert_eq!(answer["statusCode"], 202, "{answer}");
        let (calls, aws_ms) = lambda.calls(1).await;
        println!(
            "| {size} | {} | {} | {} | {aws_ms:.1} | {:.1} | {calls} | {:.1} |",
            ms(lambda.init_time()),
            ms(first_event),
            ms(deploy),
            deploy.as_secs_f64() * 1000.0 - aws_ms,
            lambda.peak_rss_kib() as f64 / 1024.0
        );
    }
}

async fn convergence_table(bootstrap: &str, python: &str, table: &str) {
    println!("\n### Rollout convergence: 100 instances, each apply 10 s\n");
    println!("A staged rollout (canary of 1, then waves) to 100 instances in the simulator, every apply taking");
    println!("10 s; the reconcile invoked every second, as SSM's status-change events would. Target: within 4x");
    println!("one apply (40 s).\n");
    println!("| wave size | waves | time to succeeded | x one apply | invocations | AWS calls in all |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (wave, waves) in [("50%", 3), ("25%", 5)] {
        let (elapsed, invocations, calls) = convergence(bootstrap, python, table, wave).await;
        println!(
            "| {wave} | {waves} | {:.1} s | {:.1} | {invocations} | {calls} |",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() / 10.0
        );
    }
}

/// A staged rollout to 100 instances whose apply takes 10 s (the demo's
/// "subsequent deploy"), the reconcile invoked every second as SSM's
/// status-change events would: how long until the release is final.
async fn convergence(bootstrap: &str, python: &str, table: &str, wave: &str) -> (Duration, usize, u64) {
    fresh_emulators(python, table, &[(100, "bench-conv")]);
    run(python, &["dev/fleet.py", "outcome", r#"{"outcome": "success", "delay_seconds": 10}"#]);
    let env = [
        ("FLAKEFLEET_TABLE", table.to_owned()),
        ("FLAKEFLEET_FLEET", "conv".to_owned()),
        ("FLAKEFLEET_TARGET_TAG_VALUE", "bench-conv".to_owned()),
        ("FLAKEFLEET_WAVE_SIZE", wave.to_owned()),
    ];
    let lambda = Lambda::start(bootstrap, &env).await;
    let started = Instant::now();
    let (deployed, _) = lambda.invoke(function_url("POST", "/releases", Some(json!({ "flakeref": RELEASE })))).await;
    assert_eq!(deployed["statusCode"], 202, "{deployed}");
    let schedule: Value =
        serde_json::from_str(&std::fs::read_to_string("events/eventbridge-scheduled.json").unwrap()).unwrap();
    let mut invocations = 1;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (answer, _) = lambda.invoke(schedule.clone()).await;
        invocations += 1;
        if matches!(answer["reconcile"]["outcome"].as_str(), Some("finished" | "idle")) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no convergence: {answer}");
    }
    let elapsed = started.elapsed();
    let release: Value = serde_json::from_str(deployed["body"].as_str().unwrap()).unwrap();
    let id = release["release"]["id"].as_str().unwrap();
    let (release, _) = lambda.invoke(function_url("GET", &format!("/releases/{id}"), None)).await;
    let release: Value = serde_json::from_str(release["body"].as_str().unwrap()).unwrap();
    assert_eq!(release["release"]["status"], "succeeded", "{release}");
    let mut calls = 0;
    for n in 0..invocations {
        calls += lambda.calls(n).await.0.split(' ').next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    }
    (elapsed, invocations, calls)
}

/// Init and the first deploy request of fresh processes, with and without
/// opening the three services' connections during init.
async fn warm_up_table(bootstrap: &str, python: &str, table: &str) {
    println!("\n### Connection warm-up during init\n");
    println!("Five fresh processes each way against 10 instances. Warm-up is one cheap call per service at");
    println!("once (GetItem of a key that does not exist, DescribeInstances of a made-up id, ListCommands of one),");
    println!("counted apart from the first invocation. Locally there is no TLS, so this shows its cost more");
    println!("than its gain: against AWS each first connection also pays a TLS handshake.\n");
    println!("| warm-up | init ms (median) | of which warm-up ms | first deploy request ms (median) | its waiting on AWS ms |");
    println!("|---|---:|---:|---:|---:|");
    fresh_emulators(python, table, &[(10, "bench-warm")]);
    for warm in ["false", "true"] {
        let (mut init, mut warm_ms, mut deploy, mut waiting) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run_no in 0..5 {
            let env = [
                ("FLAKEFLEET_TABLE", table.to_owned()),
                ("FLAKEFLEET_FLEET", format!("warm-{warm}-{run_no}")),
                ("FLAKEFLEET_TARGET_TAG_VALUE", "bench-warm".to_owned()),
                ("FLAKEFLEET_WARM_CONNECTIONS", warm.to_owned()),
            ];
            let lambda = Lambda::start(bootstrap, &env).await;
            let (answer, took) =
                lambda.invoke(function_url("POST", "/releases", Some(json!({ "flakeref": RELEASE })))).await;
            assert_eq!(answer["statusCode"], 202, "{answer}");
            init.push(lambda.init_time());
            deploy.push(took);
            waiting.push(Duration::from_secs_f64(lambda.calls(0).await.1 / 1000.0));
            warm_ms
                .push(Duration::from_secs_f64(lambda.logged("connections warmed", "warm_ms").unwrap_or(0.0) / 1000.0));
        }
        println!(
            "| {} | {} | {} | {} | {} |",
            if warm == "true" { "on" } else { "off (default)" },
            ms(median(init)),
            ms(median(warm_ms)),
            ms(median(deploy)),
            ms(median(waiting))
        );
    }
}

/// The reconcile alone driving a default staged rollout (canary, then waves)
/// across `size` instances whose applies succeed at once, then one idle
/// reconcile: the repair check over the whole fleet.
async fn reconcile_table(bootstrap: &str, python: &str, table: &str) {
    println!("\n### Reconcile of large fleets\n");
    println!("Per fleet size: the emulators restarted holding only that fleet (one instance per reservation),");
    println!("a fresh release `bootstrap` with the defaults (staged: canary 1, then 50% waves) and");
    println!("`FLAKEFLEET_DESIRED_CAPACITY` = the fleet's size; one `POST /releases`, then the scheduled");
    println!("reconcile every second until the release is final, then one more reconcile, the idle repair check.");
    println!("Only invocations that did something are listed (\"waiting\" ones cost one GetItem, one release read).");
    println!("Own ms is the invocation's time minus its time waiting on the emulators (which still holds");
    println!("reading the emulators' answers, e.g. a 1,000-instance DescribeInstances page of several MB from");
    println!("moto); CPU ms is the process's user + system time in the invocation (10 ms ticks). Peak RSS is");
    println!("the process's high-water mark over the whole run.\n");
    let sizes: Vec<usize> = std::env::var("BENCH_RECONCILE_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_RECONCILE_SIZES: comma-separated sizes"))
        .collect();
    for size in sizes {
        let tag = format!("bench-rec-{size}");
        fresh_emulators(python, table, &[(size, &tag)]);
        let env = [
            ("FLAKEFLEET_TABLE", table.to_owned()),
            ("FLAKEFLEET_FLEET", format!("rec-{size}")),
            ("FLAKEFLEET_TARGET_TAG_VALUE", tag),
            ("FLAKEFLEET_DESIRED_CAPACITY", size.to_string()),
        ];
        let lambda = Lambda::start(bootstrap, &env).await;
        let schedule: Value =
            serde_json::from_str(&std::fs::read_to_string("events/eventbridge-scheduled.json").unwrap()).unwrap();
        println!("#### {size} instances\n");
        println!("| invocation | outcome | ms | waiting on AWS ms | own ms | CPU ms | AWS calls |");
        println!("|---|---|---:|---:|---:|---:|---|");
        let started = Instant::now();
        let cpu = lambda.cpu();
        let (answer, took) =
            lambda.invoke(function_url("POST", "/releases", Some(json!({ "flakeref": RELEASE })))).await;
        assert_eq!(answer["statusCode"], 202, "{answer}");
        let (calls, aws_ms) = lambda.calls(0).await;
        let cpu = (lambda.cpu() - cpu).as_millis();
        let own = ms_f(took) - aws_ms;
        println!("| `POST /releases` | 202 | {} | {aws_ms:.1} | {own:.1} | {cpu} | {calls} |", ms(took));
        let (mut invocation, mut finished, mut totals) = (1, false, std::collections::BTreeMap::<String, u64>::new());
        let mut max_cpu = cpu;
        add_calls(&mut totals, &calls);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let cpu = lambda.cpu();
            let (answer, took) = lambda.invoke(schedule.clone()).await;
            let (calls, aws_ms) = lambda.calls(invocation).await;
            let cpu = (lambda.cpu() - cpu).as_millis();
            max_cpu = max_cpu.max(cpu);
            invocation += 1;
            add_calls(&mut totals, &calls);
            let outcome = answer["reconcile"]["outcome"].as_str().unwrap_or("?").to_owned();
            if outcome != "waiting" {
                let own = ms_f(took) - aws_ms;
                println!(
                    "| reconcile {invocation} | {outcome} | {} | {aws_ms:.1} | {own:.1} | {cpu} | {calls} |",
                    ms(took)
                );
            }
            if finished {
                break;
            }
            finished = matches!(outcome.as_str(), "finished" | "rolled_back");
            assert!(outcome != "idle", "the rollout ended unseen: {answer}");
            assert!(started.elapsed() < Duration::from_secs(3600), "no end: {answer}");
        }
        let list = |m: &std::collections::BTreeMap<String, u64>| {
            m.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
        };
        println!(
            "\n{size} instances: {invocation} invocations in {:.1} s; most CPU in one invocation {max_cpu} ms; \
             AWS calls in all: {}; peak RSS {:.1} MiB.\n",
            started.elapsed().as_secs_f64(),
            list(&totals),
            lambda.peak_rss_kib() as f64 / 1024.0
        );
        // Exactly once at scale: apply commands per instance for this release.
        let sends: Value = serde_json::from_str(&run(python, &["dev/fleet.py", "sends", RELEASE])).unwrap();
        let instances: u64 = sends.as_object().unwrap().values().filter_map(Value::as_u64).sum();
        println!(
            "{size} instances: apply commands per instance {sends} ({instances} instances reached; \"1\": n means n instances got exactly one).\n"
        );
        assert_eq!(sends.as_object().unwrap().keys().collect::<Vec<_>>(), ["1"], "an instance got two commands");
        // The status-change events the simulator emitted for this rollout, as
        // AWS would, and how many the template's rule sends to the Lambda:
        // the invocations a rollout costs when events, not the schedule, move it.
        std::thread::sleep(Duration::from_millis(500));
        let events = sim_events();
        println!(
            "{size} instances, through events: the template's rule matches {} events (one per command that \
             ended), so {} reconcile invocations; AWS emitted {} per-instance events, which a rule on \
             per-instance events would have turned into as many invocations.\n",
            events["matched"],
            events["matched"],
            events["emitted"]["EC2 Command Invocation Status-change Notification"]
        );
    }
}

/// The SSM simulator's event report (`GET /_sim/events`).
fn sim_events() -> Value {
    use std::io::{Read, Write};
    let url = std::env::var("AWS_ENDPOINT_URL_SSM").expect("AWS_ENDPOINT_URL_SSM");
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(stream, "GET /_sim/events HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("{}")).unwrap()
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Adds an `aws_calls` summary ("12 (DynamoDB.GetItem 2, ...)") to running totals.
fn add_calls(totals: &mut std::collections::BTreeMap<String, u64>, calls: &str) {
    let inner = calls.split_once('(').map_or("", |(_, rest)| rest.trim_end_matches(')'));
    for part in inner.split(", ").filter(|p| !p.is_empty()) {
        if let Some((op, n)) = part.rsplit_once(' ') {
            *totals.entry(op.to_owned()).or_default() += n.parse::<u64>().unwrap_or(0);
        }
    }
}

/// Restarts moto and the simulator empty, then creates the table and the fleets.
fn fresh_emulators(python: &str, table: &str, fleets: &[(usize, &str)]) {
    run("bash", &["dev/local-aws.sh", "stop"]);
    run("bash", &["dev/local-aws.sh", "start"]);
    run(python, &["dev/fleet.py", "table", table]);
    for (size, tag) in fleets {
        // One instance per reservation, so moto pages DescribeInstances as EC2 does.
        let ids = run(python, &["dev/fleet.py", "instances", &size.to_string(), &format!("Name={tag}"), "1"]);
        // Their agents register at once: the bench measures flakefleet, not boot time.
        let mut args = vec!["dev/fleet.py", "agents", "Online"];
        args.extend(ids.split_whitespace());
        run(python, &args);
    }
}
