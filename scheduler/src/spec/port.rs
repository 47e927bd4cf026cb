//! Published ports: `-p 80:4000`, `-p 53:53/udp`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// The transport a port carries.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// A port the mesh publishes on every node and forwards to a replica's target port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortSpec {
    /// The port clients connect to, on every node (1-65535).
    pub published: u16,
    /// The port the replica listens on (1-65535).
    pub target: u16,
    /// TCP or UDP.
    #[serde(default)]
    pub protocol: Protocol,
    /// Whether the forwarder prepends a PROXY protocol header, so the replica sees the
    /// client's address.
    #[serde(default)]
    pub proxy_protocol: bool,
}

fn port_number(input: &str, text: &str, which: &str) -> Result<u16, SpecError> {
    let err = |why: String| SpecError::Port {
        input: input.to_owned(),
        why,
    };
    if text.contains('-') {
        return Err(err(format!(
            "{which} port {text:?} is a range; knit publishes single ports"
        )));
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=65_535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(err(format!("{which} port {n} is outside 1-65535"))),
        Err(_) => Err(err(format!("{which} port {text:?} is not a number"))),
    }
}

impl FromStr for PortSpec {
    type Err = SpecError;

    /// Reads `PUBLISHED:TARGET` with an optional `/tcp` or `/udp`.
    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |why: &str| SpecError::Port {
            input: input.to_owned(),
            why: why.to_owned(),
        };
        let text = input.trim();
        let (ports, protocol) = match text.split_once('/') {
            None => (text, Protocol::Tcp),
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some((_, other)) => {
                return Err(err(&format!("unknown protocol {other:?} (tcp or udp)")));
            }
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (published, target) = match parts.as_slice() {
            [published, target] => (*published, *target),
            [""] => return Err(err("it is empty")),
            [_] => {
                return Err(err(
                    "a lone port is not enough: knit publishes a fixed port on every node, so give both",
                ));
            }
            [_, _, _] => {
                return Err(err(
                    "knit publishes on every address of every node; drop the address",
                ));
            }
            _ => return Err(err("too many ':'")),
        };
        Ok(Self {
            published: port_number(input, published, "published")?,
            target: port_number(input, target, "target")?,
            protocol,
            proxy_protocol: false,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.published, self.target, self.protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(s: &str) -> Result<PortSpec, String> {
        s.parse::<PortSpec>().map_err(|e| e.to_string())
    }

    #[test]
    fn ports_read() {
        let p = port("80:4000").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol),
            (80, 4000, Protocol::Tcp)
        );
        assert!(!p.proxy_protocol);
        let p = port("53:5353/udp").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol),
            (53, 5353, Protocol::Udp)
        );
        assert_eq!(port("80:4000/tcp").unwrap().to_string(), "80:4000/tcp");
    }

    #[test]
    fn bad_ports_say_what_to_write() {
        let e = port("4000").unwrap_err();
        assert!(
            e.contains("give both") && e.contains("PUBLISHED:TARGET"),
            "{e}"
        );
        let e = port("0:80").unwrap_err();
        assert!(e.contains("published port 0 is outside 1-65535"), "{e}");
        let e = port("80:70000").unwrap_err();
        assert!(e.contains("target port 70000 is outside"), "{e}");
        let e = port("80:http").unwrap_err();
        assert!(e.contains("not a number"), "{e}");
        let e = port("80:4000/sctp").unwrap_err();
        assert!(e.contains("unknown protocol \"sctp\""), "{e}");
        let e = port("127.0.0.1:80:4000").unwrap_err();
        assert!(e.contains("drop the address"), "{e}");
        let e = port("8000-8010:8000-8010").unwrap_err();
        assert!(e.contains("range"), "{e}");
        assert!(port("").unwrap_err().contains("empty"));
    }
}
