//! The command runner, scripted per instance: sends, reports, lost agents.

use super::*;

/// An invocation's status and details, as reported.
type Reported = (&'static str, &'static str);

/// What the next SendCommand does.
#[derive(Clone, Debug)]
pub enum SendBehaviour {
    Accept,
    Reject,
    /// Times out after the command really started (an ambiguous failure).
    SendThenTimeOut,
    /// Times out before anything was sent.
    Unavailable,
}

pub struct ScriptedRunner {
    pub sent: Mutex<Vec<(String, ApplyCommand)>>,
    pub next: Mutex<SendBehaviour>,
    /// Reports by command id; commands to instance ids without one are
    /// reported finished, each instance a Success unless listed in `failing`.
    pub reports: Mutex<HashMap<String, CommandReport>>,
    /// (instance id, flakeref) pairs whose apply fails.
    pub failing: Mutex<Vec<(String, String)>>,
    /// (instance id, flakeref) pairs whose health checks fail when a bake's
    /// check command runs them (the apply itself passed them).
    pub unhealthy: Mutex<Vec<(String, String)>>,
    /// Managed-node statuses; an instance not listed is Online. As SSM: a
    /// send naming an unregistered or inactive node is refused whole, one to
    /// a node that lost its connection is accepted and never delivered.
    pub agents: Mutex<HashMap<String, PingStatus>>,
    /// Agents that change just as the next send arrives (after the planner checked).
    pub agents_on_send: Mutex<Vec<(String, PingStatus)>>,
    /// CancelCommand calls: (command id, instance ids).
    pub cancels: Mutex<Vec<(String, Vec<String>)>>,
    /// Applies that take a while: ((instance id, flakeref), ticks). Time
    /// here is the runner's own clock, one tick per report asked for; such
    /// an apply ends that many ticks after its send, whoever looks.
    pub slow: Mutex<HashMap<(String, String), usize>>,
    clock: Mutex<usize>,
    /// The tick each command was sent at, by command id.
    sent_at: Mutex<HashMap<String, usize>>,
    /// What each host runs: the flakeref of its last apply that succeeded,
    /// in the order the applies ended.
    pub hosts: Mutex<HashMap<String, String>>,
    ended: Mutex<std::collections::HashSet<(String, String)>>,
    /// Invocations whose host's agent was there at the send, by (command id,
    /// instance id): they run to their end on the host, whatever happens to
    /// the agent after (the script runs on without it).
    delivered: Mutex<std::collections::HashSet<(String, String)>>,
    /// How an invocation that started reports while its agent is away. As
    /// AWS documents it (false): In Progress until the agent is back and
    /// reports how it ended. As the simulator once did (true): Undeliverable
    /// once it has been reported running, though it runs on. Flakefleet must
    /// be safe either way.
    pub lost_reports_undeliverable: std::sync::atomic::AtomicBool,
    /// Invocations reported In Progress at least once.
    reported_running: Mutex<std::collections::HashSet<(String, String)>>,
    /// Invocations reported in a terminal state, and which: it stands.
    reported_final: Mutex<HashMap<(String, String), Reported>>,
    pub yields: Yields,
}

impl Default for ScriptedRunner {
    fn default() -> Self {
        Self {
            sent: Mutex::default(),
            next: Mutex::new(SendBehaviour::Accept),
            reports: Mutex::default(),
            failing: Mutex::default(),
            unhealthy: Mutex::default(),
            agents: Mutex::default(),
            agents_on_send: Mutex::default(),
            cancels: Mutex::default(),
            slow: Mutex::default(),
            clock: Mutex::default(),
            sent_at: Mutex::default(),
            hosts: Mutex::default(),
            ended: Mutex::default(),
            delivered: Mutex::default(),
            reported_running: Mutex::default(),
            reported_final: Mutex::default(),
            lost_reports_undeliverable: std::sync::atomic::AtomicBool::new(false),
            yields: Yields::default(),
        }
    }
}

impl ScriptedRunner {
    pub fn sent_count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    pub fn set_agent(&self, instance_id: &str, status: PingStatus) {
        self.agents.lock().unwrap().insert(instance_id.to_owned(), status);
    }

    fn agent(&self, instance_id: &str) -> PingStatus {
        self.agents.lock().unwrap().get(instance_id).cloned().unwrap_or(PingStatus::Online)
    }

    /// The command reaches the hosts whose agent is there now.
    fn deliver(&self, command_id: &str, command: &ApplyCommand) {
        let CommandTarget::Instances(ids) = &command.target else { return };
        let mut delivered = self.delivered.lock().unwrap();
        for id in ids.iter().filter(|id| self.agent(id) == PingStatus::Online) {
            delivered.insert((command_id.to_owned(), id.clone()));
        }
    }
}

