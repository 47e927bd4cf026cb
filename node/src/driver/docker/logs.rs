//! Reading a container's output for `service logs`: Docker's log stream with its times,
//! cut into lines, to follow until the reader goes away.

use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
#[cfg(test)]
use futures_util::TryStreamExt;

#[cfg(test)]
use super::within;

use super::{CALL_TIMEOUT, DockerDriver, failed, rfc3339_ms};
use crate::driver::DriverError;
use crate::driver::output::{self, LineSink, LogLine, LogQuery};

/// The most [`DockerDriver::logs`] returns; older output is cut.
#[cfg(test)]
const LOGS_BYTES_MAX: usize = 1 << 20;

impl DockerDriver {
    /// Sends the container's stdout and stderr lines that `query` asks for to `sink`, in
    /// the order written, each with Docker's time; to follow, until `sink` closes or the
    /// container stops. A read that does not follow must end within the call timeout.
    pub(crate) async fn stream_logs(
        &self,
        runtime_id: &str,
        query: LogQuery,
        sink: &LineSink,
    ) -> Result<(), DriverError> {
        let tail = query
            .tail
            .map_or_else(|| "all".to_owned(), |n| n.to_string());
        let since_s = query
            .since_ms
            .map_or(0, |ms| i32::try_from(ms / 1000).unwrap_or(i32::MAX));
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(query.follow)
            .since(since_s)
            .tail(&tail)
            .build();
        let mut stream = self.docker.logs(runtime_id, Some(options));
        let deadline = (!query.follow).then(|| tokio::time::Instant::now() + CALL_TIMEOUT);
        let mut lines = output::Lines::default();
        loop {
            let next = tokio::select! {
                () = sink.closed() => return Ok(()),
                () = sleep_until_some(deadline) => {
                    return Err(DriverError::Failed(format!("logs of {runtime_id}: no end within {CALL_TIMEOUT:?}")));
                }
                next = stream.next() => next,
            };
            let bytes = match next {
                Some(Ok(chunk)) => chunk.into_bytes(),
                Some(Err(e)) => return Err(failed(&format!("logs of {runtime_id}"), &e)),
                None => return Ok(()),
            };
            for text in lines.push(&bytes) {
                let line = stamped(&text);
                if query.since_ms.is_some_and(|since| line.time_ms < since) {
                    continue;
                }
                if sink.send(line).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// The last `tail` lines of the container's stdout and stderr, interleaved as written.
    #[cfg(test)]
    pub(crate) async fn logs(&self, runtime_id: &str, tail: usize) -> Result<String, DriverError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let read = self.docker.logs(runtime_id, Some(options)).try_fold(
            Vec::new(),
            |mut bytes, chunk| async move {
                bytes.extend_from_slice(&chunk.into_bytes());
                if bytes.len() > LOGS_BYTES_MAX {
                    bytes.drain(..bytes.len() - LOGS_BYTES_MAX);
                }
                Ok(bytes)
            },
        );
        let bytes = within(CALL_TIMEOUT, read)
            .await
            .map_err(|e| failed(&format!("logs of {runtime_id}"), &e))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A line as Docker writes it with timestamps (`TIME TEXT`), split; a line without a time
/// is stamped now.
fn stamped(line: &str) -> LogLine {
    match line
        .split_once(' ')
        .and_then(|(t, text)| Some((rfc3339_ms(t)?, text)))
    {
        Some((time_ms, text)) => LogLine {
            time_ms,
            text: text.to_owned(),
        },
        None => LogLine {
            time_ms: crate::clock::now_ms(),
            text: line.to_owned(),
        },
    }
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
