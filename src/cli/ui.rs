//! `flakefleet ui`: the status page, served on this machine the way
//! `kubectl proxy` serves a cluster's API. A browser cannot sign SigV4, so
//! the page's API calls come here and are forwarded to the function URL,
//! signed with the operator's own credentials. Since whoever reaches this
//! server borrows those credentials, it refuses what it was not started for
//! (see [`route`]): a foreign `Host` (DNS rebinding), an API call without the
//! per-run token, any write unless `--allow-writes`, any path that is not one
//! of the API's own read routes.
//!
//! The token itself is never printed, never put in a URL and never sent in
//! any answer but one: the printed link holds a one-time code, which the
//! page trades once (`POST /session`) for the token, keeps in its tab's
//! `sessionStorage` and removes from the address bar. A code seen later (in
//! browser history, a terminal's scrollback, `--open`'s file) is spent.

use super::{CallError, FunctionUrl, Reply};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Where the page's API calls carry the token: a custom header, which a
/// cross-origin page cannot send without a CORS preflight this server never answers.
pub const TOKEN_HEADER: &str = "x-flakefleet-token";

/// Where the page presents the link's one-time code (a custom header too).
pub const CODE_HEADER: &str = "x-flakefleet-code";

/// Nothing is loaded from elsewhere, nothing runs inline, nothing frames the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The largest body the page ever sends (a rollback request).
const MAX_BODY: usize = 4096;

/// How this server was started.
#[derive(Clone, Debug)]
pub struct UiSettings {
    pub listen: SocketAddr,
    /// The name browsers reach a non-loopback listener by (`--public-host`).
    pub public_host: Option<String>,
    pub token: String,
    pub allow_writes: bool,
}

/// Why `flakefleet ui` will not start as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UiSetupError {
    #[error(
        "--listen {0} is not a loopback address: name the host browsers will use with --public-host NAME \
         (the page is plain HTTP there; prefer `ssh -L 8750:127.0.0.1:8750` to a loopback listener, or TLS in front)"
    )]
    NeedsPublicHost(SocketAddr),
    #[error("--public-host {0:?} is not a host name: give a DNS name or an IP address, optionally with :PORT")]
    BadPublicHost(String),
}

impl UiSettings {
    /// A loopback listener answers to its own names; any other needs the
    /// name browsers use, never the bind address taken on trust.
    pub fn new(
        listen: SocketAddr,
        public_host: Option<String>,
        token: String,
        allow_writes: bool,
    ) -> Result<Self, UiSetupError> {
        if let Some(name) = &public_host {
            let valid = !name.is_empty()
                && name.len() <= 255
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !valid {
                return Err(UiSetupError::BadPublicHost(name.clone()));
            }
        } else if !listen.ip().is_loopback() {
            return Err(UiSetupError::NeedsPublicHost(listen));
        }
        Ok(Self { listen, public_host, token, allow_writes })
    }

    /// The `Host` values a browser sends to this server: `localhost` and the
    /// loopback addresses with its port when it listens on loopback, and the
    /// `--public-host` name (with the port when the name has none). Anything
    /// else is a name some other site resolved to this machine.
    fn allowed_hosts(&self) -> Vec<String> {
        let port = self.listen.port();
        let mut hosts = Vec::new();
        if let Some(name) = &self.public_host {
            hosts.push(name.clone());
            if !name.ends_with(']') && !name.contains(':') {
                hosts.push(format!("{name}:{port}"));
            }
        }
        if self.listen.ip().is_loopback() {
            hosts.extend([
                self.listen.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]);
        }
        hosts
    }

    /// The address to open, with a one-time `code` (never the token).
    pub fn page_url(&self, code: &str) -> String {
        let host = match &self.public_host {
            Some(name) if name.contains(':') && !name.ends_with(']') => name.clone(),
            Some(name) => format!("{name}:{}", self.listen.port()),
            None => self.listen.to_string(),
        };
        format!("http://{host}/?code={code}")
    }
}

/// The link's one-time code: redeemed once for the token, then replaced by
/// a fresh one that is printed for another tab.
#[derive(Debug)]
pub struct OneTimeCode(Mutex<String>);

impl OneTimeCode {
    pub fn new(code: String) -> Self {
        Self(Mutex::new(code))
    }

