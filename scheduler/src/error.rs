//! What can be wrong with a service spec or with one of its textual fields.
//!
//! Every message says what is wrong and what a valid value looks like, because these
//! errors reach the user of `knit service create` as they are.

/// A service spec, or a field of one given as text, is not valid. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A port mapping could not be read.
    #[error(
        "invalid port {input:?}: {why}; write PUBLISHED:TARGET[/tcp|/udp] (e.g. 80:4000 or 53:53/udp), TARGET alone for a port reached by the service's name only (e.g. 8080), or published=80,target=4000[,protocol=udp]"
    )]
    Port {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A secret reference could not be read.
    #[error(
        "invalid secret {input:?}: {why}; write --secret NAME or --secret source=NAME,target=FILE[,uid=N,gid=N,mode=0400]"
    )]
    Secret {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A config reference could not be read.
    #[error(
        "invalid config {input:?}: {why}; write --config NAME or --config source=NAME,target=/PATH[,uid=N,gid=N,mode=0440]"
    )]
    Config {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A mount could not be read.
    #[error(
        "invalid mount {input:?}: {why}; write type=bind|volume|tmpfs,source=...,target=/path[,readonly], e.g. type=volume,source=db,target=/var/lib/db"
    )]
    Mount {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A placement constraint could not be read.
    #[error(
        "invalid constraint {input:?}: {why}; write node.labels.KEY==VALUE, node.labels.KEY!=VALUE, node.name==NAME or node.id==ID"
    )]
    Constraint {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A duration could not be read.
    #[error(
        "invalid duration {input:?}: {why}; write a number with a unit (ms, s, m, h), e.g. 500ms, 10s, 1m30s, 1h"
    )]
    Duration {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A memory size could not be read.
    #[error(
        "invalid memory size {input:?}: {why}; write bytes or a number with K, M, G or T (powers of 1024), e.g. 1024, 512M, 1G"
    )]
    Memory {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A CPU amount could not be read.
    #[error(
        "invalid cpu amount {input:?}: {why}; write cores as a decimal (0.5, 2) or millicores (250m)"
    )]
    Cpu {
        /// The text given.
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// A node id is empty.
    #[error(
        "invalid node id: it is empty; a node id is the node's 32 hex digit id, as `knit node ls` shows it"
    )]
    EmptyNodeId,
    /// A field of a whole spec breaks a rule.
    #[error("invalid service {service:?}: {field}: {why}")]
    Invalid {
        /// The service's name as given.
        service: String,
        /// The field at fault, as the CLI flag or JSON key names it.
        field: &'static str,
        /// What is wrong and what would be right.
        why: String,
    },
}

impl SpecError {
    pub(crate) fn invalid(service: &str, field: &'static str, why: impl Into<String>) -> Self {
        Self::Invalid {
            service: service.to_owned(),
            field,
            why: why.into(),
        }
    }
}
