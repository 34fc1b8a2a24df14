//! `flakefleet`: the operator CLI. Calls a deployment's function URL with
//! SigV4-signed requests; tables for people, `--json` for scripts.
//! Exit codes (`flakefleet::cli::exit::Exit`): 0 done; 1 the release failed,
//! was rolled back or halted; 2 usage or local set-up; 3 refused (4xx);
//! 4 unreachable or 5xx; 5 a wait timed out.

use clap::{CommandFactory, Parser, Subcommand};
use flakefleet::api;
use flakefleet::cli::exit::{Exit, Failure};
use flakefleet::cli::progress::{clock, Progress};
use flakefleet::cli::{render, FunctionUrl};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "flakefleet",
    version,
    about = "Deploy, watch, inspect and roll back a NixOS fleet through flakefleet",
    after_help = "Exit codes: 0 done; 1 the release failed, was rolled back or halted the fleet; 2 usage or local \
                  set-up (URL, region, credentials); 3 refused (a 4xx: nothing was done); 4 unreachable or a 5xx; \
                  5 a wait timed out (the release goes on)."
)]
struct Cli {
    /// The function URL (the stack's FunctionUrl output).
    #[arg(long, env = "FLAKEFLEET_URL", global = true)]
    url: Option<String>,
    /// AWS region to sign for (default: the one in the URL's host, else AWS_REGION or the profile's).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Named AWS profile for credentials (SSO and credential_process profiles work; default: AWS_PROFILE).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Print the API's JSON instead of tables; errors become one JSON line too.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy an exact FlakeHub release to the fleet (or to named instances).
    Deploy {
        /// The exact release: <org>/<flake>/=<version>#<attribute path>.
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
        trace: Trace,
        #[command(flatten)]
        wait: Wait,
    },
    /// List releases, newest first.
    Releases {
        /// How many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Where the previous page ended (its `more: --cursor` line).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one release: its waves and their SSM command ids, per-instance outcomes, launches.
    Show {
        /// The release id (from `releases` or a deploy's output).
        release_id: String,
        /// Follow it to its end, as `watch` does.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// Follow any release to its end (whoever started it); exit 0 only if it succeeded.
    Watch {
        /// The release id.
        release_id: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// Apply an earlier release again (default: the last good one before the current release).
    Rollback {
        /// The release to put back (default: the last that succeeded before the fleet's current one).
        release_id: Option<String>,
        /// Makes a retried rollback return the same release.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        trace: Trace,
        #[command(flatten)]
        wait: Wait,
    },
    /// Hold a staged rollout's next wave; waves in flight finish.
    Pause {
        /// The release in progress.
        release_id: String,
    },
    /// Let a paused rollout's next wave start (after an automatic pause: the promote).
    Resume {
        /// The paused release.
        release_id: String,
    },
    /// Stop a rollout: roll back what it reached if automatic rollback is on
    /// (or with --rollback); otherwise the fleet is left as it is, halted.
    Abort {
        /// The release in progress.
        release_id: String,
        /// Roll back what it reached, whatever the stack's automatic rollback setting.
        #[arg(long)]
        rollback: bool,
    },
    /// The fleet: desired and last good release, rollout in progress, halted, instances.
    Fleet,
    /// Run one reconcile now.
    Reconcile,
    /// Serve the fleet's status page on this machine, forwarding its API calls
    /// to the function URL signed with your credentials (read-only unless --allow-writes).
    Ui {
        /// Where to listen. Anything but a loopback address lets other machines
        /// borrow your credentials through it (with a session): it needs --public-host.
        #[arg(long, default_value = "127.0.0.1:8750")]
        listen: std::net::SocketAddr,
        /// The host name browsers use to reach a non-loopback --listen (the
        /// only Host it answers to). The page is plain HTTP: prefer SSH forwarding, or TLS in front.
        #[arg(long, value_name = "NAME[:PORT]")]
        public_host: Option<String>,
        /// Open the page in the default browser (through a file only you can read, never the link in argv).
        #[arg(long)]
        open: bool,
        /// Let the page roll the fleet back to a release (with a confirmation); otherwise it only reads.
        #[arg(long)]
        allow_writes: bool,
    },
    /// Print a shell completion script (e.g. `flakefleet completions bash > /etc/bash_completion.d/flakefleet`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where a release came from, recorded on it (the workflows fill both).
#[derive(clap::Args)]
struct Trace {
    /// The CI run (or ticket) that asked for it: an https URL.
    #[arg(long)]
    run_url: Option<String>,
    /// Why, in one line (e.g. the commit message's first line).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(clap::Args)]
struct Wait {
    /// Wait for the release's outcome; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    follow: Follow,
}

#[derive(clap::Args)]
struct Follow {
    /// Seconds between polls.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Give up waiting after this long (e.g. 30m, 2h); exit 5, the release goes on.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also run a reconcile on each poll (for a local stack without the EventBridge schedule).
    #[arg(long)]
    drive: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "flakefleet", &mut script);
        emit(&String::from_utf8_lossy(&script));
        return ExitCode::SUCCESS;
    }
    let exit = match connect(&cli).await {
        Ok(client) => match cli.command {
            Command::Ui { listen, public_host, open, allow_writes } => {
                ui(listen, public_host, open, allow_writes, client).await
            }
            _ => run(&Session { cli: &cli, client: &client }).await,
        },
        Err(failure) => Err(failure),
    };
    match exit {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(failure) => {
            report(&failure, cli.json);
            ExitCode::from(failure.exit.code())
        }
    }
}

async fn connect(cli: &Cli) -> Result<FunctionUrl, Failure> {
    let url = cli.url.clone().ok_or_else(|| {
        Failure::usage("set --url or FLAKEFLEET_URL to the function URL (the stack's FunctionUrl output)")
    })?;
    Ok(FunctionUrl::new(&url, cli.region.clone(), cli.profile.clone()).await?)
}

/// Set once stdout's reader is gone (`flakefleet releases | head`): what is
/// left to print is dropped, and the command still ends with its own code.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

fn emit(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Errors go to stderr for people, and to stdout as one JSON line with
/// `--json`, where a script reads the answer.
fn report(failure: &Failure, json: bool) {
    if json {
        emit(&format!("{}\n", failure.render(true)));
    } else {
        eprintln!("{}", failure.render(false));
    }
}

async fn run(session: &Session<'_>) -> Result<Exit, Failure> {
    let cli = session.cli;
    let (answer, wait) = match &cli.command {
        Command::Deploy { flakeref, revision, idempotency_key, ignore_alarms, on, trace, wait } => {
            let body = json!({ "flakeref": flakeref, "revision": revision, "idempotency_key": idempotency_key,
                "ignore_alarms": ignore_alarms.then_some(true), "instance_ids": (!on.is_empty()).then_some(on),
                "run_url": trace.run_url, "reason": trace.reason });
            (session.call("POST", "/releases".into(), Some(without_nulls(body))).await?, wait)
        }
        Command::Rollback { release_id, idempotency_key, trace, wait } => {
            let body = json!({ "release_id": release_id, "idempotency_key": idempotency_key,
                "run_url": trace.run_url, "reason": trace.reason });
            (session.call("POST", "/rollback".into(), Some(without_nulls(body))).await?, wait)
        }
        Command::Releases { limit, cursor } => {
            let query = match cursor {
                Some(c) => format!("/releases?limit={limit}&cursor={c}"),
                None => format!("/releases?limit={limit}"),
            };
            session.print::<api::ReleasePage>(&session.call("GET", query, None).await?, render::releases)?;
            return Ok(Exit::Done);
        }
        Command::Show { release_id, watch, follow } => {
            let answer = session.call("GET", format!("/releases/{release_id}"), None).await?;
            if *watch {
                return session.follow(decode::<api::ReleaseBody>(&answer)?.release, follow).await;
            }
            session.print::<api::ReleaseBody>(&answer, |b| render::release(&b.release))?;
            return Ok(Exit::Done);
        }
        Command::Watch { release_id, follow } => {
            let answer = session.call("GET", format!("/releases/{release_id}"), None).await?;
            return session.follow(decode::<api::ReleaseBody>(&answer)?.release, follow).await;
        }
        Command::Fleet => {
            let answer = session.call("GET", "/fleet".into(), None).await?;
            session.print::<api::FleetBody>(&answer, |b| render::fleet(&b.fleet))?;
            return Ok(Exit::Done);
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
            session.print::<api::ReleaseBody>(&answer, |b| render::release(&b.release))?;
            return Ok(Exit::Done);
        }
        Command::Reconcile => {
            let answer = session.call("POST", "/reconcile".into(), None).await?;
            session.print::<api::ReconcileBody>(&answer, |b| render::reconcile(&b.reconcile))?;
            return Ok(Exit::Done);
        }
        Command::Completions { .. } => unreachable!("answered before connecting"),
        Command::Ui { .. } => unreachable!("served by ui()"),
    };
    if !wait.wait {
        session.print::<api::ReleaseBody>(&answer, |b| render::release(&b.release))?;
        return Ok(Exit::Done);
    }
    session.follow(decode::<api::ReleaseBody>(&answer)?.release, &wait.follow).await
}

/// Serves the status page until stopped; prints its link, a one-time code
/// in it (and a new link each time one is used).
async fn ui(
    listen: std::net::SocketAddr,
    public_host: Option<String>,
    open: bool,
    allow_writes: bool,
    client: FunctionUrl,
) -> Result<Exit, Failure> {
    use flakefleet::cli::ui;
    let token = ui::new_token().map_err(Failure::usage)?;
    // Checked before binding: a refused --listen never opens a port.
    let refused = |e: ui::UiSetupError| Failure::usage(e.to_string());
    ui::UiSettings::new(listen, public_host.clone(), token.clone(), allow_writes).map_err(refused)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Failure::usage(format!("cannot listen on {listen}: {e}; pass another --listen (port 0 picks a free one)"))
    })?;
    let listen = listener.local_addr().map_err(|e| Failure::usage(format!("cannot listen on {listen}: {e}")))?;
    let settings = ui::UiSettings::new(listen, public_host, token, allow_writes).map_err(refused)?;
    if !listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on {listen}, not loopback, in plain HTTP: whoever opens a link from here acts with \
             your AWS credentials on {}",
            client.base()
        );
    }
    // Credentials missing is fatal (every call would fail); an unreachable URL may come back.
    match client.call("GET", "/healthz", None).await {
        Err(e @ flakefleet::cli::CallError::Credentials(_)) => return Err(e.into()),
        Err(e) => eprintln!("warning: {e}; the page shows it until the function URL answers"),
        Ok(_) => {}
    }
    let mode = if allow_writes { "it may roll back" } else { "read-only" };
    eprintln!("flakefleet ui: the status page of {} ({mode}); each link opens one tab; Ctrl-C stops it", client.base());
    let code = ui::OneTimeCode::new(ui::new_token().map_err(Failure::usage)?);
    let server =
        ui::UiServer { settings, function: client, code, announce: Box::new(|next: &str| emit(&format!("{next}\n"))) };
    emit(&format!("{}\n", server.link()));
    if open {
        open_in_browser(&server.link());
    }
    ui::serve(listener, server).await.map_err(|e| Failure::usage(format!("the status page stopped: {e}")))?;
    Ok(Exit::Done)
}

