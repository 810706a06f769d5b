//! A real headless browser for tests: Debian's `chromium`, driven through `chromedriver`'s
//! WebDriver REST API with a few blocking HTTP/1.1 calls on 127.0.0.1 (no client crate, no
//! browser download). Every process is killed by PID on drop; every wait is bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// Where a Debian system keeps the browser (the binary behind the `/usr/bin/chromium`
/// launcher script) and its driver.
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One blocking HTTP/1.1 request to 127.0.0.1:`port`; returns the status and the JSON body.
fn call(port: u16, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    tcp.set_read_timeout(Some(Duration::from_secs(90))).expect("timeout");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    // Read the head, then the body by its Content-Length (the driver may keep the
    // connection open), or to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut buf).expect("read the answer");
        assert!(n > 0, "chromedriver closed the connection without an answer");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        if length.is_some_and(|n| raw.len() - head_end >= n) {
            break;
        }
        let n = tcp.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let json_text = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    (status, serde_json::from_str(&json_text).unwrap_or(serde_json::Value::Null))
}

impl Driver {
    /// Starts chromedriver, or panics saying what to install.
    pub fn start(log: &Path) -> Driver {
        for exe in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(exe).exists(),
                "{exe} is missing: the dashboard test drives Debian's chromium; install it with \
                 `apt-get install chromium chromium-driver` (.ci/run does)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let (status, v) = call(port, "GET", "/status", None);
                if status == 200 && v["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new browser with a fresh profile in `profile` (so no cookies carry over), with
    /// `extra` command-line flags.
    pub fn browser(&self, profile: &Path, extra: &[String]) -> Browser {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().cloned());
        let caps = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "pageLoadStrategy": "normal",
        }}});
        let (status, v) = call(self.port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "chromedriver could not start chromium: {v}");
        let id = v["value"]["sessionId"].as_str().expect("session id").to_owned();
        Browser { port: self.port, id }
    }
}

/// One browser (a WebDriver session); closed on drop.
pub struct Browser {
    port: u16,
    id: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(self.port, "DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Browser {
    fn cmd(&self, method: &str, what: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let (status, v) = call(self.port, method, &format!("/session/{}/{what}", self.id), body.as_ref());
        assert_eq!(status, 200, "WebDriver {method} {what}: {v}");
        v["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub fn open(&self, url: &str) {
        self.cmd("POST", "url", Some(serde_json::json!({ "url": url })));
    }

    /// The address shown now.
    pub fn url(&self) -> String {
        self.cmd("GET", "url", None).as_str().unwrap_or_default().to_owned()
    }

    /// The page's HTML as the browser has it now.
    pub fn source(&self) -> String {
        self.cmd("GET", "source", None).as_str().unwrap_or_default().to_owned()
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        // One script call rather than an element handle, which a navigation can make stale.
        let script =
            serde_json::json!({ "script": "return document.body ? document.body.innerText : '';", "args": [] });
        self.cmd("POST", "execute/sync", Some(script)).as_str().unwrap_or_default().to_owned()
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "element", Some(serde_json::json!({ "using": "css selector", "value": css })));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_owned()
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("element/{id}/click"), Some(serde_json::json!({})));
    }

    /// Waits until the address ends with `suffix` (bounded).
    pub fn wait_for_path(&self, suffix: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.url();
            if url.split('#').next().unwrap_or_default().ends_with(suffix) {
                return;
            }
            if Instant::now() > deadline {
                panic!("the browser stayed at {url}, not …{suffix}; the page:\n{}", self.source());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the page's source holds `needle` (bounded): after a form posts back to the
    /// page it came from, the path alone does not say the new page is there.
    pub fn wait_for_source(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.source().contains(needle) {
            if Instant::now() > deadline {
                panic!("the page never held `{needle}`; it is:\n{}", self.source());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the page's text holds `needle` (bounded); returns the text.
    pub fn wait_for_text(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("the page never said `{needle}`; it says:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The browser's cookies (HttpOnly ones included: WebDriver sees them, scripts do not).
    pub fn cookies(&self) -> Vec<serde_json::Value> {
        self.cmd("GET", "cookie", None).as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &PathBuf) {
        let b64 = self.cmd("GET", "screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("base64")).expect("png");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}
