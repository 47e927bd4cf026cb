//! A headless Chromium for the dashboard test, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, read by the browser on
//! its descriptor 3 and written on its descriptor 4). Two named pipes and a shell
//! redirection hand it those descriptors; no WebSocket, no extra crate.
//!
//! A [`Browser`] keeps one page open, so a test sees the page update itself, evaluates
//! expressions in it, and takes screenshots. Dropping it closes the browser.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The most one message from the browser may take (a screenshot is the largest).
const MESSAGE_MAX_BYTES: usize = 64 << 20;
/// The page's size, for screenshots.
const WINDOW: &str = "--window-size=1280,800";

/// The Chromium binary: `$KNIT_CHROMIUM`, else `chromium` (Debian's package) or
/// `chromium-browser` on the `PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KNIT_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A headless Chromium with one page open.
pub struct Browser {
    child: Child,
    /// Where the browser's standard error goes.
    log: PathBuf,
    to_browser: File,
    from_browser: mpsc::Receiver<Vec<u8>>,
    next_id: u64,
    /// The DevTools session attached to the page.
    session: String,
}

impl Browser {
    /// Starts `chromium` with its profile and pipes in `dir`, and opens `url`.
    ///
    /// A browser that exits before it opens the page (Chromium on a machine where it has
    /// never run sometimes does, while it sets up its caches) is started once more, with a
    /// new profile; its log is printed first.
    pub fn open(chromium: &Path, dir: &Path, url: &str) -> Result<Self> {
        match Self::start(chromium, &dir.join("first"), url) {
            Err(first) if first.is::<Exited>() => {
                eprintln!("{first:#}; starting it once more");
                Self::start(chromium, &dir.join("second"), url)
            }
            started => started,
        }
    }

    fn start(chromium: &Path, dir: &Path, url: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (to, from) = (dir.join("devtools-in"), dir.join("devtools-out"));
        for fifo in [&to, &from] {
            let _ = std::fs::remove_file(fifo);
            let status = Command::new("mkfifo").arg(fifo).status()?;
            if !status.success() {
                bail!("mkfifo {} failed", fifo.display());
            }
        }
        let script = r#"exec "$0" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
            --no-first-run --no-default-browser-check --disable-extensions "$4" \
            --remote-debugging-pipe --user-data-dir="$1" about:blank 3<"$2" 4>"$3""#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(chromium)
            .arg(dir.join("profile"))
            .arg(&to)
            .arg(&from)
            .arg(WINDOW)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("chromium.log"))?)
            .spawn()
            .with_context(|| format!("cannot start {}", chromium.display()))?;
        // The shell opens the browser's end of `to` first, then of `from`: open ours in the
        // same order.
        let to_browser = File::options().write(true).open(&to)?;
        let reader = File::open(&from)?;
        let (tx, from_browser) = mpsc::channel();
        std::thread::spawn(move || read_messages(reader, &tx));
        let mut browser = Self {
            child,
            log: dir.join("chromium.log"),
            to_browser,
            from_browser,
            next_id: 0,
            session: String::new(),
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| anyhow!("no target id in {target}"))?
            .to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {attached}"))?
            .to_owned();
        Ok(browser)
    }

    /// Sends one DevTools command (to the page once attached) and waits for its result.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        if self.to_browser.write_all(&bytes).is_err() {
            return Err(self.exited(method).into());
        }
        let started = Instant::now();
        loop {
            let left = COMMAND_TIMEOUT.saturating_sub(started.elapsed());
            let raw = match self.from_browser.recv_timeout(left) {
                Ok(raw) => raw,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("no answer to {method} within {COMMAND_TIMEOUT:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.exited(method).into());
                }
            };
            let answer: Value = serde_json::from_slice(&raw)?;
            if answer["id"].as_u64() != Some(id) {
                // An event, or an answer to an earlier command given up on.
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("{method}: {error}");
            }
            return Ok(answer["result"].clone());
        }
    }

    /// The value of the JavaScript `expression` in the page (as JSON).
    pub fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Saves a PNG screenshot of the page at `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<()> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, base64_decode(data)?)?;
        Ok(())
    }
}

/// The browser closed its end of the pipe: it exited, or is about to.
#[derive(Debug)]
struct Exited(String);

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Exited {}

impl Browser {
    /// What to say when the browser went away while `method` waited: its exit status and
    /// the end of its log.
    fn exited(&mut self, method: &str) -> Exited {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if started.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => break "still running, with its pipe closed".to_owned(),
                Err(e) => break format!("unknown ({e})"),
            }
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        Exited(format!(
            "the browser went away before it answered {method} (exit: {status}); the end of {}:\n{}",
            self.log.display(),
            tail.join("\n")
        ))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.session.clear();
        let _ = self
            .to_browser
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads NUL-terminated messages until the pipe closes, or a message is too large.
fn read_messages(mut reader: File, tx: &mpsc::Sender<Vec<u8>>) {
    let mut pending = Vec::new();
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|&b| b == 0) {
            let message: Vec<u8> = pending.drain(..=end).take(end).collect();
            if tx.send(message).is_err() {
                return;
            }
        }
        if pending.len() > MESSAGE_MAX_BYTES {
            return;
        }
    }
}

/// Standard base64 (with padding), as DevTools sends binary data.
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for group in bytes.chunks(4) {
        let mut acc = 0_u32;
        for &c in group {
            acc = acc << 6 | value(c).ok_or_else(|| anyhow!("not base64: {:?}", c as char))?;
        }
        let bits = 6 * group.len();
        acc <<= 24 - bits;
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..bits / 8]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("a$==").is_err());
    }
}
