//! `knit stack deploy`: the Compose files read, the stack's secrets and configs created
//! (or found unchanged), and each service created, updated when its spec changed, or left
//! alone; with `--prune`, the stack's services the files no longer name removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::Limits;

use super::super::{ApiRefusal, Client, progress};
use super::stack_of;
use crate::compose::{self, Bundled, Disk, Files, Input, NAMESPACE_LABEL, Variables};
use crate::wire::{
    ConfigCreate, ConfigSummary, SecretCreate, SecretSummary, ServiceSummary, UpdateRequest,
};

/// What `stack deploy` was asked.
pub(super) struct Options {
    pub(super) files: Vec<PathBuf>,
    pub(super) prune: bool,
    pub(super) detach: crate::flags::DetachArg,
}

/// What became of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Deploys stack `name` from `options.files`.
pub(super) async fn deploy(client: &Client, name: &str, options: &Options) -> Result<()> {
    let stack = read(name, &options.files)?;
    for warning in &stack.warnings {
        eprintln!("warning: {warning}");
    }
    let limits: Limits = client
        .get("/v1/cluster/limits")
        .await
        .unwrap_or(Limits::CEILING);
    for spec in &stack.services {
        spec.validate(&limits)?;
    }
    let existing: Vec<ServiceSummary> = client.get("/v1/services").await?;
    for spec in &stack.services {
        if let Some(other) = existing.iter().find(|s| s.name == spec.name)
            && stack_of(other) != Some(name)
        {
            bail!(
                "service {} exists and is not part of stack {name}; remove it (`knit service rm {}`) or deploy the stack under another name",
                spec.name,
                spec.name
            );
        }
    }
    bring_secrets(client, name, &stack.secrets).await?;
    bring_configs(client, name, &stack.configs).await?;
    let mut written = Vec::new();
    for spec in &stack.services {
        let (outcome, stored) = write(client, spec, &existing).await?;
        let word = match outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        };
        println!("{word} service {}", spec.name);
        if outcome != Outcome::Unchanged {
            written.push(stored);
        }
    }
    let named: BTreeSet<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    for old in existing
        .iter()
        .filter(|s| stack_of(s) == Some(name) && !named.contains(s.name.as_str()))
    {
        if options.prune {
            client
                .delete::<serde_json::Value>(&format!("/v1/services/{}", old.name))
                .await?;
            println!("removed service {}", old.name);
        } else {
            eprintln!(
                "note: service {} is in stack {name} but not in the files; `knit stack deploy --prune` removes it",
                old.name
            );
        }
    }
    if options.detach.follows(std::io::stdout().is_terminal()) {
        for spec in &written {
            progress::converge(client, spec).await?;
        }
    }
    Ok(())
}

/// The stack the files describe, with variables from the environment and the `.env`
/// beside the first file.
fn read(name: &str, files: &[PathBuf]) -> Result<compose::Stack> {
    let mut inputs = Vec::new();
    for path in files {
        let bytes = Disk.read(path)?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        inputs.push(Input {
            path: path.clone(),
            text,
        });
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let dotenv_path = files
        .first()
        .and_then(|f| f.parent())
        .map(|dir| dir.join(".env"))
        .filter(|p| p.is_file());
    let dotenv = match dotenv_path {
        Some(path) => {
            let text = String::from_utf8(Disk.read(&path)?)
                .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
            compose::read_env_file(&text, &path.display().to_string(), &env)?
        }
        None => BTreeMap::new(),
    };
    let vars = Variables { env, dotenv };
    Ok(compose::load(name, &inputs, &vars, &Disk)?)
}

fn stack_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAMESPACE_LABEL.to_owned(), name.to_owned())])
}

/// Creates each secret the stack brings, or finds it with the same value.
async fn bring_secrets(client: &Client, name: &str, secrets: &[Bundled]) -> Result<()> {
    if secrets.is_empty() {
        return Ok(());
    }
    let had: BTreeSet<String> = client
        .get::<Vec<SecretSummary>>("/v1/secrets")
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    for secret in secrets {
        let request = SecretCreate {
            name: secret.name.clone(),
            data_hex: hex::encode(&secret.value),
            labels: stack_labels(name),
            keep_same: true,
        };
        let _: SecretSummary = client
            .post("/v1/secrets", &request)
            .await
            .with_context(|| format!("{} ({})", secret.origin, secret.name))?;
        if !had.contains(&secret.name) {
            println!("created secret {}", secret.name);
        }
    }
    Ok(())
}

/// Creates each config the stack brings, or finds it with the same content.
async fn bring_configs(client: &Client, name: &str, configs: &[Bundled]) -> Result<()> {
    if configs.is_empty() {
        return Ok(());
    }
    let had: BTreeSet<String> = client
        .get::<Vec<ConfigSummary>>("/v1/configs")
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    for config in configs {
        let request = ConfigCreate {
            name: config.name.clone(),
            data_hex: hex::encode(&config.value),
            labels: stack_labels(name),
            keep_same: true,
        };
        let _: ConfigSummary = client
            .post("/v1/configs", &request)
            .await
            .with_context(|| format!("{} ({})", config.origin, config.name))?;
        if !had.contains(&config.name) {
            println!("created config {}", config.name);
        }
    }
    Ok(())
}

/// Writes `spec`: created when new, updated when it differs from the stored one, left
/// alone otherwise; the spec as stored.
async fn write(
    client: &Client,
    spec: &ServiceSpec,
    existing: &[ServiceSummary],
) -> Result<(Outcome, ServiceSpec)> {
    if !existing.iter().any(|s| s.name == spec.name) {
        let created: ServiceSpec = client.post("/v1/services", spec).await?;
        return Ok((Outcome::Created, created));
    }
    let current: ServiceSpec = client.get(&format!("/v1/services/{}", spec.name)).await?;
    let desired = as_stored(spec, &current);
    if desired == current {
        return Ok((Outcome::Unchanged, current));
    }
    let request = UpdateRequest {
        spec: desired,
        from_version: current.version,
        redeploy: false,
    };
    match client
        .post::<_, ServiceSpec>(&format!("/v1/services/{}", spec.name), &request)
        .await
    {
        Ok(stored) => Ok((Outcome::Updated, stored)),
        Err(e)
            if e.downcast_ref::<ApiRefusal>()
                .is_some_and(|r| r.status == 409) =>
        {
            bail!(
                "service {} changed while the stack was deployed; deploy again",
                spec.name
            )
        }
        Err(e) => Err(e),
    }
}

/// `spec` with what the peer keeps for itself taken from the stored spec (version, the
/// spec kept for rollback, the `--force` counter), so that equal means unchanged.
pub(super) fn as_stored(spec: &ServiceSpec, stored: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        version: stored.version,
        previous: stored.previous.clone(),
        force_update: stored.force_update,
        ..spec.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_equal_to_the_stored_one_but_for_the_peers_bookkeeping_is_unchanged() {
        let from_file = ServiceSpec::docker("app_web", "nginx:1");
        let mut stored = from_file.clone();
        stored.version = 7;
        stored.force_update = 2;
        stored.previous = Some(Box::new(ServiceSpec::docker("app_web", "nginx:0")));
        assert_eq!(as_stored(&from_file, &stored), stored);
        let mut changed = from_file.clone();
        changed.image = Some("nginx:2".into());
        assert_ne!(as_stored(&changed, &stored), stored);
        let mut scaled = from_file;
        scaled.mode = knit_scheduler::spec::Mode::Replicated { replicas: 2 };
        assert_ne!(as_stored(&scaled, &stored), stored);
    }
}
