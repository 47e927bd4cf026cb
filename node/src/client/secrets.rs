//! `knit secret ...`.

use std::io::Read;

use anyhow::{Context, Result};

use super::Client;
use crate::cli::SecretCommand;
use crate::format::output;
use crate::wire::{SecretCreate, SecretSummary};

/// The most bytes read for one secret (the API refuses more than 500 KiB; reading a little
/// past it lets it say so).
const READ_MAX_BYTES: u64 = 512 * 1024 + 1;

pub(super) async fn run(client: &Client, command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Create { name, file } => {
            let mut data = Vec::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .take(READ_MAX_BYTES)
                    .read_to_end(&mut data)
                    .context("cannot read the secret from standard input")?;
            } else {
                std::fs::File::open(&file)
                    .and_then(|f| f.take(READ_MAX_BYTES).read_to_end(&mut data))
                    .with_context(|| format!("cannot read the secret from {}", file.display()))?;
            }
            let request = SecretCreate {
                name,
                data_hex: hex::encode(&data),
            };
            let created: SecretSummary = client.post("/v1/secrets", &request).await?;
            println!("{}", created.name);
        }
        SecretCommand::Ls { format, quiet } => {
            let secrets: Vec<SecretSummary> = client.get("/v1/secrets").await?;
            if quiet {
                secrets.iter().for_each(|s| println!("{}", s.name));
            } else {
                output::print(&secrets, &format)?;
            }
        }
        SecretCommand::Inspect { names } => {
            let mut found = Vec::new();
            for name in names {
                found.push(
                    client
                        .get::<SecretSummary>(&format!("/v1/secrets/{name}"))
                        .await?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
        SecretCommand::Rm { names } => {
            super::remove_each(client, "/v1/secrets", &names, "secret(s)").await?;
        }
    }
    Ok(())
}