    /// The code a new link carries.
    pub fn current(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Spends `presented` if it is the current code; answers the next one.
    pub fn redeem(&self, presented: &str, fresh: impl FnOnce() -> String) -> Option<String> {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !same(presented.as_bytes(), current.as_bytes()) {
            return None;
        }
        *current = fresh();
        Some(current.clone())
    }
}

/// A random per-run token, or one-time code: 32 bytes from the system's generator, as hex.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system's random generator failed".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a page that sends the browser on to `link`, in a new directory
/// only this user can enter (0700, the file 0600), for `--open`: the opener
/// is handed this file's path, which holds no secret. Answers the path.
pub fn redirect_file(link: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let base = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let suffix = new_token().map_err(std::io::Error::other)?;
    let dir = base.join(format!("flakefleet-ui-{}", &suffix[..16]));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let file = dir.join("open.html");
    // The link is this server's own: a host name of checked characters and a hex code.
    let page = format!(
        "<!DOCTYPE html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={link}\">\
         <title>flakefleet ui</title><p><a href=\"{link}\">Open the status page</a></p>\n"
    );
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file)?.write_all(page.as_bytes())?;
    Ok(file)
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Page,
    Script,
    Style,
    /// Trade this one-time code for the token.
    Session {
        code: String,
    },
    /// Forward to the function URL: this method, this path (and query) under it.
    Forward {
        method: &'static str,
        path: String,
    },
    Refuse {
        status: u16,
        error: &'static str,
        message: String,
    },
}

fn refuse(status: u16, error: &'static str, message: impl Into<String>) -> Route {
    Route::Refuse { status, error, message: message.into() }
}

/// What a request carries that decides its fate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    pub host: Option<&'a str>,
    pub token: Option<&'a str>,
    pub code: Option<&'a str>,
}

/// Decides what a request may do, from its method, path and query, `Host`,
/// token and code headers alone. No refusal names the token or a code.
pub fn route(settings: &UiSettings, method: &Method, target: &str, presented: Presented<'_>) -> Route {
    let hosts = settings.allowed_hosts();
    if !presented.host.is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h))) {
        return refuse(
            403,
            "foreign_host",
            format!(
                "this server answers only to Host {}; open the link `flakefleet ui` printed, or start it with \
                 --public-host NAME for the name you browse to",
                hosts.join(", ")
            ),
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/session" {
        return match (method, presented.code) {
            (&Method::POST, Some(code)) if query.is_empty() => Route::Session { code: code.to_owned() },
            (&Method::POST, _) => {
                refuse(400, "missing_code", "POST /session takes the link's code in X-Flakefleet-Code")
            }
            _ => refuse(405, "method_not_allowed", "/session takes POST only"),
        };
    }
    match path {
        "/" | "/app.js" | "/app.css" if method != Method::GET => {
            return refuse(405, "method_not_allowed", "the page and its assets take GET only")
        }
        // The page and its assets hold no data; the page's API calls carry the token.
        "/" => return Route::Page,
        "/app.js" => return Route::Script,
        "/app.css" => return Route::Style,
        _ => {}
    }
    let Some(api) = path.strip_prefix("/api/") else {
        return refuse(404, "not_found", format!("no page {path}; the status page is at /"));
    };
    if !presented.token.is_some_and(|t| same(t.as_bytes(), settings.token.as_bytes())) {
        return refuse(
            403,
            "missing_token",
            "every API call needs this run's session: open the link `flakefleet ui` printed (each link opens one tab)",
        );
    }
    let segments: Vec<&str> = api.split('/').collect();
    let id_ok = |id: &str| crate::domain::model::ids::ReleaseId::parse(id).is_ok();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["fleet"]) if query.is_empty() => Route::Forward { method: "GET", path: "/fleet".into() },
        ("GET", ["releases"]) => match releases_query(query) {
            Ok(query) => Route::Forward { method: "GET", path: format!("/releases{query}") },
            Err(message) => refuse(400, "invalid_query", message),
        },
        ("GET", ["releases", id]) if query.is_empty() && id_ok(id) => {
            Route::Forward { method: "GET", path: format!("/releases/{id}") }
        }
        ("GET", ["releases", _]) => refuse(400, "invalid_release_id", "a release id is a ULID from the releases list"),
        ("POST", ["rollback"]) if settings.allow_writes && query.is_empty() => {
            Route::Forward { method: "POST", path: "/rollback".into() }
        }
        ("POST", ["rollback"]) => refuse(
            405,
            "read_only",
            "this page is read-only: restart it with `flakefleet ui --allow-writes` to roll back from it",
        ),
        (_, ["fleet"] | ["releases"] | ["releases", _]) => {
            refuse(405, "read_only", "the status page reads with GET; it never changes a release")
        }
        _ => refuse(
            404,
            "no_route",
            format!("/api/{api} is not forwarded: only GET fleet, releases and releases/{{id}} (and POST rollback with --allow-writes)"),
        ),
    }
}

