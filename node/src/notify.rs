//! `sd_notify`: tells systemd that the peer is serving, for a `Type=notify` unit
//! (`packaging/knit.service`), so that `systemctl start knit` returns once the admin API
//! answers and units ordered after knit start after that.
//!
//! The protocol is one datagram, `READY=1` (and `STOPPING=1` at a stop), sent to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`); without the
//! variable (not run by systemd) nothing is sent. It never waits: the socket is
//! non-blocking, and a failure is logged, not fatal.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager, if there is one, that the peer is stopping (`STOPPING=1`):
/// `systemctl status` shows "deactivating" while it leaves the cluster and saves.
pub(crate) fn stopping() {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send(&socket, "STOPPING=1") {
        tracing::debug!(socket = ?socket, error = %e, "cannot tell the service manager the peer is stopping");
    }
}

/// Tells the service manager, if there is one, that the peer is ready.
pub(crate) fn ready() {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    match send(&socket, "READY=1") {
        Ok(()) => tracing::debug!(socket = ?socket, "told the service manager the peer is ready"),
        Err(e) => tracing::warn!(
            socket = ?socket,
            error = %e,
            "cannot tell the service manager the peer is ready; a Type=notify unit will time out (check NOTIFY_SOCKET, or use Type=simple)"
        ),
    }
}

/// Sends `state` (`READY=1`) to the notification socket `socket`.
fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name (@name)",
            ));
        }
    };
    let sender = UnixDatagram::unbound()?;
    sender.set_nonblocking(true)?;
    let sent = sender.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_reaches_a_socket_path() {
        let path = std::env::temp_dir().join(format!("knit-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(received(&listener), "READY=1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        let name = format!("knit-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(received(&listener), "READY=1");
    }

    #[test]
    fn other_names_are_errors_not_panics() {
        for name in ["", "relative.sock", "vsock:2:1234"] {
            assert!(send(OsStr::new(name), "READY=1").is_err(), "{name}");
        }
        // Nobody listening: an error, returned at once.
        assert!(send(OsStr::new("/nonexistent/knit/notify.sock"), "READY=1").is_err());
    }
}