/// Opens `link` through a page only this user can read, as Jupyter does: a
/// browser's argv is readable by every user (/proc/*/cmdline), the file's
/// path holds no secret.
fn open_in_browser(link: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let opened =
        flakefleet::cli::ui::redirect_file(link).and_then(|file| std::process::Command::new(opener).arg(file).spawn());
    if let Err(e) = opened {
        eprintln!("could not open a browser ({opener}: {e}); open the link above");
    }
}

/// A 2xx answer read as the API's type: one that does not match is not an
/// answer this CLI can act on (a function of another version, or not flakefleet).
fn decode<T: DeserializeOwned>(answer: &Value) -> Result<T, Failure> {
    serde_json::from_value(answer.clone()).map_err(|e| Failure {
        exit: Exit::Refused,
        code: "unexpected_answer".into(),
        message: format!(
            "the answer does not match the API this CLI speaks ({e}); are the CLI and the function the same version?"
        ),
        status: None,
    })
}

fn without_nulls(body: Value) -> Value {
    match body {
        Value::Object(fields) => Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// One command's calls to the function URL and what it prints.
struct Session<'a> {
    cli: &'a Cli,
    client: &'a FunctionUrl,
}

impl Session<'_> {
    /// The answer of a 2xx; otherwise why not, with its exit code.
    async fn call(&self, method: &'static str, path: String, body: Option<Value>) -> Result<Value, Failure> {
        let reply = self.client.call(method, &path, body.as_ref()).await?;
        match (&reply.body, (200..300).contains(&reply.status)) {
            (Ok(answer), true) => Ok(answer.clone()),
            (Err(_), true) => Err(Failure {
                message: format!(
                    "a {} without JSON from {}: not flakefleet's answer",
                    reply.status,
                    self.client.base()
                ),
                ..Failure::from_reply(&reply, self.client.base())
            }),
            _ => Err(Failure::from_reply(&reply, self.client.base())),
        }
    }

    /// Prints an answer: as it came with `--json`, else as a table of its
    /// typed body (an answer that is not the API's is an error either way).
    fn print<T: DeserializeOwned>(&self, answer: &Value, table: fn(&T) -> String) -> Result<(), Failure> {
        let body = decode::<T>(answer)?;
        match self.cli.json {
            true => emit(&format!("{answer}\n")),
            false => emit(&table(&body)),
        }
        Ok(())
    }

    /// Polls the release (reconciling first with `--drive`) until it is final
    /// or the timeout runs out, printing each change of progress (to stderr,
    /// or as JSON lines on stdout with `--json`). A poll that fails for a
    /// reason that may pass (unreachable, 5xx) is tried again within the timeout.
    async fn follow(&self, release: api::Release, follow: &Follow) -> Result<Exit, Failure> {
        let started = Instant::now();
        let id = release.head.id.clone();
        let mut current = release;
        let mut last = None;
        loop {
            let progress = Progress::of(&current);
            if last.as_ref() != Some(&progress) {
                if self.cli.json {
                    emit(&format!("{}\n", progress.json(started.elapsed())));
                } else {
                    eprintln!("{}", progress.line(started.elapsed()));
                }
                last = Some(progress);
            }
            if current.head.status.is_final() {
                break;
            }
            if started.elapsed() >= follow.timeout {
                return Err(Failure::timed_out(format!(
                    "release {id} is still {} after {}; it goes on: `flakefleet watch {id}` follows it again",
                    current.head.status.as_str(),
                    clock(follow.timeout)
                )));
            }
            tokio::time::sleep(Duration::from_secs(follow.interval).min(follow.timeout)).await;
            match self.poll(&id, follow.drive).await {
                Ok(next) => current = next,
                Err(failure) if failure.transient() && started.elapsed() < follow.timeout => {
                    eprintln!("{} (polling again)", failure.render(false));
                }
                Err(failure) => return Err(failure),
            }
        }
        let ok = current.head.status == api::ReleaseStatus::Succeeded;
        let body = serde_json::to_value(api::ReleaseBody { release: current }).unwrap_or_default();
        self.print::<api::ReleaseBody>(&body, |b| render::release(&b.release))?;
        Ok(if ok { Exit::Done } else { Exit::ReleaseFailed })
    }

    async fn poll(&self, id: &str, drive: bool) -> Result<api::Release, Failure> {
        if drive {
            self.call("POST", "/reconcile".into(), None).await?;
        }
        Ok(decode::<api::ReleaseBody>(&self.call("GET", format!("/releases/{id}"), None).await?)?.release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` describes every command and every argument, positional ones included.
    #[test]
    fn every_command_and_argument_is_described() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let described = |arg: &clap::Arg| arg.get_help().or(arg.get_long_help()).is_some();
        for arg in cli.get_arguments() {
            assert!(described(arg), "--{} has no help", arg.get_id());
        }
        for command in cli.get_subcommands() {
            assert!(command.get_about().is_some(), "{} has no help", command.get_name());
            for arg in command.get_arguments() {
                assert!(described(arg), "{} {} has no help", command.get_name(), arg.get_id());
            }
        }
    }
}
