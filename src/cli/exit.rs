//! What a CLI command ends with: its exit code, and the error it prints
//! (a line for people, or `{"error", "message", "status"}` with `--json`).

use super::{printable, CallError, Reply};
use serde_json::{json, Value};

/// The CLI's exit codes, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    /// The release failed, was rolled back or halted the fleet.
    ReleaseFailed = 1,
    /// The command line or the local set-up (URL, region, credentials) is wrong.
    Usage = 2,
    /// flakefleet or AWS refused the request (a 4xx): nothing was done.
    Refused = 3,
    /// The function URL could not be reached, or answered a 5xx.
    Unavailable = 4,
    /// A wait ran out before the release was over; the release goes on.
    TimedOut = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a command did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    /// flakefleet's error code, or one of the CLI's own (`usage`, `unreachable`, `http_403`, ...).
    pub code: String,
    pub message: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { exit: Exit::Usage, code: "usage".into(), message: message.into(), status: None }
    }

    pub fn timed_out(message: impl Into<String>) -> Self {
        Self { exit: Exit::TimedOut, code: "timed_out".into(), message: message.into(), status: None }
    }

    /// Worth polling again within a wait: the next poll may well get through.
    pub fn transient(&self) -> bool {
        self.exit == Exit::Unavailable
    }

    /// The error as printed: `flakefleet: <status> <code>: <message>`, or one JSON line.
    pub fn render(&self, json: bool) -> String {
        if json {
            return json!({ "error": self.code, "message": self.message, "status": self.status }).to_string();
        }
        match self.status {
            Some(status) => format!("flakefleet: {status} {}: {}", self.code, self.message),
            None => format!("flakefleet: {}", self.message),
        }
    }

    /// A non-2xx answer: flakefleet's own error body, or one from whatever
    /// answered in its place (AWS's IAM check, a proxy, the wrong URL).
    pub fn from_reply(reply: &Reply, url: &str) -> Self {
        let exit = if reply.status >= 500 { Exit::Unavailable } else { Exit::Refused };
        let status = Some(reply.status);
        if let Some((code, message)) = own_error(&reply.body) {
            return Self { exit, code, message, status };
        }
        let body = match &reply.body {
            Ok(json) => json.to_string(),
            Err(text) if text.trim().is_empty() => "an empty body".into(),
            Err(text) => text.clone(),
        };
        // One line: a foreign body is often an HTML or XML page.
        let excerpt: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
        let message = format!("not flakefleet's answer ({}); {}", printable(&excerpt), hint(reply.status, url));
        Self { exit, code: format!("http_{}", reply.status), message, status }
    }
}

/// `{"error": "<code>", "message": "..."}`: the shape every flakefleet error has.
fn own_error(body: &Result<Value, String>) -> Option<(String, String)> {
    let body: crate::api::ErrorBody = serde_json::from_value(body.as_ref().ok()?.clone()).ok()?;
    Some((body.error, body.message))
}

/// What to check when something other than flakefleet answered.
fn hint(status: u16, url: &str) -> String {
    match status {
        401 | 403 => format!(
            "AWS refused the request before flakefleet ran. Check that your credentials are for the stack's account \
             (aws sts get-caller-identity), that they may call lambda:InvokeFunctionUrl on the function, that the \
             region you sign for is the URL's, and that {url} is the stack's FunctionUrl output"
        ),
        404 => format!("check the URL: {url} should be the stack's FunctionUrl output, with no path"),
        413 => "the request is larger than a function URL accepts (6 MB)".into(),
        429 => "the function is throttled (its reserved concurrency); try again shortly".into(),
        s if s >= 500 => "the function failed or timed out; its CloudWatch logs say why".into(),
        _ => format!("check that {url} is the stack's FunctionUrl output"),
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        let (exit, code) = match &e {
            CallError::Transport { .. } => (Exit::Unavailable, "unreachable"),
            CallError::Credentials(_) => (Exit::Usage, "no_credentials"),
            CallError::NoRegion => (Exit::Usage, "no_region"),
            CallError::Signing(_) => (Exit::Usage, "signing"),
            CallError::Insecure(_) | CallError::BadUrl(_) => (Exit::Usage, "bad_url"),
        };
        Self { exit, code: code.into(), message: e.to_string(), status: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: Result<Value, String>) -> Reply {
        Reply { status, body }
    }

    #[test]
    fn flakefleet_errors_keep_their_code_and_say_refused_or_unavailable() {
        let busy = reply(409, Ok(json!({"error": "deploy_in_flight", "message": "release X is still in flight"})));
        let failure = Failure::from_reply(&busy, "https://u");
        assert_eq!(
            (failure.exit, failure.code.as_str(), failure.status),
            (Exit::Refused, "deploy_in_flight", Some(409))
        );
        assert_eq!(failure.render(false), "flakefleet: 409 deploy_in_flight: release X is still in flight");
        let down = Failure::from_reply(&reply(503, Ok(json!({"error": "busy", "message": "m"}))), "u");
        assert_eq!(down.exit, Exit::Unavailable);
        assert!(down.transient() && !failure.transient());
    }

    #[test]
    fn a_foreign_answer_is_shown_with_what_to_check() {
        let iam = Failure::from_reply(&reply(403, Ok(json!({"Message": "Forbidden"}))), "https://x.on.aws/");
        assert_eq!((iam.exit, iam.code.as_str()), (Exit::Refused, "http_403"));
        assert!(iam.message.contains(r#"{"Message":"Forbidden"}"#), "{}", iam.message);
        assert!(iam.message.contains("aws sts get-caller-identity"), "{}", iam.message);
        let html = Failure::from_reply(&reply(404, Err("<html>\u{1b}[2J Not Found</html>".into())), "https://x/");
        assert!(html.message.contains("Not Found") && !html.message.contains('\u{1b}'), "{}", html.message);
        assert!(html.message.contains("FunctionUrl output"), "{}", html.message);
        let empty = Failure::from_reply(&reply(502, Err(String::new())), "u");
        assert_eq!(empty.exit, Exit::Unavailable);
        assert!(empty.message.contains("an empty body"), "{}", empty.message);
    }

    #[test]
    fn json_errors_are_one_parseable_line() {
        let failure = Failure::from(CallError::NoRegion);
        let line = failure.render(true);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["error"], "no_region");
        assert_eq!(parsed["status"], Value::Null);
        assert!(!line.contains('\n'));
    }
}
