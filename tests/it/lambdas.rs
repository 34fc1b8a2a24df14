//! Several copies of the Lambda at once, as AWS runs them: the debug binary
//! the tests build (`flakefleet-lambda`), each process behind its own minimal
//! Runtime API, all on one table and one fleet of the local AWS. `cargo lambda
//! watch` runs one invocation at a time, so races only show here.

use crate::runtime_api::{lambda_process, RuntimeApi};
use crate::support::{endpoint, sample_event, Stack, ALLOWED_FLAKES, DEPLOY_ROLE};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;

/// One Lambda process and the Runtime API it polls.
struct Process {
    child: Child,
    api: RuntimeApi,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Lambdas {
    processes: Vec<Process>,
    /// Where the processes' logs go (one file for all, for a failing test).
    pub log: std::path::PathBuf,
}

impl Lambdas {
    /// `count` processes configured for `stack`'s table and fleet: staged
    /// (a canary of one, then the rest), automatic rollback, IAM auth with
    /// the sample events' signer as the writer, and `env` on top.
    pub async fn start(stack: &Stack, count: usize, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", stack.table));
        let file = std::fs::File::create(&log).unwrap();
        let mut processes = Vec::new();
        for _ in 0..count {
            let api = RuntimeApi::start().await;
            let child = lambda_process(env!("CARGO_BIN_EXE_flakefleet-lambda"), &api, "flakefleet")
                .env("AWS_ENDPOINT_URL", endpoint("FLAKEFLEET_TEST_MOTO_URL"))
                .env("AWS_ENDPOINT_URL_SSM", endpoint("FLAKEFLEET_TEST_SSM_URL"))
                .env("FLAKEFLEET_TABLE", &stack.table)
                .env("FLAKEFLEET_FLEET", stack.fleet.as_str())
                .env("FLAKEFLEET_TARGET_TAG_KEY", &stack.tag.key)
                .env("FLAKEFLEET_TARGET_TAG_VALUE", &stack.tag.value)
                .env("FLAKEFLEET_DOCUMENT", crate::support::DOCUMENT)
                .env("FLAKEFLEET_ALLOWED_FLAKES", ALLOWED_FLAKES)
                .env("FLAKEFLEET_WRITERS", DEPLOY_ROLE)
                .env("FLAKEFLEET_ROLLOUT", "staged")
                .env("FLAKEFLEET_WAVE_SIZE", "100%")
                .env("FLAKEFLEET_LOG_FORMAT", "text")
                // The debug build's EC2 deserialiser wants more stack than a
                // worker thread's 2 MiB (see dev/test.sh).
                .env("RUST_MIN_STACK", "8388608")
                .envs(env.iter().copied())
                .stdout(Stdio::from(file.try_clone().unwrap()))
                .stderr(Stdio::from(file.try_clone().unwrap()))
                .spawn()
                .expect("the Lambda binary starts");
            processes.push(Process { child, api });
        }
        // Every process through its init before any event: events handed
        // over together are then handled together.
        for process in &processes {
            for _ in 0..600 {
                if process.api.first_poll.lock().unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Self { processes, log }
    }

    /// Kills process `n` (SIGKILL), as a Lambda that dies mid-invocation.
    pub fn kill(&mut self, n: usize) {
        let process = &mut self.processes[n];
        process.child.kill().expect("the Lambda process is killed");
        let _ = process.child.wait();
    }

    /// Hands process `n` one event; answers its response.
    pub async fn invoke(&self, n: usize, event: Value) -> Value {
        self.processes[n].api.invoke(event, Duration::from_secs(120)).await
    }

    /// Event `i` to process `i`, all at once; answers each response in order.
    pub async fn at_once(&self, events: Vec<Value>) -> Vec<Value> {
        futures::future::join_all(events.into_iter().enumerate().map(|(n, event)| self.invoke(n, event))).await
    }
}

/// A function URL request as the sample event's signer makes it.
pub fn request(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut event = sample_event("function-url-deploy.json");
    event["rawPath"] = path.into();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["body"] = body.map_or(Value::Null, |b| b.to_string().into());
    event
}

/// A function URL response's status and JSON body.
pub fn answer(response: &Value) -> (u64, Value) {
    let body = response["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    (response["statusCode"].as_u64().unwrap_or(0), body)
}

/// The scheduled reconcile, as EventBridge Scheduler sends it.
pub fn scheduled() -> Value {
    sample_event("eventbridge-scheduled.json")
}