impl ScriptedRunner {
    /// When each apply ends, by (command id, instance id): its send's tick
    /// plus its slowness, but never before the apply sent to that host before
    /// it ended. A host runs one apply at a time, as the document's lock
    /// makes a real one do (a later apply waits for the one running).
    fn schedule(&self) -> HashMap<(String, String), usize> {
        let sent_at = self.sent_at.lock().unwrap();
        let slow = self.slow.lock().unwrap();
        let mut host_free: HashMap<&str, usize> = HashMap::new();
        let mut ends = HashMap::new();
        let sent = self.sent.lock().unwrap();
        for (command_id, command) in sent.iter() {
            let CommandTarget::Instances(ids) = &command.target else { continue };
            if command.check_only {
                continue; // a check applies nothing
            }
            let start = sent_at.get(command_id).copied().unwrap_or(0);
            for id in ids {
                let own = slow.get(&(id.clone(), command.flakeref.to_string())).copied().unwrap_or(0);
                let end = start.max(host_free.get(id.as_str()).copied().unwrap_or(0)) + own;
                host_free.insert(id.as_str(), end);
                ends.insert((command_id.clone(), id.clone()), end);
            }
        }
        ends
    }

    /// Every apply that has ended by `now` changes its host, in the order
    /// they ended: the last to end wins, as on a real host.
    fn end_applies(&self, now: usize) {
        let schedule = self.schedule();
        let mut ending = Vec::new();
        for (seq, (command_id, command)) in self.sent.lock().unwrap().iter().enumerate() {
            let CommandTarget::Instances(ids) = &command.target else { continue };
            if command.check_only {
                continue;
            }
            for id in ids {
                let end = schedule[&(command_id.clone(), id.clone())];
                if end <= now && !self.ended.lock().unwrap().contains(&(command_id.clone(), id.clone())) {
                    ending.push((end, seq, command_id.clone(), id.clone(), command.flakeref.to_string()));
                }
            }
        }
        ending.sort();
        for (_, _, command_id, id, flakeref) in ending {
            let fails = self.failing.lock().unwrap().iter().any(|(i, f)| i == &id && f == &flakeref);
            let delivered = self.delivered.lock().unwrap().contains(&(command_id.clone(), id.clone()));
            self.ended.lock().unwrap().insert((command_id, id.clone()));
            if !fails && delivered {
                self.hosts.lock().unwrap().insert(id, flakeref);
            }
        }
    }
}

impl CommandRunner for ScriptedRunner {
    async fn send(&self, command: &ApplyCommand) -> Result<String, RunnerError> {
        self.yields.point().await;
        let behaviour = self.next.lock().unwrap().clone();
        for (id, status) in self.agents_on_send.lock().unwrap().drain(..) {
            self.set_agent(&id, status);
        }
        if let CommandTarget::Instances(ids) = &command.target {
            let refused: Vec<&String> = ids
                .iter()
                .filter(|id| matches!(self.agent(id), PingStatus::NotRegistered | PingStatus::Inactive))
                .collect();
            if !refused.is_empty() {
                return Err(RunnerError::NotManaged(format!("InvalidInstanceId: {refused:?}")));
            }
        }
        let mut sent = self.sent.lock().unwrap();
        let id = format!("cmd-{}", sent.len() + 1);
        self.sent_at.lock().unwrap().insert(id.clone(), *self.clock.lock().unwrap());
        match behaviour {
            SendBehaviour::Accept => {
                sent.push((id.clone(), command.clone()));
                self.deliver(&id, command);
                Ok(id)
            }
            SendBehaviour::Reject => Err(RunnerError::Rejected("InvalidDocument: no such document".into())),
            SendBehaviour::SendThenTimeOut => {
                sent.push((id.clone(), command.clone()));
                self.deliver(&id, command);
                Err(RunnerError::Unavailable("timed out".into()))
            }
            SendBehaviour::Unavailable => Err(RunnerError::Unavailable("connection refused".into())),
        }
    }

    async fn find(&self, comment: &str, _: Timestamp) -> Result<Option<String>, RunnerError> {
        self.yields.point().await;
        Ok(self.sent.lock().unwrap().iter().find(|(_, c)| c.comment == comment).map(|(id, _)| id.clone()))
    }

