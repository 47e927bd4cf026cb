//! `knit config ...`.

use anyhow::Result;

use super::Client;
use super::secrets::read_value;
use crate::commands::ConfigCommand;
use crate::format::output;
use crate::wire::{ConfigCreate, ConfigDetail, ConfigSummary};

pub(super) async fn run(client: &Client, command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Create { name, file } => {
            let data = read_value(&file, "config")?;
            let request = ConfigCreate {
                name,
                data_hex: hex::encode(&data),
                labels: Default::default(),
                keep_same: false,
            };
            let created: ConfigSummary = client.post("/v1/configs", &request).await?;
            println!("{}", created.name);
        }
        ConfigCommand::Ls { format, quiet } => {
            let configs: Vec<ConfigSummary> = client.get("/v1/configs").await?;
            if quiet {
                configs.iter().for_each(|c| println!("{}", c.name));
            } else {
                output::print(&configs, &format)?;
            }
        }
        ConfigCommand::Inspect { names } => {
            let mut found = Vec::new();
            for name in names {
                let detail: ConfigDetail = client.get(&format!("/v1/configs/{name}")).await?;
                found.push(shown(&detail));
            }
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
        ConfigCommand::Rm { names } => {
            super::remove_each(client, "/v1/configs", &names, "config(s)").await?;
        }
    }
    Ok(())
}

/// A config as `inspect` prints it: the API's answer, and the content as text when it is
/// text (the hex stays for the rest).
fn shown(detail: &ConfigDetail) -> serde_json::Value {
    let mut value = serde_json::to_value(detail).unwrap_or_default();
    let text = hex::decode(&detail.data_hex)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    if let (Some(object), Some(text)) = (value.as_object_mut(), text) {
        object.insert("data".to_owned(), serde_json::Value::String(text));
    }
    value
}
