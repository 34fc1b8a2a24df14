//! A headless Chromium driven over W3C WebDriver: Debian's `chromium` and
//! `chromium-driver` (dev/setup.sh installs them), spoken to with curl. The
//! driver's path is given explicitly, so nothing is ever downloaded; no
//! WebDriver crate is compiled for it.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One WebDriver call: its `value`, or a panic with the driver's error.
fn call(method: &str, url: &str, body: Option<&Value>) -> Value {
    let mut command = Command::new("curl");
    command.args(["-s", "-X", method, url, "-H", "Content-Type: application/json"]);
    if let Some(body) = body {
        command.args(["--data-binary", &body.to_string()]);
    }
    let output = command.output().expect("curl runs");
    let answer: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{method} {url}: {}", String::from_utf8_lossy(&output.stdout)));
    if let Some(error) = answer["value"]["error"].as_str() {
        panic!("{method} {url}: {error}: {}", answer["value"]["message"]);
    }
    answer["value"].clone()
}

impl Browser {
    /// A fresh headless Chromium (as root it needs `--no-sandbox`), `width` px wide.
    pub fn start(width: u32, height: u32) -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: dev/setup.sh installs Debian's chromium and chromium-driver"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while Command::new("curl")
            .args(["-sf", &format!("{base}/status")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not answer on {base}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", format!("--window-size={width},{height}")
            ]}
        }}});
        let session = call("POST", &format!("{base}/session"), Some(&capabilities))["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Self { driver, base, session }
    }

    fn at(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    pub fn open(&self, url: &str) {
        call("POST", &self.at("/url"), Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page; answers what it returns.
    pub fn run(&self, script: &str) -> Value {
        call("POST", &self.at("/execute/sync"), Some(&json!({ "script": script, "args": [] })))
    }

    /// Runs `script` until it returns something truthy (not false, null, 0
    /// or ""); answers that. Panics after `within`, with the page's text.
    pub fn wait_for(&self, what: &str, script: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            let value = self.run(script);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if started.elapsed() > within {
                self.screenshot(".dev/ui-failure.png");
                panic!("waited {within:?} for {what}; the page says:\n{}", self.run("return document.body.innerText"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Presses Tab once, as a keyboard would.
    pub fn tab(&self) {
        let keys = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": "\u{E004}"}, {"type": "keyUp", "value": "\u{E004}"}]}]});
        call("POST", &self.at("/actions"), Some(&keys));
    }

    /// Lays the page out as a phone `width` px wide would (Chromium's window
    /// has a minimum width; its DevTools emulation has none).
    pub fn emulate_width(&self, width: u32, height: u32) {
        let params = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true});
        let command = json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params});
        call("POST", &self.at("/goog/cdp/execute"), Some(&command));
    }

    pub fn desktop(&self) {
        let command = json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}});
        call("POST", &self.at("/goog/cdp/execute"), Some(&command));
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &str) {
        use base64::Engine;
        let png = call("GET", &self.at("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).unwrap();
        if let Some(dir) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("curl").args(["-s", "-X", "DELETE", &self.at("")]).output();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
