//! A small Chrome DevTools Protocol driver for the console's end-to-end test: Debian's
//! `chromium` headless in a process group of its own (killed whole when the `Browser` is
//! dropped), one page attached over the browser's websocket with a flat session, and the few
//! commands a test needs: navigate, evaluate (promises awaited, JSON back), waits with a timeout
//! and a clear failure (the page's URL, a text snippet and a screenshot), real mouse clicks and
//! drags, typing, screenshots, a time zone, downloads into a temp dir. Console errors and
//! uncaught exceptions in the page are collected and fail the next wait (or `finish`).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Debian's launcher (`apt-get install chromium`); `TRAILHUB_CHROMIUM` names another binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The default bound of every wait: generous, since CI runs this beside the whole suite on two
/// cores (a passing wait returns as soon as its condition holds).
pub const WAIT: Duration = Duration::from_secs(30);

/// The bound of one DevTools command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the browser may take to open its DevTools socket.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The viewport of every page (and so of every screenshot).
pub const VIEWPORT: (u32, u32) = (1400, 900);

type Reply = Result<Value, Value>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// What the page reported on its own: errors, loads, downloads.
#[derive(Default)]
struct Seen {
    /// Console errors, uncaught exceptions, failed loads, crashes, as one line each.
    errors: Vec<String>,
    /// How many errors the test has already been shown (or allowed).
    errors_checked: usize,
    /// `load` events of the page's main frame.
    loads: u64,
    /// Downloads by guid: the file name the page suggested, and the state.
    downloads: Vec<Download>,
}

#[derive(Clone, Debug)]
pub struct Download {
    pub guid: String,
    pub suggested: String,
    pub state: String,
    pub taken: bool,
}

/// The chromium process group: killed (SIGKILL to the whole group) and reaped on drop, so no
/// renderer, zygote or utility process outlives the test, passed or failed.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created with
        // `process_group(0)` (its id is the child's pid); no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        // the group's other members die (and are reaped by init) a moment later: wait, bounded,
        // until none is left, so that the test ends with no chromium process at all
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only asks whether any process of the group still exists
        while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A headless Chromium with one page.
pub struct Browser {
    tx: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    seen: Arc<Mutex<Seen>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Substrings of errors the test expects (a refused token, a form the API rejects).
    allowed: Mutex<Vec<String>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    downloads: tempfile::TempDir,
    // dropped last: the process (its drop kills the group), then its profile dir
    _process: Process,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // `_process` is dropped after this, killing the group
    }
}

