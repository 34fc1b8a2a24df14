//! How one instance answered a release's command.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Where one instance's command invocation stands. The AWS adapter maps SSM's
/// statuses onto it; the names are kept as SSM spells them, so the API and the
/// stored items read as they always did.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InvocationState {
    Pending,
    InProgress,
    Delayed,
    Cancelling,
    Success,
    Failed,
    TimedOut,
    Cancelled,
    /// A status this code does not know: never a success, never finished, so
    /// only the deadline ends it.
    Unknown(String),
}

impl InvocationState {
    const NAMED: [Self; 8] = [
        Self::Pending,
        Self::InProgress,
        Self::Delayed,
        Self::Cancelling,
        Self::Success,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Delayed => "Delayed",
            Self::Cancelling => "Cancelling",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut",
            Self::Cancelled => "Cancelled",
            Self::Unknown(other) => other,
        }
    }

    /// Terminal states: the instance will report nothing more.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::TimedOut | Self::Cancelled)
    }
}

impl From<&str> for InvocationState {
    fn from(name: &str) -> Self {
        Self::NAMED.into_iter().find(|s| s.as_str() == name).unwrap_or_else(|| Self::Unknown(name.to_owned()))
    }
}

impl fmt::Display for InvocationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InvocationState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InvocationState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from(String::deserialize(d)?.as_str()))
    }
}

/// How one instance answered a release's command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceOutcome {
    pub instance_id: String,
    pub status: InvocationState,
    /// SSM's `StatusDetails`, which tells Undeliverable and timeouts apart.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The end of the step's standard output (kept for instances that did not converge).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    /// The end of the step's standard error (fetched for instances that failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    /// Why the tails are missing, when fetching them failed: output is best
    /// effort and never holds up a verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_note: Option<String>,
    /// The invocation was once seen running (or ended having run): the host
    /// got the command, whatever SSM reports later. Set by the planner when
    /// it merges reports, never by an adapter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
}

impl InstanceOutcome {
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    pub fn converged(&self) -> bool {
        self.status == InvocationState::Success
    }

    /// Finished without converging, having run: the one definition of a
    /// failed instance. An invocation that never reached the host is not a
    /// failure of the release but an unreachable host.
    pub fn failed(&self) -> bool {
        self.is_finished() && !self.converged() && !self.unreachable()
    }

    /// SSM never delivered the command: the agent was not there (a stopped
    /// node, or one that lost its connection after the send). SSM itself does
    /// not count these against MaxErrors.
    pub fn unreachable(&self) -> bool {
        self.is_finished() && !self.started && UNDELIVERED.contains(&self.detail.as_str())
    }

    /// The host got the command: it is running it or ran it. Only an
    /// invocation still waiting for delivery (Pending, Delayed, and a state
    /// this code does not know) or one SSM never delivered has not.
    pub fn reached(&self) -> bool {
        self.started
            || self.status == InvocationState::InProgress
            || self.status == InvocationState::Cancelling
            || (self.is_finished() && !self.unreachable())
    }
}

/// SSM's `StatusDetails` for an invocation the agent never received.
const UNDELIVERED: [&str; 2] = ["Undeliverable", "Delivery Timed Out"];

/// Where an instance stands as an SSM managed node (DescribeInstanceInformation's
/// `PingStatus`); an instance SSM does not list is `NotRegistered`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PingStatus {
    Online,
    ConnectionLost,
    Inactive,
    NotRegistered,
    /// A status this code does not know: never a target.
    Unknown(String),
}

impl PingStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Online => "Online",
            Self::ConnectionLost => "ConnectionLost",
            Self::Inactive => "Inactive",
            Self::NotRegistered => "NotRegistered",
            Self::Unknown(other) => other,
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "Online" => Self::Online,
            "ConnectionLost" => Self::ConnectionLost,
            "Inactive" => Self::Inactive,
            "NotRegistered" => Self::NotRegistered,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for PingStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PingStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// An instance a release passed over because it was not an Online managed
/// node when its turn came. The drift repair brings it up to date once it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    pub instance_id: String,
    pub ping_status: PingStatus,
}

/// `i-1 ConnectionLost`, as reasons and messages name it.
impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.instance_id, self.ping_status.as_str())
    }
}

/// Failed instances whose output a release keeps; SSM keeps all of it.
pub const OUTPUTS_KEPT: usize = 50;

/// Keeps output only where it explains something: for at most [`OUTPUTS_KEPT`]
/// instances that did not converge. A release of 10,000 instances then stays
/// small enough to store and read on every reconcile.
pub fn trim_outputs(instances: &mut [InstanceOutcome]) {
    let mut kept = 0;
    for outcome in instances {
        let explains = !outcome.converged() && kept < OUTPUTS_KEPT;
        if explains {
            kept += usize::from(!outcome.stdout_tail.is_empty() || !outcome.stderr_tail.is_empty());
        } else {
            outcome.stdout_tail.clear();
            outcome.stderr_tail.clear();
        }
    }
}