/// `GET /releases`'s query, rebuilt from what it may hold: `limit` (1 to
/// 100) and `cursor` (a release id). Nothing else reaches the function.
fn releases_query(query: &str) -> Result<String, String> {
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", n)) if n.parse::<u32>().is_ok_and(|n| (1..=100).contains(&n)) => {
                kept.push(format!("limit={n}"))
            }
            Some(("cursor", id)) if crate::domain::model::ids::ReleaseId::parse(id).is_ok() => {
                kept.push(format!("cursor={id}"))
            }
            _ => return Err(format!("releases take limit=1..100 and cursor=<release id> only, not {pair:?}")),
        }
    }
    Ok(if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) })
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The page with the server's one setting the script needs.
fn page(settings: &UiSettings) -> String {
    match settings.allow_writes {
        true => PAGE.replace("data-writes=\"false\"", "data-writes=\"true\""),
        false => PAGE.to_owned(),
    }
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        headers.insert(name, header::HeaderValue::from_str(value).expect("static header values"));
    }
    response
}

fn error_body(status: u16, error: &str, message: &str) -> Response<Full<Bytes>> {
    respond(status, "application/json", json!({"error": error, "message": message}).to_string())
}

/// The function URL's answer as the page gets it: its status and JSON, or a
/// 502 that says what went wrong on the way.
fn forwarded(answer: Result<Reply, CallError>) -> Response<Full<Bytes>> {
    match answer {
        Ok(Reply { status, body: Ok(value) }) => respond(status, "application/json", value.to_string()),
        Ok(Reply { status, body: Err(text) }) => error_body(
            502,
            "foreign_answer",
            &format!("the function URL answered {status} with something other than flakefleet's JSON: {text}"),
        ),
        Err(CallError::Transport { url, reason }) => {
            error_body(502, "unreachable", &format!("{url} did not answer: {reason}"))
        }
        Err(other) => error_body(502, "cannot_call", &other.to_string()),
    }
}

/// A running status page: how it was started, where it forwards, and the
/// link's current one-time code.
pub struct UiServer {
    pub settings: UiSettings,
    pub function: FunctionUrl,
    pub code: OneTimeCode,
    /// Told the next link each time a code is spent (the CLI prints it).
    pub announce: Box<dyn Fn(&str) + Send + Sync>,
}

impl UiServer {
    /// The link to print (or open) now.
    pub fn link(&self) -> String {
        self.settings.page_url(&self.code.current())
    }

    fn session(&self, presented: &str) -> Response<Full<Bytes>> {
        let next = self.code.redeem(presented, || new_token().unwrap_or_default());
        match next {
            Some(next) if !next.is_empty() => {
                (self.announce)(&self.settings.page_url(&next));
                respond(200, "application/json", json!({ "token": self.settings.token }).to_string())
            }
            _ => error_body(
                403,
                "code_spent",
                "this link's code was used already (each link opens one tab) or is not this run's: \
                 open the newest link `flakefleet ui` printed",
            ),
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let text = |name: &str| request.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_owned);
        let (host, token, code) = (text(header::HOST.as_str()), text(TOKEN_HEADER), text(CODE_HEADER));
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let presented = Presented { host: host.as_deref(), token: token.as_deref(), code: code.as_deref() };
        let settings = &self.settings;
        match route(settings, request.method(), &target, presented) {
            Route::Page => respond(200, "text/html; charset=utf-8", page(settings)),
            Route::Script => respond(200, "text/javascript; charset=utf-8", SCRIPT),
            Route::Style => respond(200, "text/css; charset=utf-8", STYLE),
            Route::Session { code } => self.session(&code),
            Route::Refuse { status, error, message } => error_body(status, error, &message),
            Route::Forward { method: "GET", path } => forwarded(self.function.call("GET", &path, None).await),
            Route::Forward { method, path } => {
                let json_body = request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if !json_body {
                    return error_body(415, "unsupported_media_type", "send the body as application/json");
                }
                let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => return error_body(413, "body_too_large", &format!("the body is over {MAX_BODY} bytes")),
                };
                match serde_json::from_slice::<Value>(&body) {
                    Ok(value @ Value::Object(_)) => forwarded(self.function.call(method, &path, Some(&value)).await),
                    _ => error_body(400, "invalid_json", "the body must be a JSON object"),
                }
            }
        }
    }
}

