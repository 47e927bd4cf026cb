//! The host's resolvers, which answer every name that is not a service's: the
//! `nameserver` lines of `/etc/resolv.conf` (at most three, as the C library reads them),
//! read again every few seconds, and asked in turn, each within a timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::answer::id_of;
use crate::discovery::range::ServiceRange;

/// Resolvers asked, at most (glibc's `MAXNS`).
const SERVERS_MAX: usize = 3;
/// How long one resolver has to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `/etc/resolv.conf` is read again.
const REREAD: Duration = Duration::from_secs(10);
/// The largest message read from a resolver (the largest a UDP datagram can hold).
const MESSAGE_MAX_BYTES: usize = 65_535;

/// The resolvers of `resolv.conf`'s text: its `nameserver` addresses on port 53, but none
/// in the service range (that would be this server asking itself).
pub(crate) fn parse_resolv_conf(text: &str, range: ServiceRange) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            // A scope (`fe80::1%eth0`) is dropped: link-local resolvers are not supported.
            let addr = addr.split('%').next()?;
            addr.parse::<IpAddr>().ok()
        })
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !range.contains(*v4),
            IpAddr::V6(_) => true,
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .take(SERVERS_MAX)
        .collect()
}

/// The host's resolvers, as last read.
pub(crate) struct Upstreams {
    path: PathBuf,
    range: ServiceRange,
    read: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
}

impl Upstreams {
    pub(crate) fn new(path: PathBuf, range: ServiceRange) -> Self {
        Self {
            path,
            range,
            read: Mutex::new(None),
        }
    }

    fn servers(&self) -> Vec<SocketAddr> {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, servers)) = read.as_ref()
            && at.elapsed() < REREAD
        {
            return servers.clone();
        }
        let servers = std::fs::read_to_string(&self.path)
            .map(|text| parse_resolv_conf(&text, self.range))
            .unwrap_or_default();
        *read = Some((Instant::now(), servers.clone()));
        servers
    }

    /// Asks the resolvers `query` over UDP, in turn; the first answer to its id.
    pub(crate) async fn ask_udp(&self, query: &[u8]) -> Option<Vec<u8>> {
        let id = id_of(query)?;
        for server in self.servers() {
            if let Ok(Some(answer)) =
                tokio::time::timeout(ANSWER_TIMEOUT, udp_exchange(server, query, id)).await
            {
                return Some(answer);
            }
        }
        None
    }

    /// Asks the resolvers `query` over TCP, in turn (a client that got a truncated answer
    /// asks again over TCP).
    pub(crate) async fn ask_tcp(&self, query: &[u8]) -> Option<Vec<u8>> {
        for server in self.servers() {
            if let Ok(Ok(answer)) =
                tokio::time::timeout(ANSWER_TIMEOUT, tcp_exchange(server, query)).await
            {
                return Some(answer);
            }
        }
        None
    }
}

async fn udp_exchange(server: SocketAddr, query: &[u8], id: u16) -> Option<Vec<u8>> {
    let any: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await.ok()?;
    // Connected: only the resolver's datagrams are received.
    socket.connect(server).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; MESSAGE_MAX_BYTES];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        if id_of(&buf[..n]) == Some(id) {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    write_frame(&mut stream, query).await?;
    read_frame(&mut stream).await
}

/// Writes a DNS message with its two-byte length, as DNS over TCP frames it.
pub(crate) async fn write_frame(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::other("a DNS message over 65535 bytes"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// Reads one DNS message framed with its two-byte length.
pub(crate) async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_are_read_as_the_c_library_reads_them() {
        let range: ServiceRange = "10.213.0.0/16".parse().unwrap();
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\n\
                    nameserver 10.213.0.1\nnameserver fe80::1%eth0\n  nameserver   1.1.1.1 \n\
                    nameserver 8.8.8.8\nnameserver 9.9.9.9\noptions ndots:2\n";
        let servers = parse_resolv_conf(text, range);
        assert_eq!(
            servers,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
                "1.1.1.1:53".parse().unwrap(),
            ],
            "our own address skipped, three at most"
        );
        assert!(parse_resolv_conf("", range).is_empty());
    }
}
