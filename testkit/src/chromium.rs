//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol:
//! started with a profile and HOME of the caller's, a page opened at a URL,
//! expressions evaluated in it, screenshots kept under `target/artifacts/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::output::Output;

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// Makes the NSS database Chromium reads under `home` (its HOME) trust the CA
/// in `ca_pem`.
pub fn trust_ca(home: &Path, ca_pem: &Path) {
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    for args in [
        vec!["-d", &db, "-N", "--empty-password"],
        vec![
            "-d",
            &db,
            "-A",
            "-t",
            "C,,",
            "-n",
            "causeway-test-ca",
            "-i",
            ca_pem.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("certutil")
            .args(&args)
            .output()
            .expect("certutil (Debian's libnss3-tools)");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running Chromium, killed when dropped.
pub struct Chromium {
    child: Child,
    devtools: SocketAddr,
    /// The network namespace it runs in, if not this process's.
    netns: Option<String>,
    /// What it printed on stderr.
    pub output: Output,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One page and its DevTools session.
pub struct Page {
    cdp: Socket,
    id: u64,
}

impl Chromium {
    /// Starts Chromium with `args` besides the headless ones, its profile under
    /// `home`, which is also its HOME (where an NSS database may wait).
    pub fn start(home: &Path, args: &[&str]) -> Chromium {
        Chromium::start_in(None, home, args)
    }

    /// As [`Chromium::start`], in network namespace `netns` (a name `ip netns`
    /// knows; root): its only networks are that namespace's, and its DevTools
    /// endpoint is reached from there.
    pub fn start_in(netns: Option<&str>, home: &Path, args: &[&str]) -> Chromium {
        let profile = home.join("profile");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/bin/chromium"]);
                c
            }
            None => Command::new("/usr/bin/chromium"),
        };
        let mut child = cmd
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .arg("about:blank")
            .env("HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let output = Output::of(&mut child);
        let line = output
            .wait_line(Duration::from_secs(120), |l| {
                l.starts_with("DevTools listening on ")
            })
            .unwrap_or_else(|| {
                panic!(
                    "chromium printed no DevTools address within 120 s:\n{}",
                    output.tail(40)
                )
            });
        let ws_url = line["DevTools listening on ".len()..].trim().to_string();
        let devtools = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Chromium {
            child,
            devtools,
            netns: netns.map(str::to_string),
            output,
        }
    }

    /// A new page at `url`.
    pub fn open(&self, url: &str) -> Page {
        let body = devtools_http(
            connect_in(self.netns.as_deref(), self.devtools),
            self.devtools,
            "PUT",
            &format!("/json/new?{url}"),
        );
        let page: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("DevTools /json/new: {e}: {body:?}"));
        let ws = page["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("DevTools /json/new: no webSocketDebuggerUrl: {body}"))
            .to_string();
        let stream = tungstenite::stream::MaybeTlsStream::Plain(connect_in(
            self.netns.as_deref(),
            self.devtools,
        ));
        let (cdp, _) = tungstenite::client(ws.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools session {ws}: {e}"));
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = cdp.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        let mut page = Page { cdp, id: 0 };
        page.call("Page.navigate", serde_json::json!({ "url": url }));
        page
    }
}

impl Page {
    /// Calls a DevTools method and returns its answer.
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.id += 1;
        let msg = serde_json::json!({ "id": self.id, "method": method, "params": params });
        self.cdp
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        loop {
            let m = self
                .cdp
                .read()
                .unwrap_or_else(|e| panic!("DevTools {method}: no answer: {e}"));
            let v: serde_json::Value =
                serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or_default();
            if v["id"] == self.id {
                return v;
            }
        }
    }

    /// The string value of `expression` in the page.
    pub fn eval(&mut self, expression: &str) -> String {
        let v = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression }),
        );
        v["result"]["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Evaluates `expression` until `done` holds for it or `within` passes;
    /// the last value.
    pub fn poll(
        &mut self,
        expression: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        let mut value = String::new();
        while start.elapsed() < within {
            value = self.eval(expression);
            if done(&value) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        value
    }

    /// Keeps a PNG screenshot of the page as `target/artifacts/<name>`.
    pub fn screenshot(&mut self, name: &str) {
        let shot = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png" }),
        );
        if let Some(data) = shot["result"]["data"].as_str() {
            use base64::Engine;
            if let Ok(png) = base64::engine::general_purpose::STANDARD.decode(data) {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(name), png);
            }
        }
    }
}

/// A TCP connection to the DevTools endpoint at `addr`, made from network
/// namespace `netns` if given (on a thread of its own that enters it: the
/// socket stays that namespace's wherever it is used).
fn connect_in(netns: Option<&str>, addr: SocketAddr) -> TcpStream {
    let Some(ns) = netns else {
        return TcpStream::connect(addr).unwrap_or_else(|e| panic!("DevTools {addr}: {e}"));
    };
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || -> std::io::Result<TcpStream> {
        let f = std::fs::File::open(&path)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        TcpStream::connect(addr)
    })
    .join()
    .unwrap_or_else(|_| panic!("DevTools {addr} in {ns}: the thread panicked"))
    .unwrap_or_else(|e| panic!("DevTools {addr} in {ns}: {e}"))
}

/// One HTTP request to the DevTools endpoint over `s`; returns the body.
fn devtools_http(mut s: TcpStream, addr: SocketAddr, method: &str, path: &str) -> String {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if len.is_some_and(|l| body.len() >= l) {
                return body.to_string();
            }
        }
    }
    String::from_utf8_lossy(&buf)
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
