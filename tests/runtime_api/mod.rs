//! A minimal Lambda Runtime API on 127.0.0.1, one per Lambda process: the
//! process asks for its next event, gets the one handed to `invoke`, and posts
//! its answer back. Shared by the integration tests (several copies of the
//! Lambda at once) and `make bench` (examples/bench.rs includes this file).

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

type Pending = (Value, oneshot::Sender<Value>);

/// The Runtime API one Lambda process talks to.
pub struct RuntimeApi {
    pub port: u16,
    events: mpsc::Sender<Pending>,
    /// When the process first asked for an event: its init was done.
    pub first_poll: Arc<Mutex<Option<Instant>>>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (events, queue) = mpsc::channel::<Pending>(16);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let waiting: Arc<Mutex<Option<oneshot::Sender<Value>>>> = Arc::default();
        let first_poll: Arc<Mutex<Option<Instant>>> = Arc::default();
        let polled = first_poll.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            while let Ok((mut socket, _)) = listener.accept().await {
                let (head, body) = read_request(&mut socket).await;
                let line = head.lines().next().unwrap_or("").to_owned();
                if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
                    polled.lock().unwrap().get_or_insert_with(Instant::now);
                    let (queue, waiting) = (queue.clone(), waiting.clone());
                    seq += 1;
                    let id = format!("invocation-{seq}");
                    tokio::spawn(async move {
                        let Some((event, reply)) = queue.lock().await.recv().await else { return };
                        *waiting.lock().unwrap() = Some(reply);
                        let deadline =
                            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                                + 60_000;
                        let body = event.to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {id}\r\n\
                             lambda-runtime-deadline-ms: {deadline}\r\n\
                             lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:flakefleet\r\n\
                             lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    });
                } else {
                    // .../response, .../error, /init/error: hand the answer to whoever waits.
                    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let answer = if line.contains("/response ") { answer } else { json!({ "lambda_error": answer }) };
                    if let Some(reply) = waiting.lock().unwrap().take() {
                        let _ = reply.send(answer);
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                }
            }
        });
        Self { port, events, first_poll }
    }

    /// Hands the process one event; answers its response (or
    /// `{"lambda_error": …}` when it reported an error).
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Value {
        let (reply, answer) = oneshot::channel();
        self.events.send((event, reply)).await.unwrap();
        tokio::time::timeout(timeout, answer).await.expect("an answer in time").unwrap()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&data).into(), Vec::new()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    while data.len() < head_end + length {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    (head, data[head_end..].to_vec())
}

/// The command that starts `program` as the Lambda service would start a
/// function's process: a clean environment with the Runtime API's address,
/// the function's own variables, a region and local credentials. Callers add
/// the AWS endpoints and flakefleet's configuration.
pub fn lambda_process(program: &str, api: &RuntimeApi, function: &str) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}