    async fn report(&self, command_id: &str) -> Result<CommandReport, RunnerError> {
        self.yields.point().await;
        if let Some(report) = self.reports.lock().unwrap().get(command_id) {
            return Ok(report.clone());
        }
        let now = {
            let mut clock = self.clock.lock().unwrap();
            *clock += 1;
            *clock
        };
        self.end_applies(now);
        let schedule = self.schedule();
        let sent = self.sent.lock().unwrap();
        let Some((_, command)) = sent.iter().find(|(id, _)| id == command_id) else {
            return Err(RunnerError::Rejected(format!("InvalidCommandId: {command_id}")));
        };
        let CommandTarget::Instances(ids) = &command.target else {
            return Ok(CommandReport { finished: false, invocations: vec![] });
        };
        if command.check_only {
            // The document's check: the host must run this release, and pass its checks.
            let hosts = self.hosts.lock().unwrap();
            let unhealthy = self.unhealthy.lock().unwrap();
            let invocations: Vec<InstanceOutcome> = ids
                .iter()
                .map(|id| {
                    let runs = hosts.get(id).is_some_and(|f| f == command.flakeref.as_str());
                    let sick = unhealthy.iter().any(|(i, f)| i == id && f == command.flakeref.as_str());
                    let verdict = match (self.agent(id), runs, sick) {
                        (PingStatus::Online, true, false) => None,
                        (PingStatus::Online, false, _) => Some("flakefleet: not running this release"),
                        (PingStatus::Online, true, true) => {
                            Some("flakefleet: health check web failed 5 times; its last answer: HTTP 500")
                        }
                        _ => Some(""),
                    };
                    let (status, detail) = match (self.agent(id), verdict) {
                        (PingStatus::Online, None) => ("Success", "Success"),
                        (PingStatus::Online, Some(_)) => ("Failed", "Failed"),
                        _ => ("Failed", "Undeliverable"),
                    };
                    InstanceOutcome {
                        instance_id: id.clone(),
                        status: status.into(),
                        detail: detail.into(),
                        exit_code: (detail != "Undeliverable").then_some(i32::from(verdict.is_some())),
                        stdout_tail: String::new(),
                        stderr_tail: verdict.unwrap_or_default().to_owned(),
                        output_note: None,
                        started: false,
                    }
                })
                .collect();
            return Ok(CommandReport { finished: true, invocations });
        }
        let running = |id: &String| now < schedule[&(command_id.to_owned(), id.clone())];
        let failing = self.failing.lock().unwrap();
        let delivered = self.delivered.lock().unwrap();
        let lost_undeliverable = self.lost_reports_undeliverable.load(std::sync::atomic::Ordering::Relaxed);
        let mut reported_running = self.reported_running.lock().unwrap();
        let mut reported_final = self.reported_final.lock().unwrap();
        let invocations = ids
            .iter()
            .map(|id| {
                let fails = failing.iter().any(|(i, f)| i == id && f == command.flakeref.as_str());
                let key = (command_id.to_owned(), id.clone());
                let (status, detail) = if let Some(reported) = reported_final.get(&key) {
                    *reported // a terminal state stands
                } else if !delivered.contains(&key) {
                    ("Failed", "Undeliverable")
                } else if self.agent(id) != PingStatus::Online {
                    // It runs, or ran, on its host without the agent.
                    if lost_undeliverable && reported_running.contains(&key) {
                        ("Failed", "Undeliverable")
                    } else {
                        ("InProgress", "In Progress")
                    }
                } else if running(id) {
                    ("InProgress", "In Progress")
                } else if fails {
                    ("Failed", "Failed")
                } else {
                    ("Success", "Success")
                };
                if status == "InProgress" {
                    reported_running.insert(key);
                } else {
                    reported_final.insert(key, (status, detail));
                }
                InstanceOutcome {
                    instance_id: id.clone(),
                    status: status.into(),
                    detail: detail.into(),
                    exit_code: (!matches!(detail, "Undeliverable" | "In Progress")).then_some(i32::from(fails)),
                    stdout_tail: String::new(),
                    stderr_tail: String::new(),
                    output_note: None,
                    started: false,
                }
            })
            .collect::<Vec<InstanceOutcome>>();
        Ok(CommandReport { finished: invocations.iter().all(InstanceOutcome::is_finished), invocations })
    }

    /// As SSM: an invocation not yet started ends Cancelled; one running is
    /// left to finish (a scripted report says how).
    async fn cancel(&self, command_id: &str, instance_ids: &[String]) -> Result<(), RunnerError> {
        self.yields.point().await;
        self.cancels.lock().unwrap().push((command_id.to_owned(), instance_ids.to_vec()));
        if let Some(report) = self.reports.lock().unwrap().get_mut(command_id) {
            for invocation in report.invocations.iter_mut().filter(|i| instance_ids.contains(&i.instance_id)) {
                if matches!(invocation.status, InvocationState::Pending | InvocationState::Delayed) {
                    (invocation.status, invocation.detail) = (InvocationState::Cancelled, "Cancelled".into());
                }
            }
            report.finished = report.invocations.iter().all(InstanceOutcome::is_finished);
        }
        Ok(())
    }

    async fn managed_nodes(&self, instance_ids: &[String]) -> Result<HashMap<String, PingStatus>, RunnerError> {
        self.yields.point().await;
        Ok(instance_ids.iter().map(|id| (id.clone(), self.agent(id))).collect())
    }
}
