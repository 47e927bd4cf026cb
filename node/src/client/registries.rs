//! `knit login`, `knit logout` and `knit registry ls`.
//!
//! Nothing is prompted for, so that a script never hangs: the user name comes with `-u`,
//! the password with `--password-stdin` (or `-p`, which Docker and knit warn about).
//! knit does not try the credentials against the registry: the first pull does, on
//! whichever host needs the image, and `service ps` says what the registry answered.

use std::io::Read;

use anyhow::{Context, Result, bail};

use super::Client;
use crate::commands::{LoginArgs, LogoutArgs, RegistryCommand};
use crate::flags::RegistryAuthArg;
use crate::format::output::{self, Record};
use crate::format::template::{Field, Row};
use crate::registry::{DOCKER_HUB, PASSWORD_MAX_BYTES};
use crate::wire::{RegistryLogin, RegistrySummary, Removed};

impl Row for RegistrySummary {
    const COMMAND: &'static str = "registry ls";
    const FIELDS: &'static [Field] = &[
        Field::new("Server", "SERVER"),
        Field::new("Username", "USERNAME"),
        Field::new("CreatedAt", "CREATED"),
    ];

    fn field(&self, name: &str) -> String {
        match name {
            "Server" => self.server.clone(),
            "Username" => self.username.clone(),
            "CreatedAt" => crate::clock::ago(self.created_at_ms),
            _ => String::new(),
        }
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Record for RegistrySummary {
    const TABLE: &'static str = r"table {{.Server}}\t{{.Username}}\t{{.CreatedAt}}";
}

/// The server `knit login` and `knit logout` name, Docker Hub when none.
fn server_of(given: Option<String>) -> Result<String> {
    let given = given.unwrap_or_else(|| DOCKER_HUB.to_owned());
    Ok(crate::registry::server_name(&given)?)
}

/// The password from standard input: its first line, at most a little past what the API
/// takes (so that it can say so), without the line's end, as Docker reads it.
fn password_from_stdin() -> Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(PASSWORD_MAX_BYTES as u64 + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the password from standard input")?;
    let text = String::from_utf8(bytes).context("the password is not UTF-8")?;
    Ok(trim_line_end(&text).to_owned())
}

/// `text` without one trailing `\n` or `\r\n`.
fn trim_line_end(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

/// `knit login [SERVER] -u USER --password-stdin | -p PASSWORD`.
pub(super) async fn login(client: &Client, args: LoginArgs) -> Result<()> {
    let server = server_of(args.server)?;
    let shown = if server == DOCKER_HUB { "" } else { &server };
    let Some(username) = args.username.filter(|u| !u.is_empty()) else {
        bail!(
            "knit login prompts for nothing: give the user with -u USER, and the password on standard input, e.g. `echo \"$TOKEN\" | knit login {shown} -u USER --password-stdin`"
        );
    };
    let password = match (args.password, args.password_stdin) {
        (_, true) => password_from_stdin()?,
        (Some(password), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            password
        }
        (None, false) => bail!(
            "knit login prompts for nothing: give the password on standard input, e.g. `echo \"$TOKEN\" | knit login {shown} -u {username} --password-stdin` (or, less safely, -p PASSWORD)"
        ),
    };
    if password.is_empty() {
        bail!("the password is empty; give it on standard input with --password-stdin");
    }
    let request = RegistryLogin {
        server,
        username,
        password,
    };
    let stored: RegistrySummary = client.post("/v1/registries", &request).await?;
    println!(
        "Login Succeeded: {} as {}, for every host of the cluster (not checked with the registry: the first pull is)",
        stored.server, stored.username
    );
    Ok(())
}

/// `knit logout [SERVER]`.
pub(super) async fn logout(client: &Client, args: LogoutArgs) -> Result<()> {
    let server = server_of(args.server)?;
    let removed: Removed = client.delete(&format!("/v1/registries/{server}")).await?;
    println!("Removing login credentials for {}", removed.removed);
    Ok(())
}

/// With `--with-registry-auth`, says on standard error when the cluster has no
/// credentials for `image`'s registry, and how to give them. Credentials are cluster-wide:
/// the flag changes nothing else.
pub(super) async fn check_auth(client: &Client, flag: RegistryAuthArg, image: Option<&str>) {
    let (true, Some(image)) = (flag.with_registry_auth, image) else {
        return;
    };
    let server = crate::registry::registry_of(image);
    let Ok(registries) = client.get::<Vec<RegistrySummary>>("/v1/registries").await else {
        return;
    };
    if !registries.iter().any(|r| r.server == server) {
        eprintln!(
            "warning: --with-registry-auth: the cluster has no credentials for {server}; give them once with `knit login {server} -u USER --password-stdin`"
        );
    }
}

/// `knit registry ls`.
pub(super) async fn run(client: &Client, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Ls { format, quiet } => {
            let registries: Vec<RegistrySummary> = client.get("/v1/registries").await?;
            if quiet {
                registries.iter().for_each(|r| println!("{}", r.server));
            } else {
                output::print(&registries, &format)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn one_line_end_is_taken_off_the_password() {
        assert_eq!(trim_line_end("s3cret\n"), "s3cret");
        assert_eq!(trim_line_end("s3cret\r\n"), "s3cret");
        assert_eq!(trim_line_end("s3cret"), "s3cret");
        assert_eq!(trim_line_end("s3cret \n\n"), "s3cret \n");
    }

    #[test]
    fn login_takes_dockers_flags_and_defaults_to_docker_hub() {
        let parse = |words: &[&str]| Cli::try_parse_from(words).map(|cli| cli.command);
        let Ok(Command::Login(args)) = parse(&[
            "knit",
            "login",
            "reg.io:5000",
            "-u",
            "alice",
            "--password-stdin",
        ]) else {
            panic!("not a login");
        };
        assert_eq!(args.server.as_deref(), Some("reg.io:5000"));
        assert_eq!(args.username.as_deref(), Some("alice"));
        assert!(args.password_stdin);
        assert!(
            parse(&["knit", "login", "-u", "a", "-p", "x", "--password-stdin"]).is_err(),
            "one way to give the password"
        );
        assert_eq!(server_of(None).unwrap(), DOCKER_HUB);
        assert_eq!(
            server_of(Some("https://index.docker.io/v1/".into())).unwrap(),
            DOCKER_HUB
        );
    }
}
