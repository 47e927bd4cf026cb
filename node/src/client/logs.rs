//! `knit service logs NAME [-f] [--since D] [--tail N|all] [-t]`: prints the lines the API
//! streams as they come; the API's `error: ...` lines (a host down, a driver failing) go to
//! stderr. Ctrl-C ends a follow cleanly.

use std::io::Write;

use anyhow::{Result, anyhow};
use http_body_util::BodyExt;
use hyper::Method;

use super::{ApiRefusal, Client, REQUEST_TIMEOUT};

/// The biggest error answer read.
const REFUSAL_MAX_BYTES: usize = 64 * 1024;

/// What to ask for.
#[derive(Debug, Clone)]
pub(super) struct LogsQuery {
    pub(super) follow: bool,
    pub(super) since: Option<String>,
    pub(super) tail: String,
    pub(super) timestamps: bool,
}

impl LogsQuery {
    /// The API path for service `name`.
    fn path(&self, name: &str) -> String {
        let mut path = format!(
            "/v1/services/{}/logs?tail={}&follow={}&timestamps={}",
            encode(name),
            encode(&self.tail),
            self.follow,
            self.timestamps
        );
        if let Some(since) = &self.since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        path
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Streams the logs of `name` to stdout (notes to stderr) until the answer ends or Ctrl-C.
pub(super) async fn run(client: &Client, name: &str, query: &LogsQuery) -> Result<()> {
    let opened = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.transport.open(Method::GET, &query.path(name), None),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "the knit API at {} did not answer within {REQUEST_TIMEOUT:?}; check the peer's log",
            client.api
        )
    })?;
    let response = opened.map_err(|e| client.unreachable(&e))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = http_body_util::Limited::new(body, REFUSAL_MAX_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(ApiRefusal {
            status: status.as_u16(),
            message,
        }
        .into());
    }
    let mut pending = Vec::new();
    loop {
        let frame = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            frame = body.frame() => frame,
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| anyhow!("the answer broke off: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        if !print_lines(&String::from_utf8_lossy(&complete)) {
            return Ok(());
        }
    }
    if !pending.is_empty() {
        print_lines(&String::from_utf8_lossy(&pending));
    }
    Ok(())
}

/// Prints replica lines on stdout and the API's notes on stderr, and flushes; false once
/// stdout's reader went away (`| head`), to stop quietly.
fn print_lines(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    for line in text.lines() {
        if line.starts_with("error: ") || line.starts_with("warning: ") {
            eprintln!("{line}");
        } else if writeln!(out, "{line}").is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_carries_every_option_encoded() {
        let query = LogsQuery {
            follow: true,
            since: Some("2026-12-02T17:00:00Z".into()),
            tail: "2".into(),
            timestamps: false,
        };
        assert_eq!(
            query.path("web"),
            "/v1/services/web/logs?tail=2&follow=true&timestamps=false&since=2026-12-02T17%3A00%3A00Z"
        );
    }
}