/// `2 of 3 instances did not converge: i-2 Undeliverable, i-3 Failed (exit 1)`,
/// naming the first few; empty when none failed.
pub fn describe_failures(instances: &[InstanceOutcome]) -> String {
    const SHOWN: usize = 5;
    let failed: Vec<&InstanceOutcome> = instances.iter().filter(|i| i.failed()).collect();
    if failed.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = failed
        .iter()
        .take(SHOWN)
        .map(|i| match i.exit_code {
            Some(code) if code >= 0 => format!("{} {} (exit {code})", i.instance_id, i.detail),
            _ => format!("{} {}", i.instance_id, i.detail),
        })
        .collect();
    let mut text = format!("{} of {} instances did not converge: {}", failed.len(), instances.len(), listed.join(", "));
    if failed.len() > SHOWN {
        text.push_str(&format!(" and {} more", failed.len() - SHOWN));
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An outcome with no output, for tables.
    pub(crate) fn outcome(id: &str, status: &str) -> InstanceOutcome {
        InstanceOutcome {
            instance_id: id.into(),
            status: status.into(),
            detail: status.into(),
            exit_code: None,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            output_note: None,
            started: false,
        }
    }

    #[test]
    fn undelivered_invocations_are_unreachable_not_failed() {
        let mut lost = outcome("i-1", "Failed");
        lost.detail = "Undeliverable".into();
        assert!(lost.unreachable() && !lost.failed() && !lost.converged());
        let mut late = outcome("i-2", "TimedOut");
        late.detail = "Delivery Timed Out".into();
        assert!(late.unreachable() && !late.failed());
        let mut ran_too_long = outcome("i-3", "TimedOut");
        ran_too_long.detail = "Execution Timed Out".into();
        assert!(ran_too_long.failed() && !ran_too_long.unreachable());
        // Seen running once: a later Undeliverable (which AWS documents as
        // never delivered) cannot make it a host that never got the command.
        let mut was_running = lost.clone();
        was_running.started = true;
        assert!(was_running.failed() && was_running.reached() && !was_running.unreachable());
        assert!(!lost.reached() && !outcome("i-4", "Pending").reached() && outcome("i-5", "InProgress").reached());
        for status in ["Online", "ConnectionLost", "Inactive", "NotRegistered", "Odd"] {
            assert_eq!(PingStatus::parse(status).as_str(), status);
        }
        assert_eq!(PingStatus::parse("Odd"), PingStatus::Unknown("Odd".into()));
    }

    #[test]
    fn states_keep_ssm_names_and_unknown_ones_never_succeed() {
        for state in InvocationState::NAMED {
            assert_eq!(InvocationState::from(state.as_str()), state);
            assert_eq!(serde_json::to_value(&state).unwrap(), state.as_str());
        }
        let odd = InvocationState::from("Sucess");
        assert_eq!(odd, InvocationState::Unknown("Sucess".into()));
        assert!(!odd.is_finished());
        assert!(!outcome("i-1", "Sucess").converged());
        let back: InvocationState = serde_json::from_str("\"Sucess\"").unwrap();
        assert_eq!(back.as_str(), "Sucess");
    }

    #[test]
    fn failures_are_named_with_exit_codes_and_counted_past_five() {
        let mut instances: Vec<InstanceOutcome> = (0..8).map(|n| outcome(&format!("i-{n}"), "Failed")).collect();
        instances[0].exit_code = Some(2);
        instances.push(outcome("i-9", "Success"));
        let text = describe_failures(&instances);
        assert!(text.starts_with("8 of 9 instances did not converge: i-0 Failed (exit 2), i-1 Failed,"), "{text}");
        assert!(text.ends_with(" and 3 more"), "{text}");
        assert_eq!(describe_failures(&instances[8..]), "");
    }

    #[test]
    fn output_is_kept_for_a_bounded_number_of_failures_only() {
        let with_output = |n: usize, status: &str| InstanceOutcome {
            exit_code: Some(i32::from(status != "Success")),
            stdout_tail: "out".into(),
            stderr_tail: "err".into(),
            output_note: None,
            ..outcome(&format!("i-{n:05}"), status)
        };
        let mut instances: Vec<InstanceOutcome> =
            (0..200).map(|n| with_output(n, if n % 2 == 0 { "Success" } else { "Failed" })).collect();
        trim_outputs(&mut instances);
        assert!(instances.iter().filter(|i| i.converged()).all(|i| i.stdout_tail.is_empty()));
        let kept = instances.iter().filter(|i| !i.stdout_tail.is_empty()).count();
        assert_eq!(kept, OUTPUTS_KEPT);
        assert!(instances[..2 * OUTPUTS_KEPT].iter().filter(|i| !i.converged()).all(|i| i.stderr_tail == "err"));
    }
}
