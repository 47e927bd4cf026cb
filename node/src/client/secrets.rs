//! `knit secret ...`.

use std::io::Read;

use anyhow::{Context, Result};

use super::Client;
use crate::cli::SecretCommand;
use crate::format::output;
use crate::wire::{SecretCreate, SecretSummary};

/// The most bytes read for one secret or config (the API refuses more than 500 KiB; reading a little
/// past it lets it say so).
const READ_MAX_BYTES: u64 = 512 * 1024 + 1;

/// The bytes of `file`, or of standard input for `-` (at most a little past what the API
/// takes, so that it can say so).
pub(super) fn read_value(file: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(READ_MAX_BYTES)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read the {what} from standard input"))?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(READ_MAX_BYTES).read_to_end(&mut data))
            .with_context(|| format!("cannot read the {what} from {}", file.display()))?;
    }
    Ok(data)
}

pub(super) async fn run(client: &Client, command: SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Create { name, file } => {
            let data = read_value(&file, "secret")?;
            let request = SecretCreate {
                name,
                data_hex: hex::encode(&data),
                labels: Default::default(),
                keep_same: false,
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
