//! `flakefleet`: the operator CLI. Calls a deployment's function URL with
//! SigV4-signed requests; tables for people, `--json` for scripts.
//! Exit codes: 0 done; 1 the release failed, was rolled back or halted;
//! 2 the request was refused or could not be made.

use clap::{Parser, Subcommand};
use flakefleet::cli::{outcome, render, FunctionUrl};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "flakefleet", version, about = "Deploy, inspect and roll back a NixOS fleet through flakefleet")]
struct Cli {
    /// The function URL (the stack's FunctionUrl output).
    #[arg(long, env = "FLAKEFLEET_URL", global = true)]
    url: Option<String>,
    /// AWS region to sign for (default: the SDK's, e.g. AWS_REGION).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy an exact FlakeHub release: <org>/<flake>/=<version>#<attribute path>.
    Deploy {
        flakeref: String,
        /// The git commit it was built from.
        #[arg(long)]
        revision: Option<String>,
        /// Makes a retried deploy return the same release.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Deploy even while a rollback alarm is in ALARM (recorded on the release).
        #[arg(long)]
        ignore_alarms: bool,
        /// Deploy to these instances only (comma-separated or repeated; at most
        /// 50): a targeted release, never the fleet's desired one.
        #[arg(long = "on", value_delimiter = ',')]
        on: Vec<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// List releases, newest first.
    Releases {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one release with its per-instance outcomes.
    Show { release_id: String },
    /// Apply an earlier release again (default: the last good one before the current release).
    Rollback {
        release_id: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Hold a staged rollout's next wave; waves in flight finish.
    Pause { release_id: String },
    /// Let a paused rollout's next wave start (after an automatic pause: the promote).
    Resume { release_id: String },
    /// Stop a rollout: roll back what it reached if automatic rollback is on
    /// (or with --rollback); otherwise the fleet is left as it is, halted.
    Abort {
        release_id: String,
        #[arg(long)]
        rollback: bool,
    },
    /// The fleet: desired and last good release, rollout in progress, halted, instances.
    Fleet,
    /// Run one reconcile now.
    Reconcile,
}

#[derive(clap::Args)]
struct Wait {
    /// Wait for the release's outcome; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
    /// Seconds between polls while waiting.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Also run a reconcile on each poll (for a local stack without the EventBridge schedule).
    #[arg(long)]
    drive: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(url) = cli.url.clone() else {
        eprintln!("flakefleet: set --url or FLAKEFLEET_URL to the function URL (the stack's FunctionUrl output)");
        return ExitCode::from(2);
    };
    let client = match FunctionUrl::new(&url, cli.region.clone()).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("flakefleet: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&cli, &client).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("flakefleet: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli, client: &FunctionUrl) -> Result<ExitCode, String> {
    let session = Session { cli, client };
    let (answer, wait) = match &cli.command {
        Command::Deploy { flakeref, revision, idempotency_key, ignore_alarms, on, wait } => {
            let ignore = ignore_alarms.then_some(true);
            let on = (!on.is_empty()).then_some(on);
            let body = json!({ "flakeref": flakeref, "revision": revision, "idempotency_key": idempotency_key,
                "ignore_alarms": ignore, "instance_ids": on });
            let body =
                Value::Object(body.as_object().unwrap().clone().into_iter().filter(|(_, v)| !v.is_null()).collect());
            (session.call("POST", "/releases".into(), Some(body)).await?, wait)
        }
        Command::Rollback { release_id, wait } => {
            let body = release_id.as_ref().map(|id| json!({ "release_id": id }));
            (session.call("POST", "/rollback".into(), body).await?, wait)
        }
        Command::Releases { limit, cursor } => {
            let query = match cursor {
                Some(c) => format!("/releases?limit={limit}&cursor={c}"),
                None => format!("/releases?limit={limit}"),
            };
            session.print(&session.call("GET", query, None).await?, render::releases, "");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Show { release_id } => {
            let answer = session.call("GET", format!("/releases/{release_id}"), None).await?;
            session.print(&answer, render::release, "release");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Fleet => {
            session.print(&session.call("GET", "/fleet".into(), None).await?, render::fleet, "fleet");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Pause { release_id } | Command::Resume { release_id } | Command::Abort { release_id, .. } => {
            let (verb, body) = match &cli.command {
                Command::Pause { .. } => ("pause", None),
                Command::Resume { .. } => ("resume", None),
                _ => (
                    "abort",
                    matches!(cli.command, Command::Abort { rollback: true, .. }).then(|| json!({"rollback": true})),
                ),
            };
            let answer = session.call("POST", format!("/releases/{release_id}/{verb}"), body).await?;
            session.print(&answer, render::release, "release");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Reconcile => {
            session.print(&session.call("POST", "/reconcile".into(), None).await?, render::reconcile, "reconcile");
            return Ok(ExitCode::SUCCESS);
        }
    };
    if !wait.wait {
        session.print(&answer, render::release, "release");
        return Ok(ExitCode::SUCCESS);
    }
    session.wait_for_outcome(answer["release"].clone(), wait).await
}

/// One command's calls to the function URL and what it prints.
struct Session<'a> {
    cli: &'a Cli,
    client: &'a FunctionUrl,
}

impl Session<'_> {
    /// The answer of a 2xx; otherwise the API's error code and message.
    async fn call(&self, method: &'static str, path: String, body: Option<Value>) -> Result<Value, String> {
        let (status, answer) = self.client.call(method, &path, body.as_ref()).await.map_err(|e| e.to_string())?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let code = answer["error"].as_str().unwrap_or("error");
        Err(format!("{status} {code}: {}", answer["message"].as_str().unwrap_or("")))
    }

    fn print(&self, answer: &Value, table: fn(&Value) -> String, field: &str) {
        if self.cli.json {
            println!("{answer}");
        } else {
            print!("{}", table(if field.is_empty() { answer } else { &answer[field] }));
        }
    }

    /// Polls the release (reconciling first with `--drive`) until it is final,
    /// printing each change of progress; exit 1 unless it succeeded.
    async fn wait_for_outcome(&self, release: Value, wait: &Wait) -> Result<ExitCode, String> {
        if !self.cli.json {
            eprintln!("{}", render::progress(&release));
        }
        let id = release["id"].as_str().unwrap_or_default().to_owned();
        let mut last = render::progress(&release);
        let mut current = release;
        while outcome(current["status"].as_str().unwrap_or_default()).is_none() {
            tokio::time::sleep(Duration::from_secs(wait.interval)).await;
            if wait.drive {
                self.call("POST", "/reconcile".into(), None).await?;
            }
            current = self.call("GET", format!("/releases/{id}"), None).await?["release"].clone();
            let line = render::progress(&current);
            if line != last && !self.cli.json {
                eprintln!("{line}");
            }
            last = line;
        }
        self.print(&json!({ "release": current }), render::release, "release");
        let ok = outcome(current["status"].as_str().unwrap_or_default()) == Some(true);
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}
