//! `flakefleet ui`: the status page, served on this machine the way
//! `kubectl proxy` serves a cluster's API. A browser cannot sign SigV4, so
//! the page's API calls come here and are forwarded to the function URL,
//! signed with the operator's own credentials. Since whoever reaches this
//! server borrows those credentials, it refuses what it was not started for
//! (see [`route`]): a foreign `Host` (DNS rebinding), an API call without the
//! per-run token, any write unless `--allow-writes`, any path that is not one
//! of the API's own read routes.

use super::{CallError, FunctionUrl, Reply};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Where the page's API calls carry the token: a custom header, which a
/// cross-origin page cannot send without a CORS preflight this server never answers.
pub const TOKEN_HEADER: &str = "x-flakefleet-token";

/// Nothing is loaded from elsewhere, nothing runs inline, nothing frames the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The largest body the page ever sends (a rollback request).
const MAX_BODY: usize = 4096;

/// How this server was started.
#[derive(Clone, Debug)]
pub struct UiSettings {
    pub listen: SocketAddr,
    pub token: String,
    pub allow_writes: bool,
}

impl UiSettings {
    /// The `Host` values a browser sends to this server: the address it
    /// listens on, and `localhost` when that is loopback. Anything else is a
    /// name some other site resolved to this machine.
    fn allowed_hosts(&self) -> Vec<String> {
        let port = self.listen.port();
        let mut hosts = vec![self.listen.to_string()];
        if self.listen.ip().is_loopback() {
            hosts.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
        }
        hosts
    }

    /// The address to open, token included (as Jupyter prints it).
    pub fn page_url(&self) -> String {
        format!("http://{}/?token={}", self.listen, self.token)
    }
}

/// A random per-run token: 32 bytes from the system's generator, as hex.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system's random generator failed".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Page,
    Script,
    Style,
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

/// Decides what a request may do, from its method, path and query, `Host`
/// and token header alone.
pub fn route(settings: &UiSettings, method: &Method, target: &str, host: Option<&str>, token: Option<&str>) -> Route {
    let hosts = settings.allowed_hosts();
    if !host.is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h))) {
        return refuse(
            403,
            "foreign_host",
            format!("this server answers only to Host {}; open {}", hosts[0], settings.page_url()),
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
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
    if !token.is_some_and(|t| same(t.as_bytes(), settings.token.as_bytes())) {
        return refuse(
            403,
            "missing_token",
            "every API call needs this run's token: open the URL `flakefleet ui` printed (it holds ?token=…)",
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

async fn handle(settings: &UiSettings, function: &FunctionUrl, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let token = request.headers().get(TOKEN_HEADER).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    match route(settings, request.method(), &target, host.as_deref(), token.as_deref()) {
        Route::Page => respond(200, "text/html; charset=utf-8", page(settings)),
        Route::Script => respond(200, "text/javascript; charset=utf-8", SCRIPT),
        Route::Style => respond(200, "text/css; charset=utf-8", STYLE),
        Route::Refuse { status, error, message } => error_body(status, error, &message),
        Route::Forward { method: "GET", path } => forwarded(function.call("GET", &path, None).await),
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
                Ok(value @ Value::Object(_)) => forwarded(function.call(method, &path, Some(&value)).await),
                _ => error_body(400, "invalid_json", "the body must be a JSON object"),
            }
        }
    }
}

/// Serves until the process is stopped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: UiSettings,
    function: FunctionUrl,
) -> std::io::Result<()> {
    let shared = Arc::new((settings, function));
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared.0, &shared.1, request).await) }
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
        UiSettings { listen: listen.parse().unwrap(), token: "t0k".into(), allow_writes }
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
            assert_eq!(route(&s, &Method::GET, "/", Some(host), None), Route::Page, "{host}");
        }
        for host in
            [None, Some("evil.example:8750"), Some("127.0.0.1"), Some("127.0.0.1:80"), Some("localhost.evil:8750")]
        {
            assert_eq!(refused(route(&s, &Method::GET, "/api/fleet", host, TOKEN)), (403, "foreign_host"), "{host:?}");
        }
        // Listening elsewhere: that address only, never localhost.
        let wide = settings("10.0.0.5:8750", false);
        assert_eq!(route(&wide, &Method::GET, "/", Some("10.0.0.5:8750"), None), Route::Page);
        assert_eq!(refused(route(&wide, &Method::GET, "/", Some("localhost:8750"), None)).1, "foreign_host");
    }

    #[test]
    fn api_calls_need_the_token_and_reach_only_the_apis_read_routes() {
        let s = settings("127.0.0.1:8750", false);
        for token in [None, Some(""), Some("t0"), Some("t0k "), Some("T0K")] {
            assert_eq!(
                refused(route(&s, &Method::GET, "/api/fleet", HOST, token)),
                (403, "missing_token"),
                "{token:?}"
            );
        }
        let forward = |target: &str| route(&s, &Method::GET, target, HOST, TOKEN);
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
        let post = |s: &UiSettings, target: &str| route(s, &Method::POST, target, HOST, TOKEN);
        assert_eq!(refused(post(&reading, "/api/rollback")), (405, "read_only"));
        assert_eq!(post(&writing, "/api/rollback"), Route::Forward { method: "POST", path: "/rollback".into() });
        for target in ["/api/releases", "/api/reconcile", "/api/releases/01JB0000000000000000000000/abort"] {
            assert!(matches!(post(&writing, target), Route::Refuse { .. }), "{target}");
        }
        assert_eq!(refused(route(&writing, &Method::DELETE, "/api/fleet", HOST, TOKEN)), (405, "read_only"));
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
