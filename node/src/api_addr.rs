//! Where the admin API is: a Unix socket (the default, as Docker's) or a TCP address.
//! `knit up` serves it there and the client commands find it there, from one flag
//! (`--api` / `KNIT_API`) read alike on both sides.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The socket's file name in the data dir.
pub(crate) const SOCKET_NAME: &str = "knit.sock";

/// An admin API address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiAddr {
    /// A Unix socket: access is the file's permissions (root and the `knit` group).
    Unix(PathBuf),
    /// `HOST:PORT` on TCP: mutual TLS with certificates from the cluster CA, unless the
    /// operator asked for plain HTTP.
    Tcp(String),
}

impl ApiAddr {
    /// Reads `--api`: `unix:///path`, a path (anything with a `/`), `tcp://HOST:PORT`,
    /// `https://HOST:PORT` or `HOST:PORT`.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix://") {
            if path.is_empty() {
                bail!("--api unix:// needs a path, e.g. unix:///var/lib/knit/knit.sock");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let tcp = text
            .strip_prefix("tcp://")
            .or_else(|| text.strip_prefix("https://"))
            .or_else(|| text.strip_prefix("http://"));
        if let Some(rest) = tcp {
            return Self::tcp(rest.trim_end_matches('/'), text);
        }
        if text.contains('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        Self::tcp(text, text)
    }

    fn tcp(host_port: &str, given: &str) -> Result<Self> {
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(host_port.to_owned()))
            }
            _ => bail!(
                "--api {given:?} is neither a socket path nor HOST:PORT; e.g. \
                 unix:///var/lib/knit/knit.sock, /tmp/k1/knit.sock or tcp://10.0.0.1:7947"
            ),
        }
    }

    /// The API of the peer whose data dir is `data_dir`, unless `--api` says otherwise.
    pub(crate) fn or_default(given: Option<&str>, data_dir: &Path) -> Result<Self> {
        match given {
            Some(text) => Self::parse(text),
            None => Ok(Self::Unix(data_dir.join(SOCKET_NAME))),
        }
    }
}

impl std::fmt::Display for ApiAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_tcp_addresses_are_told_apart() {
        let unix = |p: &str| ApiAddr::Unix(PathBuf::from(p));
        let tcp = |a: &str| ApiAddr::Tcp(a.to_owned());
        assert_eq!(
            ApiAddr::parse("unix:///run/knit.sock").unwrap(),
            unix("/run/knit.sock")
        );
        assert_eq!(
            ApiAddr::parse("/tmp/k1/knit.sock").unwrap(),
            unix("/tmp/k1/knit.sock")
        );
        assert_eq!(ApiAddr::parse("./knit.sock").unwrap(), unix("./knit.sock"));
        assert_eq!(
            ApiAddr::parse("127.0.0.1:7947").unwrap(),
            tcp("127.0.0.1:7947")
        );
        assert_eq!(
            ApiAddr::parse("tcp://host-1:7947").unwrap(),
            tcp("host-1:7947")
        );
        assert_eq!(
            ApiAddr::parse("https://[::1]:7947/").unwrap(),
            tcp("[::1]:7947")
        );
        for bad in ["unix://", "7947", "host", "tcp://host:port", ":7947"] {
            let e = ApiAddr::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--api"), "{bad}: {e}");
        }
        let data = Path::new("/var/lib/knit");
        assert_eq!(
            ApiAddr::or_default(None, data).unwrap(),
            unix("/var/lib/knit/knit.sock")
        );
        assert_eq!(
            ApiAddr::parse("unix:///a").unwrap().to_string(),
            "unix:///a"
        );
    }
}
