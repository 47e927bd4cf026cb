//! Wake-ups from the peer's event stream (`GET /v1/events`): a command that follows the
//! cluster (a rollout's progress) reads it again when something changed, instead of on a
//! fixed period. The stream only says *when*; what changed is read through the usual
//! endpoints, so the command shows the same thing whichever way it was woken.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::Method;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Client;

/// The longest event the reader holds while it waits for the event's end: the picture's
/// entries are small (a node, a replica, a service); a longer one means the stream is not
/// what it should be, and the reader stops (the command falls back to its period).
const EVENT_MAX_BYTES: usize = 1 << 20;
/// How long opening the stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The kinds of event that say the cluster changed (`synced` and comments do not).
const CHANGE_KINDS: [&str; 4] = ["node", "replica", "service", "rollout"];

/// A subscription to the peer's changes. Dropping it closes the stream.
pub(super) struct Changes {
    /// One pending wake-up at most: several changes before the reader looks are one.
    woken: mpsc::Receiver<()>,
    reader: JoinHandle<()>,
}

impl Changes {
    /// Subscribes to the changes of the peer `client` talks to. The changes already in the
    /// picture when the stream opens are not wake-ups: the first comes with the first
    /// change after it.
    pub(super) async fn open(client: &Client) -> Result<Self> {
        let response = tokio::time::timeout(
            OPEN_TIMEOUT,
            client.transport.open(Method::GET, "/v1/events", None),
        )
        .await
        .context("the event stream did not open in time")??;
        if !response.status().is_success() {
            bail!("the event stream was refused ({})", response.status());
        }
        let (wake, woken) = mpsc::channel(1);
        let reader = tokio::spawn(read(response.into_body(), wake));
        Ok(Self { woken, reader })
    }

    /// Waits for a change, at most `limit`; returns whether one came. Once the stream has
    /// ended, every call waits out its limit (the caller then works by period alone).
    pub(super) async fn wait(&mut self, limit: Duration) -> bool {
        if self.woken.is_closed() && self.woken.is_empty() {
            tokio::time::sleep(limit).await;
            return false;
        }
        matches!(
            tokio::time::timeout(limit, self.woken.recv()).await,
            Ok(Some(()))
        )
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads the stream and wakes the follower on every change after `synced`.
async fn read(mut body: hyper::body::Incoming, wake: mpsc::Sender<()>) {
    let mut events = Events::default();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let Ok(changed) = events.push(&data) else {
            tracing::debug!("the event stream sent an over-long event; following by period");
            return;
        };
        if changed {
            // Full: a wake-up is already pending, and it covers this change too.
            let _ = wake.try_send(());
        }
    }
}

/// The server-sent events parser, as far as this follower needs it: event names only.
#[derive(Default)]
struct Events {
    buffer: BytesMut,
    synced: bool,
}

/// An event longer than [`EVENT_MAX_BYTES`].
#[derive(Debug)]
struct TooLong;

impl Events {
    /// Takes the next bytes of the stream; returns whether a change event ended in them.
    fn push(&mut self, bytes: &[u8]) -> Result<bool, TooLong> {
        self.buffer.extend_from_slice(bytes);
        let mut changed = false;
        while let Some(end) = find_blank_line(&self.buffer) {
            let event = self.buffer.split_to(end.start);
            self.buffer.advance(end.len());
            match event_name(&event) {
                Some("synced") => self.synced = true,
                Some(name) if self.synced && CHANGE_KINDS.contains(&name) => changed = true,
                _ => {}
            }
        }
        if self.buffer.len() > EVENT_MAX_BYTES {
            return Err(TooLong);
        }
        Ok(changed)
    }
}

/// Where the first blank line (an event's end) is, as a range: `\n\n` or `\r\n\r\n`.
fn find_blank_line(buffer: &[u8]) -> Option<std::ops::Range<usize>> {
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i..i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i..i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.start <= b.start { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `event:` field of one event, if it has one.
fn event_name(event: &[u8]) -> Option<&str> {
    std::str::from_utf8(event).ok()?.lines().find_map(|line| {
        line.strip_prefix("event:")
            .map(|name| name.trim_start_matches(' ').trim_end_matches('\r'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_wake_only_after_the_picture() {
        let mut events = Events::default();
        let picture = "retry: 1000\n\nevent: node\ndata: {\"key\":\"a\",\"value\":{}}\n\n\
                       event: replica\ndata: {}\n\nevent: synced\ndata: {}\n\n";
        assert_eq!(events.push(picture.as_bytes()).ok(), Some(false));
        assert_eq!(events.push(b":\n\n").ok(), Some(false), "a keep-alive");
        assert_eq!(
            events.push(b"event: repl").ok(),
            Some(false),
            "half an event"
        );
        assert_eq!(
            events.push(b"ica\ndata: {}\n\n").ok(),
            Some(true),
            "the rest of it"
        );
        assert_eq!(
            events.push(b"event: rollout\r\ndata: {}\r\n\r\n").ok(),
            Some(true),
            "CRLF line ends"
        );
        assert_eq!(
            events.push(b"event: unknown\ndata: {}\n\n").ok(),
            Some(false)
        );
    }

    #[test]
    fn an_endless_event_stops_the_reader() {
        let mut events = Events::default();
        let chunk = vec![b'x'; 64 << 10];
        let mut outcome = Ok(false);
        for _ in 0..(EVENT_MAX_BYTES / chunk.len() + 2) {
            outcome = events.push(&chunk);
            if outcome.is_err() {
                break;
            }
        }
        assert!(outcome.is_err());
    }
}
