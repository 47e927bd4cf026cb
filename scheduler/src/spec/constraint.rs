//! Placement constraints in Docker's notation: `node.labels.zone==a`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::node::NodeView;

/// The node attribute a constraint reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintField {
    /// `node.labels.KEY`: an operator label.
    Label(String),
    /// `node.name` (Docker's `node.hostname` is read as the same).
    Name,
    /// `node.id`.
    Id,
}

/// Equal or not equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// One placement constraint; a service's constraints must all hold on a node.
///
/// Values compare exactly (case matters). `node.labels.K!=V` holds on a node without the
/// label, as in Docker. Serialized as its text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Constraint {
    /// What is compared.
    pub field: ConstraintField,
    /// How.
    pub op: ConstraintOp,
    /// With what.
    pub value: String,
}

impl Constraint {
    /// Whether the constraint holds on `node`.
    pub fn matches(&self, node: &NodeView) -> bool {
        let actual = match &self.field {
            ConstraintField::Label(key) => node.labels.get(key).map(String::as_str),
            ConstraintField::Name => Some(node.name.as_str()),
            ConstraintField::Id => Some(node.id.as_str()),
        };
        let equal = actual == Some(self.value.as_str());
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::Ne => !equal,
        }
    }
}

impl FromStr for Constraint {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |why: &str| SpecError::Constraint {
            input: input.to_owned(),
            why: why.to_owned(),
        };
        let (lhs, op, rhs) = if let Some((l, r)) = input.split_once("!=") {
            (l, ConstraintOp::Ne, r)
        } else if let Some((l, r)) = input.split_once("==") {
            (l, ConstraintOp::Eq, r)
        } else if input.contains('=') {
            return Err(err("a single '=' is not an operator; use == or !="));
        } else {
            return Err(err("no operator; use == or !="));
        };
        let (lhs, value) = (lhs.trim(), rhs.trim());
        if value.is_empty() {
            return Err(err("the value after the operator is empty"));
        }
        if value.contains("==") || value.contains("!=") {
            return Err(err("more than one operator"));
        }
        let field = match lhs {
            "node.name" | "node.hostname" => ConstraintField::Name,
            "node.id" => ConstraintField::Id,
            _ => match lhs.strip_prefix("node.labels.") {
                Some("") => return Err(err("the label key is empty")),
                // Specs carry constraints as text: `KEY=` or `KEY!` before `==` would read
                // back as another constraint (`node.labels.a!==b` is `a`, `!=`, `=b`).
                Some(key) if key.contains('=') || key.ends_with('!') => {
                    return Err(err("a label key has no '=' and does not end with '!'"));
                }
                Some(key) => ConstraintField::Label(key.to_owned()),
                None => return Err(err(&format!("unknown attribute {lhs:?}"))),
            },
        };
        Ok(Self {
            field,
            op,
            value: value.to_owned(),
        })
    }
}

impl TryFrom<String> for Constraint {
    type Error = SpecError;

    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<Constraint> for String {
    fn from(c: Constraint) -> String {
        c.to_string()
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            ConstraintField::Label(key) => write!(f, "node.labels.{key}")?,
            ConstraintField::Name => f.write_str("node.name")?,
            ConstraintField::Id => f.write_str("node.id")?,
        }
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, "{op}{}", self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeId;

    fn node(labels: &[(&str, &str)]) -> NodeView {
        let mut n = NodeView::new(NodeId::new("n1").unwrap());
        n.name = "host-1".into();
        for (k, v) in labels {
            n.labels.insert((*k).into(), (*v).into());
        }
        n
    }

    fn parse(s: &str) -> Result<Constraint, String> {
        s.parse::<Constraint>().map_err(|e| e.to_string())
    }

    #[test]
    fn constraints_read_and_match() {
        let zone_a = node(&[("zone", "a")]);
        let bare = node(&[]);
        let c = parse("node.labels.zone==a").unwrap();
        assert!(c.matches(&zone_a) && !c.matches(&bare));
        let c = parse("node.labels.zone != a").unwrap();
        assert!(!c.matches(&zone_a) && c.matches(&bare));
        assert_eq!(c.to_string(), "node.labels.zone!=a");
        assert!(parse("node.hostname==host-1").unwrap().matches(&bare));
        assert!(parse("node.name==host-1").unwrap().matches(&bare));
        assert!(parse("node.id==n1").unwrap().matches(&bare));
        assert!(!parse("node.id==n2").unwrap().matches(&bare));
    }

    #[test]
    fn bad_constraints_say_what_to_write() {
        let e = parse("node.labels.zone=a").unwrap_err();
        assert!(
            e.contains("single '='") && e.contains("node.labels.KEY==VALUE"),
            "{e}"
        );
        let e = parse("zone==a").unwrap_err();
        assert!(e.contains("unknown attribute \"zone\""), "{e}");
        let e = parse("node.labels.==a").unwrap_err();
        assert!(e.contains("label key is empty"), "{e}");
        let e = parse("node.labels.zone==").unwrap_err();
        assert!(e.contains("value after the operator is empty"), "{e}");
        let e = parse("node.labels.zone").unwrap_err();
        assert!(e.contains("no operator"), "{e}");
    }

    /// Found by fuzzing: `node.labels.a= ==b` printed as `node.labels.a===b`, which reads
    /// back as key `a`, value `=b`; peers read constraints from their text.
    #[test]
    fn label_keys_that_would_read_back_differently_are_refused() {
        for ambiguous in [
            "node.labels.a= ==b",
            "node.labels.a! ==b",
            "node.labels.a=b==c",
        ] {
            let e = parse(ambiguous).unwrap_err();
            assert!(e.contains("label key has no '='"), "{ambiguous}: {e}");
        }
        for text in [
            "node.labels.a===b",
            "node.labels.a!==b",
            "node.labels.a!b==c",
        ] {
            let c = parse(text).unwrap();
            assert_eq!(parse(&c.to_string()), Ok(c), "{text}");
        }
    }
}
