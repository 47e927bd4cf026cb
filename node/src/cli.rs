//! The command line, in Docker's vocabulary. Every flag can also be set by a `KNIT_*`
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use knit_mesh::Profile;

pub(crate) use crate::commands::ListArgs;
use crate::flags::{CreateArgs, UpdateArgs};
pub(crate) use crate::format::Format;

/// knit: a self-healing container mesh with no manager.
#[derive(Debug, Parser)]
#[command(name = "knit", version = crate::version::LONG, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The admin API. Client commands find it there: a Unix socket (`unix:///path` or a
    /// path; default `~/.knit/knit.sock`, or `/var/lib/knit/knit.sock` when only that one
    /// exists) or TCP (`tcp://HOST:PORT` or `HOST:PORT`, mutual
    /// TLS with --tls-dir). For `knit up`, a path moves the socket (default
    /// `<data dir>/knit.sock`), and a TCP address is served besides it, always with mutual
    /// TLS unless --api-insecure.
    #[arg(long, global = true, env = "KNIT_API")]
    pub(crate) api: Option<String>,
    /// Client side of a TCP API: the folder with `ca.pem`, `cert.pem` and `key.pem` from
    /// `knit client-cert` (default `~/.knit/tls`).
    #[arg(long, global = true, env = "KNIT_TLS_DIR")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// Plain HTTP on a TCP API, without TLS: anyone who reaches the port commands the
    /// cluster. For a private test network only.
    #[arg(long, global = true, env = "KNIT_API_INSECURE")]
    pub(crate) api_insecure: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a peer: create a cluster, or join one with --join and --token.
    Up(Box<UpArgs>),
    /// Run a local cluster of N peers on loopback addresses, to try knit.
    Lab(LabArgs),
    /// Print the join token of the cluster, or rotate it.
    Token {
        #[command(subcommand)]
        command: Option<TokenCommand>,
    },
    /// Issue a client certificate for the admin API over TCP (on any member, as root).
    ClientCert(ClientCertArgs),
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage secrets: values sealed in the cluster's state, given to replicas as files.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage configs: files given to replicas at a path of their choice.
    #[command(subcommand)]
    Config(crate::commands::ConfigCommand),
    /// Deploy and manage stacks of services from Compose files.
    #[command(subcommand)]
    Stack(crate::commands::StackCommand),
    /// Store credentials for a registry, sealed in the cluster's state: every host pulls
    /// that registry's images with them.
    Login(crate::commands::LoginArgs),
    /// Remove the credentials `knit login` stored for a registry.
    Logout(crate::commands::LogoutArgs),
    /// List the registries `knit login` stored credentials for.
    #[command(subcommand)]
    Registry(crate::commands::RegistryCommand),
    /// Show or change cluster-wide settings.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Show the version of this binary and the git revision it was built from.
    Version {
        /// Output format: `json`, or a template such as '{{.Revision}}' (fields Version,
        /// Revision, Rustc, Target).
        #[arg(long, value_name = "json|TEMPLATE")]
        format: Option<Format>,
    },
    /// Print a shell completion script: `knit completion bash > /etc/bash_completion.d/knit`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (knit.1 and one per subcommand) into a folder, e.g.
    /// /usr/local/share/man/man1.
    Man {
        /// The folder (created if missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Create a secret from a file, or from standard input with `-`.
    Create {
        /// The secret's name.
        name: String,
        /// The file holding the value, or `-` for standard input.
        file: PathBuf,
    },
    /// List secrets (never their values).
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
    /// Show secrets' details (JSON; never their values).
    Inspect {
        /// The secrets.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove secrets no service uses.
    #[command(alias = "remove")]
    Rm {
        /// The secrets.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Show the cluster's limits on services (JSON).
    Inspect,
    /// Change the cluster's limits on services; every peer applies them.
    Update {
        /// The most replicas one service may ask for (default 10000, at most 100000).
        #[arg(long)]
        max_replicas: Option<u32>,
        /// The most slots all services together may ask for, a global service counting
        /// one per node (default 100000, at most 1000000).
        #[arg(long)]
        max_slots: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a new join secret: the old token stops working on every member within a
    /// gossip round or two. Members keep working; only new joins need the new token.
    Rotate,
}

#[derive(Debug, Args)]
pub(crate) struct ClientCertArgs {
    /// The operator's name (a DNS label, e.g. alice), written into the certificate.
    #[arg(long)]
    pub(crate) name: String,
    /// The folder to write `key.pem`, `cert.pem` and `ca.pem` into (created, mode 0700);
    /// use it with `knit --tls-dir DIR --api HOST:PORT ...` or `KNIT_TLS_DIR`.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Create a service.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// List the tasks (slots and replicas) of a service.
    Ps {
        /// The service.
        name: String,
        /// Also list the replicas each slot had before (the last three per slot and node).
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a service's spec (JSON).
    Inspect {
        /// The services.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Scale replicated services: NAME=REPLICAS...
    Scale {
        /// NAME=REPLICAS pairs.
        #[arg(required = true)]
        targets: Vec<String>,
        #[command(flatten)]
        detach: crate::flags::DetachArg,
    },
    /// Update a service.
    Update(Box<UpdateArgs>),
    /// Show the output of a service's replicas, gathered from every host that runs them.
    Logs {
        /// The service.
        name: String,
        /// Keep streaming new output (Ctrl-C ends).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only output since then: a duration back from now (10m, 1h30m) or an RFC 3339
        /// UTC time (2026-12-02T17:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Lines per replica: a number, or `all`.
        #[arg(long, short = 'n', default_value = "all")]
        tail: String,
        /// Show each line's time.
        #[arg(long, short = 't')]
        timestamps: bool,
    },
    /// Revert a service to its previous spec.
    Rollback {
        /// The service.
        name: String,
        #[command(flatten)]
        detach: crate::flags::DetachArg,
    },
    /// Remove services.
    #[command(alias = "remove")]
    Rm {
        /// The services.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// List the nodes of the cluster.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show one node in detail (JSON).
    Inspect {
        /// Node id (or a unique prefix of it) or name.
        node: String,
    },
    /// List the tasks (replicas) on a node, of every service.
    Ps {
        /// Node id (or a unique prefix of it) or name.
        node: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Remove nodes from the cluster for good: every peer forgets them and refuses them
    /// from then on (a host removed must join again with a new data dir and a token).
    #[command(alias = "remove")]
    Rm {
        /// Also remove a node that is still alive or suspect (it is cut off at once).
        #[arg(short, long)]
        force: bool,
        /// Also rotate the join token, so that no copy of the old one admits a new node.
        #[arg(long)]
        rotate_token: bool,
        /// Node ids (or unique prefixes) or names.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability or labels.
    Update {
        /// active, pause or drain.
        #[arg(long)]
        availability: Option<String>,
        /// Add or change a label: KEY=VALUE.
        #[arg(long)]
        label_add: Vec<String>,
        /// Remove a label.
        #[arg(long)]
        label_rm: Vec<String>,
        /// Node id (or a unique prefix of it) or name.
        node: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LabArgs {
    /// How many peers.
    #[arg(long, env = "KNIT_LAB_NODES", default_value_t = 3)]
    pub(crate) nodes: usize,
    /// Failure-detection timing for every peer.
    #[arg(long, env = "KNIT_PROFILE", default_value = "fast")]
    pub(crate) profile: Profile,
    /// Keep data dirs and logs here (kept after the lab stops).
    #[arg(long, env = "KNIT_LAB_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Keep the temporary data dirs and logs after the lab stops.
    #[arg(long)]
    pub(crate) keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Where this peer keeps its identity, credentials and state.
    #[arg(long, env = "KNIT_DATA_DIR", default_value_os_t = default_data_dir())]
    pub(crate) data_dir: PathBuf,
    /// The UDP address the mesh (QUIC) listens on.
    #[arg(long, env = "KNIT_LISTEN", default_value = "127.0.0.1:7946")]
    pub(crate) listen: SocketAddr,
    /// The address other peers reach this one at (default: --listen, when it is specific).
    #[arg(long, env = "KNIT_ADVERTISE")]
    pub(crate) advertise: Option<SocketAddr>,
    /// A member to join through (repeat for several).
    #[arg(long, env = "KNIT_JOIN", value_delimiter = ',')]
    pub(crate) join: Vec<SocketAddr>,
    /// The cluster's join token (from `knit token` on a member); needed on first join only.
    /// Prefer --token-file: a command line is visible to every user of the host.
    #[arg(
        long,
        env = "KNIT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub(crate) token: Option<String>,
    /// A file holding the join token (first join only).
    #[arg(long, env = "KNIT_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` on their own listener: ADDR:PORT, or PORT for
    /// 127.0.0.1:PORT. Off by default.
    #[arg(long, env = "KNIT_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<String>,
    /// Another name clients may use in the API's `Host` header (besides IP addresses,
    /// `localhost`, the host name, the node name and `node.knit`); repeat for several.
    #[arg(long = "api-host", env = "KNIT_API_HOSTS", value_delimiter = ',')]
    pub(crate) api_hosts: Vec<String>,
    /// Let services use the `process` driver on this host (plain child processes, run as
    /// --process-user). Off by default: a process replica runs directly on the host.
    #[arg(long, env = "KNIT_ENABLE_PROCESS_DRIVER")]
    pub(crate) enable_process_driver: bool,
    /// The user process replicas run as (default: `nobody` when the peer runs as root,
    /// else the peer's own user).
    #[arg(long, env = "KNIT_PROCESS_USER")]
    pub(crate) process_user: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long, env = "KNIT_NAME")]
    pub(crate) name: Option<String>,
    /// A label, key=value (repeat for several).
    #[arg(long = "label", env = "KNIT_LABELS", value_delimiter = ',')]
    pub(crate) labels: Vec<String>,
    /// Failure-detection timing: lan, wan or fast.
    #[arg(long, env = "KNIT_PROFILE", default_value = "lan")]
    pub(crate) profile: Profile,
    /// Log format.
    #[arg(long, env = "KNIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub(crate) log_format: LogFormat,
    /// Where published ports listen (the ingress): every interface by default.
    #[arg(long, env = "KNIT_INGRESS_ADDR", default_value = "0.0.0.0")]
    pub(crate) ingress_addr: std::net::IpAddr,
    /// Service discovery: the range of the services' virtual IPs, whose first address is
    /// this peer's DNS server (CIDR), or `none` to turn discovery off. Peers that share a
    /// network namespace (`knit lab`) need ranges of their own. Needs CAP_NET_ADMIN.
    #[arg(long, env = "KNIT_SERVICE_RANGE", default_value = crate::discovery::range::DEFAULT_RANGE)]
    pub(crate) service_range: crate::discovery::range::RangeSetting,
    /// Drain this node itself when its data dir's disk is this full (percent).
    #[arg(long, env = "KNIT_DRAIN_DISK_PERCENT", default_value_t = 95.0)]
    pub(crate) drain_disk_percent: f64,
    /// Drain this node itself when this much memory is used (percent).
    #[arg(long, env = "KNIT_DRAIN_MEMORY_PERCENT", default_value_t = 95.0)]
    pub(crate) drain_memory_percent: f64,
    /// Drain this node itself when a sensor reaches this temperature (°C).
    #[arg(long, env = "KNIT_DRAIN_TEMPERATURE", default_value_t = 90.0)]
    pub(crate) drain_temperature: f32,
    /// Drain this node itself after this many failed starts within 10 minutes.
    #[arg(long, env = "KNIT_DRAIN_START_FAILURES", default_value_t = 5)]
    pub(crate) drain_start_failures: u32,
    /// Refuse state writes stamped further ahead of this host's clock than this (a fast
    /// clock elsewhere must not drag the cluster forward). Keep hosts in NTP sync.
    #[arg(long, env = "KNIT_CLOCK_SKEW_MAX", default_value = "60s")]
    pub(crate) clock_skew_max: String,
    /// How long a self-drained node must be healthy before it takes work again.
    #[arg(long, env = "KNIT_RECOVER_AFTER", default_value = "5m")]
    pub(crate) recover_after: String,
}

/// The data dir of a peer run as a system service (`packaging/knit.service`), and of one
/// run with no `$HOME`.
pub(crate) const SYSTEM_DATA_DIR: &str = "/var/lib/knit";

pub(crate) fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".knit"),
        _ => PathBuf::from(SYSTEM_DATA_DIR),
    }
}
