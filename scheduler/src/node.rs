//! What placement reads about a node: its id, name, availability, labels and capacity.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::resources::Resources;

/// A node's id as text: the mesh writes it as 32 lowercase hex digits. Any non-empty text
/// is accepted, so tests and the simulator can use short names.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// A node id from text; refuses the empty string.
    pub fn new(id: impl Into<String>) -> Result<Self, SpecError> {
        let id = id.into();
        if id.is_empty() {
            return Err(SpecError::EmptyNodeId);
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = SpecError;

    fn try_from(id: String) -> Result<Self, SpecError> {
        Self::new(id)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl FromStr for NodeId {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::new(s)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// Whether a node takes work, as in `docker node update --availability`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Availability {
    /// Takes new slots.
    #[default]
    Active,
    /// Takes no new slots; keeps those it holds when the caller passes the current
    /// placement (see [`crate::placement::place_keeping`]).
    Pause,
    /// Takes no slots at all: its slots move to other nodes.
    Drain,
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Pause => "pause",
            Self::Drain => "drain",
        })
    }
}

/// A node as placement sees it. Telemetry is deliberately absent: views of it differ
/// between peers, and placement must come out the same on every peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeView {
    /// The node's id; placement hashes it.
    pub id: NodeId,
    /// The host name, for `node.name==` constraints and for people.
    #[serde(default)]
    pub name: String,
    /// Whether the node takes slots.
    #[serde(default)]
    pub availability: Availability,
    /// Operator labels, for `node.labels.K==V` constraints.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the node can give to reservations; a zero field means unknown and is not
    /// checked.
    #[serde(default)]
    pub capacity: Resources,
}

impl NodeView {
    /// An active node with no labels and unknown capacity.
    pub fn new(id: NodeId) -> Self {
        Self {
            name: id.to_string(),
            id,
            availability: Availability::Active,
            labels: BTreeMap::new(),
            capacity: Resources::default(),
        }
    }
}