/// The chromium binary, or a failure that says how to install it (never a silent skip).
fn chromium_binary() -> PathBuf {
    let bin = std::env::var_os("TRAILHUB_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CHROMIUM));
    assert!(
        bin.exists(),
        "{} is missing: the console's end-to-end test drives Debian's headless Chromium. \
         Install it with `apt-get update && apt-get install -y chromium` (.ci/run does), or set \
         TRAILHUB_CHROMIUM to a Chromium binary",
        bin.display()
    );
    bin
}

impl Browser {
    /// Starts chromium headless and attaches to a fresh page.
    pub async fn launch() -> Browser {
        let bin = chromium_binary();
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("downloads dir");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
            "--lang=en-US",
        ])
        .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // a group of its own, so that drop can kill every process chromium forks
        .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let process = Process { child };

        // read stderr to its end on a thread: the DevTools line, then the rest is drained (a
        // full pipe would stall the browser) keeping the last lines for failure messages
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel::<String>();
        {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = url_tx.send(url.trim().to_string());
                    }
                    // headless without a session bus: noise
                    if line.contains("dbus") {
                        continue;
                    }
                    if let Ok(mut t) = tail.lock() {
                        if t.len() >= 40 {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            });
        }
        let ws_url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(LAUNCH_TIMEOUT))
            .await
            .expect("stderr reader");
        let ws_url = match ws_url {
            Ok(url) => url,
            Err(_) => {
                let tail: Vec<String> = stderr_tail
                    .lock()
                    .map(|t| t.iter().cloned().collect())
                    .unwrap_or_default();
                panic!(
                    "chromium did not print its DevTools address within {LAUNCH_TIMEOUT:?}; \
                     its stderr ended with:\n{}",
                    tail.join("\n")
                );
            }
        };
        let (ws, _) = tokio::time::timeout(
            LAUNCH_TIMEOUT,
            tokio_tungstenite::connect_async(ws_url.as_str()),
        )
        .await
        .unwrap_or_else(|_| panic!("connecting to {ws_url} timed out"))
        .unwrap_or_else(|e| panic!("connecting to {ws_url}: {e}"));
        let (mut sink, mut stream) = ws.split();

        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let reader = {
            let pending = pending.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let text = match m {
                        Message::Text(t) => t.to_string(),
                        Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        let reply = match v.get("error") {
                            Some(e) => Err(e.clone()),
                            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                        };
                        let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(w) = waiter {
                            let _ = w.send(reply);
                        }
                    } else if let Some(method) = v.get("method").and_then(Value::as_str) {
                        if let Ok(mut s) = seen.lock() {
                            on_event(&mut s, method, &v["params"]);
                        }
                    }
                }
                // the socket closed: fail every waiter at once rather than at its timeout
                if let Ok(mut p) = pending.lock() {
                    for (_, w) in p.drain() {
                        let _ = w.send(Err(json!({"message": "the DevTools socket closed"})));
                    }
                }
            })
        };

        let mut browser = Browser {
            tx,
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            seen,
            stderr_tail,
            allowed: Mutex::new(Vec::new()),
            tasks: vec![reader, writer],
            downloads,
            _process: process,
            _profile: profile,
        };
        let dir = browser.downloads.path().display().to_string();
        browser
            .command(
                None,
                "Browser.setDownloadBehavior",
                json!({"behavior": "allowAndName", "downloadPath": dir, "eventsEnabled": true}),
            )
            .await;
        let target = browser
            .command(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser
            .command(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": VIEWPORT.0, "height": VIEWPORT.1, "deviceScaleFactor": 1,
                    "mobile": false}),
            )
            .await;
        browser
    }

    /// One DevTools command to the browser (`session` None) or to a page session; panics on
    /// an error answer or after `COMMAND_TIMEOUT`.
    async fn command(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_command(session, method, params).await {
            Ok(v) => v,
            Err(e) => panic!("DevTools {method} failed: {e}{}", self.stderr_note()),
        }
    }

    async fn try_command(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, tx);
        if self.tx.send(Message::text(msg.to_string())).is_err() {
            return Err("the DevTools socket is closed".into());
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())),
            Ok(Err(_)) => Err("the DevTools reader stopped".into()),
            Err(_) => {
                self.pending.lock().expect("pending").remove(&id);
                Err(format!("no answer within {COMMAND_TIMEOUT:?}"))
            }
        }
    }

    /// A command to the page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.command(Some(&session), method, params).await
    }

    fn stderr_note(&self) -> String {
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().rev().take(8).rev().cloned().collect())
            .unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("\nchromium's last stderr lines:\n{}", tail.join("\n"))
        }
    }

    /// The page's clock in this IANA zone (`Intl`, `Date`), from now on.
    pub async fn set_timezone(&self, zone: &str) {
        self.call("Emulation.setTimezoneOverride", json!({"timezoneId": zone}))
            .await;
    }

    /// Opens `url` and waits for the document to be complete (a new document's `load`, or a
    /// same-document change of the hash).
    pub async fn goto(&self, url: &str) {
        let loads = self.seen().loads;
        let nav = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url}: {e}");
        }
        if nav.get("loaderId").and_then(Value::as_str).is_some() {
            self.wait_loaded(loads, url).await;
        }
        self.wait_until(
            &format!("the document at {url} is complete"),
            "document.readyState === 'complete'",
        )
        .await;
    }

    /// Reloads the page and waits for the new document.
    pub async fn reload(&self) {
        let loads = self.seen().loads;
        self.call("Page.reload", json!({})).await;
        self.wait_loaded(loads, "the reloaded page").await;
        self.wait_until(
            "the reloaded document is complete",
            "document.readyState === 'complete'",
        )
        .await;
    }

    /// `history.back()` and a wait for the hash route that follows.
    pub async fn back(&self) {
        self.eval("history.back()").await;
    }

    async fn wait_loaded(&self, before: u64, what: &str) {
        let deadline = Instant::now() + WAIT;
        while self.seen().loads <= before {
            if Instant::now() > deadline {
                self.fail(&format!("{what} did not load within {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("seen")
    }

    /// Evaluates `expr` in the page (a promise is awaited) and returns its value as JSON, or
    /// the exception it threw.
    pub async fn try_eval(&self, expr: &str) -> Result<Value, String> {
        let session = self.session.clone();
        let r = self
            .try_command(
                Some(&session),
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true,
                    "userGesture": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or(ex["text"].as_str())
                .unwrap_or("an exception");
            return Err(text.to_string());
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// The same, failing the test on an exception.
    pub async fn eval(&self, expr: &str) -> Value {
        match self.try_eval(expr).await {
            Ok(v) => v,
            Err(e) => panic!(
                "{}",
                self.failure(&format!("evaluating `{expr}`: {e}")).await
            ),
        }
    }

    /// Waits (up to `WAIT`) until `expr` is truthy and returns its value; fails with `what`.
    pub async fn wait_until(&self, what: &str, expr: &str) -> Value {
        self.wait_until_for(what, expr, WAIT).await
    }

    /// The same with a bound of its own.
    pub async fn wait_until_for(&self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_errors().await;
            let last = match self.try_eval(expr).await {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => format!("it was {v}"),
                // a navigation can swap the context under a poll: try again
                Err(e) => format!("it threw {e}"),
            };
            if Instant::now() > deadline {
                self.fail(&format!("waited {timeout:?} for {what} (`{expr}`); {last}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an element matching `selector` is shown (in the layout, not `hidden`).
    pub async fn wait_for(&self, selector: &str) {
        self.wait_until(
            &format!("`{selector}` to be shown"),
            &format!("(() => {{ const e = document.querySelector({}); return !!e && e.getClientRects().length > 0; }})()", js(selector)),
        )
        .await;
    }

    /// Waits until `selector` matches at least `n` elements; returns how many.
    pub async fn wait_count(&self, selector: &str, n: usize) -> usize {
        let v = self
            .wait_until(
                &format!("{n} or more `{selector}`"),
                &format!(
                    "(() => {{ const k = document.querySelectorAll({}).length; return k >= {n} ? k : 0; }})()",
                    js(selector)
                ),
            )
            .await;
        v.as_u64().unwrap_or(0) as usize
    }

    /// How many elements match `selector` now.
    pub async fn count(&self, selector: &str) -> usize {
        self.eval(&format!(
            "document.querySelectorAll({}).length",
            js(selector)
        ))
        .await
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// The text of the first element matching `selector` (waited for).
    pub async fn text(&self, selector: &str) -> String {
        let v = self
            .wait_until(
                &format!("`{selector}` to exist"),
                &format!(
                    "(() => {{ const e = document.querySelector({}); return e ? [e.textContent] : null; }})()",
                    js(selector)
                ),
            )
            .await;
        v[0].as_str().unwrap_or_default().to_string()
    }

    /// An attribute of the first element matching `selector` (waited for); None if unset.
    pub async fn attr(&self, selector: &str, name: &str) -> Option<String> {
        let v = self
            .wait_until(
                &format!("`{selector}` to exist"),
                &format!(
                    "(() => {{ const e = document.querySelector({}); return e ? [e.getAttribute({})] : null; }})()",
                    js(selector),
                    js(name)
                ),
            )
            .await;
        v[0].as_str().map(str::to_string)
    }

    /// The centre of the element, scrolled into view, if nothing covers it there.
    async fn hit_point(&self, selector: &str) -> Value {
        self.wait_until(
            &format!("`{selector}` to be shown and not covered"),
            &format!(
                "(() => {{ const e = document.querySelector({});
                  if (!e || e.getClientRects().length === 0) return null;
                  e.scrollIntoView({{block: 'center', inline: 'nearest'}});
                  const r = e.getBoundingClientRect();
                  const x = r.left + r.width / 2, y = r.top + r.height / 2;
                  const h = document.elementFromPoint(x, y);
                  if (!h || !(h === e || e.contains(h))) return null;
                  return {{x, y}}; }})()",
                js(selector)
            ),
        )
        .await
    }

    /// A real left click (pressed and released) at the centre of the element.
    pub async fn click(&self, selector: &str) {
        let p = self.hit_point(selector).await;
        let (x, y) = (
            p["x"].as_f64().unwrap_or(0.0),
            p["y"].as_f64().unwrap_or(0.0),
        );
        self.mouse("mouseMoved", x, y, 0).await;
        self.mouse("mousePressed", x, y, 1).await;
        self.mouse("mouseReleased", x, y, 0).await;
    }

    async fn mouse(&self, kind: &str, x: f64, y: f64, buttons: u32) {
        let mut p = json!({"type": kind, "x": x, "y": y, "buttons": buttons});
        if kind != "mouseMoved" {
            p["button"] = json!("left");
            p["clickCount"] = json!(1);
        } else if buttons == 1 {
            p["button"] = json!("left");
        }
        self.call("Input.dispatchMouseEvent", p).await;
    }

    /// A drag with the left button from one viewport point to another, in steps.
    pub async fn drag(&self, from: (f64, f64), to: (f64, f64)) {
        self.mouse("mouseMoved", from.0, from.1, 0).await;
        self.mouse("mousePressed", from.0, from.1, 1).await;
        for i in 1..=8 {
            let t = f64::from(i) / 8.0;
            let x = from.0 + (to.0 - from.0) * t;
            let y = from.1 + (to.1 - from.1) * t;
            self.mouse("mouseMoved", x, y, 1).await;
        }
        self.mouse("mouseReleased", to.0, to.1, 0).await;
    }

    /// Types `text` into an input or textarea (cleared first, focused, then the text inserted
    /// as a keyboard would, with `input` events, then `change`); a select gets the option of
    /// that value.
    pub async fn fill(&self, selector: &str, text: &str) {
        let kind = self
            .wait_until(
                &format!("`{selector}` to be shown to type into"),
                &format!(
                    "(() => {{ const e = document.querySelector({});
                      if (!e || e.getClientRects().length === 0) return null;
                      e.scrollIntoView({{block: 'center', inline: 'nearest'}});
                      e.focus();
                      if (e.tagName === 'SELECT') return 'select';
                      const t = (e.type || '').toLowerCase();
                      if (['text', 'password', 'search', 'email', 'url', 'tel', 'number', 'textarea', ''].includes(t)) {{
                        e.select && e.select();
                        e.value = ''; e.dispatchEvent(new Event('input', {{bubbles: true}}));
                        return 'text';
                      }}
                      return 'other'; }})()",
                    js(selector)
                ),
            )
            .await;
        if kind == "text" {
            if !text.is_empty() {
                self.call("Input.insertText", json!({"text": text})).await;
            }
            let ok = self
                .eval(&format!(
                    "(() => {{ const e = document.querySelector({}); e.dispatchEvent(new Event('change', {{bubbles: true}})); return e.value === {}; }})()",
                    js(selector),
                    js(text)
                ))
                .await;
            if ok != Value::Bool(true) {
                self.fail(&format!(
                    "typing {text:?} into `{selector}` did not set its value"
                ))
                .await;
            }
        } else {
            let ok = self
                .eval(&format!(
                    "(() => {{ const e = document.querySelector({}); const v = {};
                      if (e.tagName === 'SELECT' && ![...e.options].some(o => o.value === v)) return 'no option ' + v + ' among ' + [...e.options].map(o => o.value).join(',');
                      e.value = v;
                      e.dispatchEvent(new Event('input', {{bubbles: true}}));
                      e.dispatchEvent(new Event('change', {{bubbles: true}}));
                      return e.value === v ? true : 'value is ' + e.value; }})()",
                    js(selector),
                    js(text)
                ))
                .await;
            if ok != Value::Bool(true) {
                self.fail(&format!("setting `{selector}` to {text:?}: {ok}"))
                    .await;
            }
        }
    }

    /// Selects exactly these option values of a `<select multiple>`.
    pub async fn select_many(&self, selector: &str, values: &[&str]) {
        let ok = self
            .wait_until(
                &format!("`{selector}` to offer {values:?}"),
                &format!(
                    "(() => {{ const e = document.querySelector({}); const want = {};
                      if (!e) return null;
                      const opts = [...e.options];
                      if (!want.every(v => opts.some(o => o.value === v))) return null;
                      for (const o of opts) o.selected = want.includes(o.value);
                      e.dispatchEvent(new Event('input', {{bubbles: true}}));
                      e.dispatchEvent(new Event('change', {{bubbles: true}}));
                      return true; }})()",
                    js(selector),
                    serde_json::to_string(values).expect("json")
                ),
            )
            .await;
        assert_eq!(ok, Value::Bool(true));
    }

    /// A PNG of the top of the page (scrolled back there) written to `path` (its directory
    /// created).
    pub async fn screenshot(&self, path: &Path) {
        // the top of the page, as a person arriving sees it; then let pending frames paint (a
        // chart drawn in the last task, a fresh row)
        let _ = self
            .try_eval(
                "window.scrollTo(0, 0); new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
            )
            .await;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "fromSurface": true}),
            )
            .await;
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Waits for the next completed download not yet taken: the name the page suggested, and
    /// the file's bytes.
    pub async fn wait_download(&self, timeout: Duration) -> (String, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_errors().await;
            let done = {
                let mut s = self.seen();
                let d = s
                    .downloads
                    .iter_mut()
                    .find(|d| !d.taken && d.state == "completed");
                d.map(|d| {
                    d.taken = true;
                    d.clone()
                })
            };
            if let Some(d) = done {
                let path = self.downloads.path().join(&d.guid);
                let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("download {} at {}: {e}", d.suggested, path.display())
                });
                return (d.suggested, bytes);
            }
            let canceled = self
                .seen()
                .downloads
                .iter()
                .find(|d| !d.taken && d.state == "canceled")
                .cloned();
            if let Some(d) = canceled {
                self.fail(&format!("the download of {} was canceled", d.suggested))
                    .await;
            }
            if Instant::now() > deadline {
                let all = self.seen().downloads.clone();
                self.fail(&format!(
                    "no download completed within {timeout:?}; downloads seen: {all:?}"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Errors containing `needle` are expected from now on (a refused token, a form the API
    /// rejects answer 4xx, which Chromium logs as a failed load).
    pub fn allow_error(&self, needle: &str) {
        self.allowed
            .lock()
            .expect("allowed")
            .push(needle.to_string());
    }

    /// Fails the test if the page logged an error or threw since the last check.
    pub async fn check_errors(&self) {
        let allowed = self.allowed.lock().expect("allowed").clone();
        let fresh: Vec<String> = {
            let mut s = self.seen();
            let new = s.errors[s.errors_checked..]
                .iter()
                .filter(|e| !allowed.iter().any(|a| e.contains(a.as_str())))
                .cloned()
                .collect();
            s.errors_checked = s.errors.len();
            new
        };
        if !fresh.is_empty() {
            self.fail(&format!(
                "the page reported errors:\n  {}",
                fresh.join("\n  ")
            ))
            .await;
        }
    }

    /// The last check: no error left unseen.
    pub async fn finish(&self) {
        // a last frame for late exceptions of the last action
        let _ = self.try_eval("new Promise(r => setTimeout(r, 100))").await;
        self.check_errors().await;
    }

    /// Fails the test with `what` (see `failure`).
    pub async fn fail(&self, what: &str) {
        let message = self.failure(what).await;
        panic!("{message}");
    }

    /// `what`, the page's address and the start of its text, and a screenshot of the moment
    /// under the target dir: the message a failing test ends with.
    pub async fn failure(&self, what: &str) -> String {
        let at = self
            .try_eval("location.href")
            .await
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|e| format!("(unknown: {e})"));
        let text = self
            .try_eval("document.body ? document.body.innerText.slice(0, 1200) : ''")
            .await
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("console-e2e-failure-{}.png", std::process::id()));
        let shot_note = match self
            .try_command(
                Some(&self.session.clone()),
                "Page.captureScreenshot",
                json!({"format": "png"}),
            )
            .await
        {
            Ok(v) => {
                let png = base64::engine::general_purpose::STANDARD
                    .decode(v["data"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                match std::fs::write(&shot, png) {
                    Ok(()) => format!("\nscreenshot: {}", shot.display()),
                    Err(_) => String::new(),
                }
            }
            Err(_) => String::new(),
        };
        let allowed = self.allowed.lock().map(|a| a.clone()).unwrap_or_default();
        let errors: Vec<String> = self
            .seen()
            .errors
            .iter()
            .map(|e| {
                if allowed.iter().any(|a| e.contains(a.as_str())) {
                    format!("{e} (expected)")
                } else {
                    e.clone()
                }
            })
            .collect();
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!("\nerrors the page reported:\n  {}", errors.join("\n  "))
        };
        format!(
            "{what}\npage: {at}\ntext: {}{errors}{shot_note}{}",
            text.replace('\n', " | "),
            self.stderr_note()
        )
    }
}

/// A DevTools event: errors the page reported, loads, downloads.
fn on_event(s: &mut Seen, method: &str, p: &Value) {
    match method {
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            let what = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("an exception");
            s.errors.push(format!(
                "uncaught: {what} ({}:{})",
                d["url"].as_str().unwrap_or(""),
                d["lineNumber"]
            ));
        }
        "Runtime.consoleAPICalled" => {
            let kind = p["type"].as_str().unwrap_or("");
            if kind == "error" || kind == "assert" {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x.get("value")
                                    .map(|v| {
                                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                                    })
                                    .or_else(|| x["description"].as_str().map(str::to_string))
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                s.errors.push(format!("console.{kind}: {}", args.join(" ")));
            }
        }
        "Log.entryAdded" => {
            let e = &p["entry"];
            // the browser's own request for /favicon.ico is not the page's doing
            let favicon = e["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/favicon.ico"));
            if e["level"].as_str() == Some("error") && !favicon {
                s.errors.push(format!(
                    "{} error: {} {}",
                    e["source"].as_str().unwrap_or("log"),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                ));
            }
        }
        "Inspector.targetCrashed" | "Target.targetCrashed" => {
            s.errors.push("the page's renderer crashed".into());
        }
        "Page.loadEventFired" => s.loads += 1,
        "Browser.downloadWillBegin" => s.downloads.push(Download {
            guid: p["guid"].as_str().unwrap_or("").to_string(),
            suggested: p["suggestedFilename"].as_str().unwrap_or("").to_string(),
            state: "inProgress".into(),
            taken: false,
        }),
        "Browser.downloadProgress" => {
            let guid = p["guid"].as_str().unwrap_or("");
            let state = p["state"].as_str().unwrap_or("");
            if let Some(d) = s.downloads.iter_mut().find(|d| d.guid == guid) {
                d.state = state.to_string();
            }
        }
        _ => {}
    }
}

/// JavaScript's idea of truth for a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// A Rust string as a JavaScript string literal.
pub fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a string is JSON")
}