/// Serves until the process is stopped.
pub async fn serve(listener: tokio::net::TcpListener, server: UiServer) -> std::io::Result<()> {
    let shared = Arc::new(server);
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(shared.handle(request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A connection that breaks off ends itself; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listen: &str, allow_writes: bool) -> UiSettings {
        UiSettings::new(listen.parse().unwrap(), None, "t0k".into(), allow_writes).unwrap()
    }

    fn with(host: Option<&'static str>, token: Option<&'static str>) -> Presented<'static> {
        Presented { host, token, code: None }
    }

    fn refused(route: Route) -> (u16, &'static str) {
        match route {
            Route::Refuse { status, error, .. } => (status, error),
            other => panic!("not refused: {other:?}"),
        }
    }

    const HOST: Option<&str> = Some("127.0.0.1:8750");
    const TOKEN: Option<&str> = Some("t0k");

    #[test]
    fn only_this_servers_own_host_names_are_answered() {
        let s = settings("127.0.0.1:8750", false);
        for host in ["127.0.0.1:8750", "localhost:8750", "LOCALHOST:8750", "[::1]:8750"] {
            assert_eq!(route(&s, &Method::GET, "/", with(Some(host), None)), Route::Page, "{host}");
        }
        for host in
            [None, Some("evil.example:8750"), Some("127.0.0.1"), Some("127.0.0.1:80"), Some("localhost.evil:8750")]
        {
            assert_eq!(
                refused(route(&s, &Method::GET, "/api/fleet", with(host, TOKEN))),
                (403, "foreign_host"),
                "{host:?}"
            );
        }
        // Listening elsewhere: only the name given with --public-host, never
        // the bind address, never localhost; and not without a name at all.
        let any: SocketAddr = "0.0.0.0:8750".parse().unwrap();
        assert_eq!(UiSettings::new(any, None, "t".into(), false).unwrap_err(), UiSetupError::NeedsPublicHost(any));
        assert!(UiSettings::new(any, Some("bad host/x".into()), "t".into(), false).is_err());
        let wide = UiSettings::new(any, Some("bastion.example".into()), "t0k".into(), false).unwrap();
        for host in ["bastion.example:8750", "bastion.example"] {
            assert_eq!(route(&wide, &Method::GET, "/", with(Some(host), None)), Route::Page, "{host}");
        }
        for host in ["0.0.0.0:8750", "localhost:8750", "127.0.0.1:8750", "bastion.example:9999"] {
            assert_eq!(refused(route(&wide, &Method::GET, "/", with(Some(host), None))).1, "foreign_host", "{host}");
        }
        assert_eq!(wide.page_url("c0de"), "http://bastion.example:8750/?code=c0de");
        assert_eq!(settings("127.0.0.1:8750", false).page_url("c0de"), "http://127.0.0.1:8750/?code=c0de");
    }

    #[test]
    fn no_refusal_names_the_token() {
        let s = UiSettings::new("127.0.0.1:8750".parse().unwrap(), None, "f00dfeed".repeat(8), true).unwrap();
        for (method, target, host, token, code) in [
            (Method::GET, "/", Some("evil.example:8750"), None, None),
            (Method::GET, "/", None, None, None),
            (Method::GET, "/api/fleet", Some("127.0.0.1:8750"), Some("wrong"), None),
            (Method::POST, "/session", Some("evil.example:8750"), None, Some("x")),
            (Method::POST, "/session", Some("127.0.0.1:8750"), None, None),
            (Method::GET, "/session", Some("127.0.0.1:8750"), None, None),
            (Method::GET, "/nowhere", Some("127.0.0.1:8750"), None, None),
        ] {
            let answer = format!("{:?}", route(&s, &method, target, Presented { host, token, code }));
            assert!(!answer.contains("f00dfeed"), "{method} {target}: {answer}");
        }
    }

    #[test]
    fn a_code_is_spent_once_and_replaced() {
        let code = OneTimeCode::new("first".into());
        assert_eq!(code.redeem("wrong", || "second".into()), None);
        assert_eq!(code.current(), "first", "a wrong code spends nothing");
        assert_eq!(code.redeem("first", || "second".into()), Some("second".into()));
        assert_eq!(code.redeem("first", || "third".into()), None, "spent");
        assert_eq!(code.current(), "second");
        let s = settings("127.0.0.1:8750", false);
        let session =
            |method: Method, code| route(&s, &method, "/session", Presented { host: HOST, token: None, code });
        assert_eq!(session(Method::POST, Some("abc")), Route::Session { code: "abc".into() });
        assert_eq!(refused(session(Method::POST, None)), (400, "missing_code"));
        assert_eq!(refused(session(Method::GET, Some("abc"))), (405, "method_not_allowed"));
    }

    #[test]
    fn api_calls_need_the_token_and_reach_only_the_apis_read_routes() {
        let s = settings("127.0.0.1:8750", false);
        for token in [None, Some(""), Some("t0"), Some("t0k "), Some("T0K")] {
            assert_eq!(
                refused(route(&s, &Method::GET, "/api/fleet", with(HOST, token))),
                (403, "missing_token"),
                "{token:?}"
            );
        }
        let forward = |target: &str| route(&s, &Method::GET, target, with(HOST, TOKEN));
        let id = "01JB0000000000000000000000";
        assert_eq!(forward("/api/fleet"), Route::Forward { method: "GET", path: "/fleet".into() });
        assert_eq!(forward("/api/releases"), Route::Forward { method: "GET", path: "/releases".into() });
        assert_eq!(
            forward(&format!("/api/releases?limit=20&cursor={id}")),
            Route::Forward { method: "GET", path: format!("/releases?limit=20&cursor={id}") }
        );
        assert_eq!(
            forward(&format!("/api/releases/{id}")),
            Route::Forward { method: "GET", path: format!("/releases/{id}") }
        );
        for (target, error) in [
            ("/api/releases?limit=500", "invalid_query"),
            ("/api/releases?x=1", "invalid_query"),
            ("/api/releases?cursor=../../x", "invalid_query"),
            ("/api/releases/..%2F..%2Fhealthz", "invalid_release_id"),
            ("/api/releases/a/b", "no_route"),
            ("/api/reconcile", "no_route"),
            ("/api/healthz", "no_route"),
            ("/api//evil.example/x", "no_route"),
            ("/api/fleet/../../x", "no_route"),
            ("/elsewhere", "not_found"),
        ] {
            assert_eq!(refused(forward(target)).1, error, "{target}");
        }
    }

    #[test]
    fn writes_only_with_allow_writes_and_only_a_rollback() {
        let reading = settings("127.0.0.1:8750", false);
        let writing = settings("127.0.0.1:8750", true);
        let post = |s: &UiSettings, target: &str| route(s, &Method::POST, target, with(HOST, TOKEN));
        assert_eq!(refused(post(&reading, "/api/rollback")), (405, "read_only"));
        assert_eq!(post(&writing, "/api/rollback"), Route::Forward { method: "POST", path: "/rollback".into() });
        for target in ["/api/releases", "/api/reconcile", "/api/releases/01JB0000000000000000000000/abort"] {
            assert!(matches!(post(&writing, target), Route::Refuse { .. }), "{target}");
        }
        assert_eq!(refused(route(&writing, &Method::DELETE, "/api/fleet", with(HOST, TOKEN))), (405, "read_only"));
        assert_eq!(refused(post(&writing, "/")), (405, "method_not_allowed"));
    }

    #[test]
    fn the_page_says_whether_it_may_write_and_the_token_is_random() {
        assert!(page(&settings("127.0.0.1:1", true)).contains("data-writes=\"true\""));
        assert!(page(&settings("127.0.0.1:1", false)).contains("data-writes=\"false\""));
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(a.len() == 64 && a != b && a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_page_builds_no_html_from_strings() {
        // Host output reaches the page: text nodes only, never markup.
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!SCRIPT.contains(sink), "app.js uses {sink}");
        }
        assert!(!PAGE.contains("<script>") && !PAGE.contains("style="), "nothing inline: the CSP forbids it");
    }
}
