//! The only writer of `state.bin`: a task that saves the replicated state whenever it
//! changes (and the join token when it rotates, and the epoch), retries a failed save
//! every second, and publishes what it saved, so that writes acknowledged to an operator
//! wait until they are on disk.

use std::sync::Arc;
use std::time::Duration;

use knit_mesh::quic::Mesh;
use tokio_util::sync::CancellationToken;

use crate::datadir::DataDir;

/// What the persist task last did, for writes that wait until they are on disk.
#[derive(Debug, Clone, Default)]
pub(crate) struct Saved {
    /// The store version last written to `state.bin`.
    pub(crate) version: u64,
    /// The last save failed (it is retried every second): the version it tried, and why.
    pub(crate) failure: Option<SaveFailure>,
}

/// A save of the state that failed.
#[derive(Debug, Clone)]
pub(crate) struct SaveFailure {
    pub(crate) version: u64,
    /// The disk (or quota) is full: the operator frees space.
    pub(crate) disk_full: bool,
    pub(crate) message: String,
}

/// How long after a failed save the next try comes.
const SAVE_RETRY: Duration = Duration::from_secs(1);

/// Writes the state to the data dir whenever it changes (retrying a failed save every
/// second), publishing what was saved (acknowledged writes wait for it), and the epoch
/// whenever the mesh moves to a newer one. The only writer of `state.bin`: on shutdown it
/// saves once more and returns.
pub(crate) async fn persist(
    mesh: Mesh,
    dir: Arc<DataDir>,
    saved: tokio::sync::watch::Sender<Saved>,
    shutdown: CancellationToken,
) {
    let mut store = mesh.store();
    let mut view = mesh.view();
    // `join-token` follows rotations, for operators and `knit lab`.
    let mut written_token = String::new();
    let mut retry: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let version = store.borrow().version();
                if saved.borrow().version != version || retry.is_some() {
                    save(&mesh, &dir, &saved, &mut written_token).await;
                }
                return;
            }
            changed = store.changed() => {
                if changed.is_err() { return; }
                store.borrow_and_update();
                retry = save(&mesh, &dir, &saved, &mut written_token).await;
                // Coalesce bursts of changes into one write.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            () = sleep_until(retry) => {
                retry = save(&mesh, &dir, &saved, &mut written_token).await;
            }
            changed = view.changed() => {
                if changed.is_err() { return; }
                let epoch = view.borrow_and_update().me.epoch;
                if let Err(e) = dir.store_epoch(epoch) {
                    tracing::error!(error = %e, "cannot persist the epoch");
                }
            }
        }
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Saves the store as it is now; returns when to try again if it failed.
async fn save(
    mesh: &Mesh,
    dir: &Arc<DataDir>,
    saved: &tokio::sync::watch::Sender<Saved>,
    written_token: &mut String,
) -> Option<tokio::time::Instant> {
    let snapshot = mesh.store().borrow().clone();
    let version = snapshot.version();
    let token = mesh.token().to_string();
    let rotated = token != *written_token;
    let task_dir = dir.clone();
    let result = tokio::task::spawn_blocking(move || {
        task_dir.save_store(&snapshot)?;
        if rotated {
            task_dir.store_token(&token)?;
        }
        anyhow::Ok(token)
    })
    .await;
    let error = match result {
        Ok(Ok(token)) => {
            *written_token = token;
            if saved.borrow().failure.is_some() {
                tracing::info!("the state is saved again");
            }
            saved.send_replace(Saved {
                version,
                failure: None,
            });
            return None;
        }
        Ok(Err(e)) => e,
        Err(e) => anyhow::anyhow!("the save panicked: {e}"),
    };
    let disk_full = error.chain().any(|cause| {
        cause
            .downcast_ref::<knit_mesh::quic::credentials::CredentialsError>()
            .is_some_and(knit_mesh::quic::credentials::CredentialsError::is_disk_full)
    });
    let message = if disk_full {
        format!(
            "the data dir's disk is full: free space on {} (the peer saves again on its own)",
            dir.path().display()
        )
    } else {
        format!(
            "cannot save the state in {}: {error:#}; check the data dir",
            dir.path().display()
        )
    };
    if saved.borrow().failure.is_none() {
        tracing::error!(error = %format!("{error:#}"), "{message}; retrying every second");
    }
    saved.send_modify(|s| {
        s.failure = Some(SaveFailure {
            version,
            disk_full,
            message,
        });
    });
    Some(tokio::time::Instant::now() + SAVE_RETRY)
}
