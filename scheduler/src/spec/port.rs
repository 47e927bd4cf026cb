//! Ports: `-p 80:4000` (published on every node's ingress), `-p 53:53/udp`, and `-p 8080`
//! (a target only: not published, reached through the service's name and virtual IP).

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

/// A port of a service's replicas. Every target port is reachable at the service's virtual
/// IP (its name) from every node; one with a published port is also published on every
/// node's ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortSpec {
    /// The port clients connect to on every node's ingress (1-65535); 0 or absent: not
    /// published (the target is reached through the service's name only). Absent is
    /// read as 0 so that a spec written without it loads.
    #[serde(default)]
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

impl PortSpec {
    /// The port published on the ingress, or `None` for a target reached by name only.
    pub fn published_port(&self) -> Option<u16> {
        (self.published != 0).then_some(self.published)
    }
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

fn protocol(input: &str, text: &str) -> Result<Protocol, SpecError> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(SpecError::Port {
            input: input.to_owned(),
            why: format!("unknown protocol {other:?} (tcp or udp)"),
        }),
    }
}

/// Reads Docker's long form: `published=80,target=4000,protocol=udp,mode=ingress`.
fn long_form(input: &str) -> Result<PortSpec, SpecError> {
    let err = |why: String| SpecError::Port {
        input: input.to_owned(),
        why,
    };
    let (mut published, mut target, mut proto) = (0, None, Protocol::Tcp);
    for field in input.trim().split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(err(format!("{field:?} is not KEY=VALUE")));
        };
        match key.trim() {
            "published" => published = port_number(input, value.trim(), "published")?,
            "target" => target = Some(port_number(input, value.trim(), "target")?),
            "protocol" => proto = protocol(input, value.trim())?,
            "mode" if value.trim() == "ingress" => {}
            "mode" => {
                return Err(err(format!(
                    "mode {:?}: knit publishes through the ingress only (mode=ingress)",
                    value.trim()
                )));
            }
            other => {
                return Err(err(format!(
                    "unknown key {other:?} (published, target, protocol, mode)"
                )));
            }
        }
    }
    let Some(target) = target else {
        return Err(err("it names no target".to_owned()));
    };
    Ok(PortSpec {
        published,
        target,
        protocol: proto,
        proxy_protocol: false,
    })
}

impl FromStr for PortSpec {
    type Err = SpecError;

    /// Reads `PUBLISHED:TARGET` or `TARGET`, with an optional `/tcp` or `/udp`, or
    /// Docker's long form `published=P,target=T[,protocol=udp]`.
    fn from_str(input: &str) -> Result<Self, SpecError> {
        let err = |why: &str| SpecError::Port {
            input: input.to_owned(),
            why: why.to_owned(),
        };
        let text = input.trim();
        if text.contains('=') {
            return long_form(input);
        }
        let (ports, proto) = match text.split_once('/') {
            None => (text, Protocol::Tcp),
            Some((ports, name)) => (ports, protocol(input, name)?),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (published, target) = match parts.as_slice() {
            [""] => return Err(err("it is empty")),
            [target] => (0, port_number(input, target, "target")?),
            [published, target] => (
                port_number(input, published, "published")?,
                port_number(input, target, "target")?,
            ),
            [_, _, _] => {
                return Err(err(
                    "knit publishes on every address of every node; drop the address",
                ));
            }
            _ => return Err(err("too many ':'")),
        };
        Ok(Self {
            published,
            target,
            protocol: proto,
            proxy_protocol: false,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.published_port() {
            Some(published) => write!(f, "{published}:{}/{}", self.target, self.protocol),
            None => write!(f, "{}/{}", self.target, self.protocol),
        }
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
    fn a_lone_port_is_a_target_reached_by_name_only() {
        let p = port("8080").unwrap();
        assert_eq!((p.published_port(), p.target), (None, 8080));
        assert_eq!(p.to_string(), "8080/tcp");
        assert_eq!(port("5353/udp").unwrap().protocol, Protocol::Udp);
        assert_eq!(port("80:4000").unwrap().published_port(), Some(80));
    }

    #[test]
    fn the_long_form_reads_as_docker_writes_it() {
        let p = port("published=80,target=4000,protocol=udp,mode=ingress").unwrap();
        assert_eq!(
            (p.published_port(), p.target, p.protocol),
            (Some(80), 4000, Protocol::Udp)
        );
        let p = port("target=8080").unwrap();
        assert_eq!((p.published_port(), p.target), (None, 8080));
        assert!(
            port("published=80")
                .unwrap_err()
                .contains("names no target")
        );
        assert!(port("target=80,mode=host").unwrap_err().contains("ingress"));
        assert!(
            port("target=80,size=3")
                .unwrap_err()
                .contains("unknown key")
        );
        assert!(port("target=0").unwrap_err().contains("outside 1-65535"));
    }

    #[test]
    fn a_spec_written_before_target_only_ports_loads_and_one_without_published_too() {
        let old: PortSpec = serde_json::from_str(r#"{"published":80,"target":4000}"#).unwrap();
        assert_eq!(old.published_port(), Some(80));
        let internal: PortSpec = serde_json::from_str(r#"{"target":4000}"#).unwrap();
        assert_eq!(internal.published_port(), None);
    }

    #[test]
    fn every_form_reads_back_from_its_text() {
        for text in [
            "80:4000",
            "8080",
            "53/udp",
            " 9000 ",
            "target=8080",
            "published=80,target=4000,protocol=udp,mode=ingress",
        ] {
            let read = port(text).unwrap();
            assert_eq!(port(&read.to_string()).unwrap(), read, "{text}");
        }
    }

    #[test]
    fn bad_ports_say_what_to_write() {
        let e = port("0:80").unwrap_err();
        assert!(e.contains("published port 0 is outside 1-65535"), "{e}");
        assert!(e.contains("TARGET alone"), "{e}");
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
        assert!(port("0").unwrap_err().contains("target port 0"));
    }
}
