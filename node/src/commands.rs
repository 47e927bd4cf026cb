//! The command lines of `knit config`, `knit stack`, `knit login`, `knit logout` and
//! `knit registry`, and the listing flags every list
//! shares, kept apart from `cli.rs` (which names them in its `Command`, and imports this
//! module, never the other way round).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::format::Format;

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format: `table`, `json` (one object per line), or a template such as
    /// '{{.Name}} {{.Replicas}}' or 'table {{.Name}}\t{{.Image}}' (a header and aligned
    /// columns); an unknown field is an error that lists the fields there are.
    #[arg(long, default_value = "table", value_name = "table|json|TEMPLATE")]
    pub(crate) format: Format,
    /// Filter the rows: KEY=VALUE (repeat; one key's values are alternatives, keys combine).
    #[arg(short = 'f', long = "filter")]
    pub(crate) filters: Vec<String>,
    /// Print ids (names of services) only.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Create a config from a file, or from standard input with `-`.
    Create {
        /// The config's name.
        name: String,
        /// The file holding the content, or `-` for standard input.
        file: PathBuf,
    },
    /// List configs.
    #[command(alias = "list")]
    Ls {
        /// Output format: `table`, `json` (one object per line), or a template such as
        /// '{{.Name}} {{.Services}}'.
        #[arg(long, default_value = "table", value_name = "table|json|TEMPLATE")]
        format: Format,
        /// Print names only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show configs' details and content (JSON; configs are not secret).
    Inspect {
        /// The configs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove configs no service uses.
    #[command(alias = "remove")]
    Rm {
        /// The configs.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StackCommand {
    /// Deploy a new stack or update an existing one from Compose files: services named
    /// STACK_SERVICE, secrets, configs and volumes named STACK_NAME. Only the services
    /// whose spec changed are updated.
    #[command(alias = "up")]
    Deploy {
        /// A Compose file (repeat to merge several, later ones over earlier ones).
        #[arg(short = 'c', long = "compose-file", required = true)]
        compose_files: Vec<PathBuf>,
        /// Also remove the stack's services that the files no longer name.
        #[arg(long)]
        prune: bool,
        /// Return once the specs are written, without following the replicas (by default
        /// the command follows them until they converge when its output is a terminal).
        #[command(flatten)]
        detach: crate::flags::DetachArg,
        /// The stack's name.
        name: String,
    },
    /// List stacks.
    #[command(alias = "list")]
    Ls {
        /// Output format: `table`, `json` (one object per line), or a template such as
        /// '{{.Name}} {{.Services}}'.
        #[arg(long, default_value = "table", value_name = "table|json|TEMPLATE")]
        format: Format,
    },
    /// List the tasks of a stack's services.
    Ps {
        /// The stack.
        name: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// List a stack's services.
    Services {
        /// The stack.
        name: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Remove stacks: their services, and the secrets and configs deploy created for them.
    #[command(alias = "remove", alias = "down")]
    Rm {
        /// The stacks.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `knit login`: Docker's flags. Nothing is prompted for.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry server: a host with an optional port (registry.example.com:5000);
    /// Docker Hub when left out.
    pub(crate) server: Option<String>,
    /// The user name.
    #[arg(short, long)]
    pub(crate) username: Option<String>,
    /// The password (it stays in the shell's history: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub(crate) password: Option<String>,
    /// Read the password or token from standard input (one line).
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

/// `knit logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// The registry server; Docker Hub when left out.
    pub(crate) server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// List the registries the cluster has credentials for (never the passwords).
    #[command(alias = "list")]
    Ls {
        /// Output format: `table`, `json` (one object per line), or a template such as
        /// '{{.Server}} {{.Username}}'.
        #[arg(long, default_value = "table", value_name = "table|json|TEMPLATE")]
        format: Format,
        /// Print servers only.
        #[arg(short, long)]
        quiet: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use knit_scheduler::ServiceSpec;
    use knit_scheduler::spec::Limits;

    use crate::cli::{Cli, Command, ServiceCommand};

    fn update(args: &[&str], current: &ServiceSpec) -> ServiceSpec {
        let words = ["knit", "service", "update"].iter().chain(args);
        let Command::Service(ServiceCommand::Update(update)) =
            Cli::try_parse_from(words).expect("parses").command
        else {
            panic!("not an update");
        };
        update.apply(current, &Limits::default()).expect("applies")
    }

    #[test]
    fn configs_are_added_by_target_and_removed_by_name_as_dockers() {
        let mut spec = ServiceSpec::docker("web", "nginx");
        spec.configs = vec![
            "site".parse().unwrap(),
            "source=old,target=/etc/app.conf".parse().unwrap(),
        ];
        let next = update(
            &[
                "--config-rm",
                "site",
                "--config-add",
                "source=new,target=/etc/app.conf,mode=0440",
                "web",
            ],
            &spec,
        );
        assert_eq!(next.configs.len(), 1);
        assert_eq!(
            (next.configs[0].source.as_str(), next.configs[0].mode),
            ("new", 0o440)
        );
        assert_ne!(
            next.template_id(),
            spec.template_id(),
            "replicas are replaced"
        );
        let Command::Service(ServiceCommand::Create(create)) = Cli::try_parse_from([
            "knit", "service", "create", "--name", "web", "--config", "site", "nginx",
        ])
        .expect("parses")
        .command
        else {
            panic!("not a create");
        };
        let created = create.to_spec(&Limits::default()).expect("a spec");
        assert_eq!(created.configs[0].target, "/site");
    }
}
