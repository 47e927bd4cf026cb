//! Registry credentials (`knit login`): one record per registry server, in the replicated
//! state under `registry/<server>`, so that every host can pull a private image, not
//! only the one whose environment holds a password.
//!
//! The user name is kept as it is (`knit registry ls` shows it); the password is sealed
//! for the cluster (`knit_mesh::quic::sealed`, purpose `Registry`, named by the server
//! and the user, so that a sealed password moved to another record does not open). The
//! state's file, the gossip and the API's answers never hold it in clear text; only the
//! docker driver opens it, when it must pull an image from that server.
//!
//! Servers are named as Docker names them for an image: the first part of a reference
//! when it looks like a host (`registry.example.com:5000/app:1`), else Docker Hub, which
//! is recorded as `docker.io` and given to the engine as `https://index.docker.io/v1/`.

use knit_mesh::quic::Credentials;
use knit_mesh::quic::sealed::{self, Purpose, SealError};
use knit_mesh::store::Store;

/// Docker Hub, as records and listings name it.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's address as Docker gives it with credentials (`docker login` alone).
pub(crate) const DOCKER_HUB_ADDRESS: &str = "https://index.docker.io/v1/";
/// The other names of Docker Hub that `knit login` takes.
const DOCKER_HUB_ALIASES: [&str; 3] = ["index.docker.io", "registry-1.docker.io", "docker.io"];

/// The prefix of every registry record.
pub(crate) const PREFIX: &str = "registry/";
/// Registries a cluster keeps credentials for.
pub(crate) const RECORDS_MAX: usize = 100;
/// The longest server name (a host name and a port).
const SERVER_MAX_BYTES: usize = 255;
/// The longest user name.
pub(crate) const USERNAME_MAX_BYTES: usize = 256;
/// The longest password or access token (cloud registries' tokens run to a few KiB).
pub(crate) const PASSWORD_MAX_BYTES: usize = 16 * 1024;

/// The key of `server`'s record (`server` as [`server_name`] gives it).
pub(crate) fn key(server: &str) -> String {
    format!("{PREFIX}{server}")
}

/// A registry server that is not a host name with an optional port.
#[derive(Debug, thiserror::Error)]
#[error(
    "registry server {0:?}: give a host name with an optional port (registry.example.com:5000), \
     or nothing for Docker Hub"
)]
pub(crate) struct BadServer(pub(crate) String);

/// `given` as records name it: without a scheme or a path, in lower case, and Docker
/// Hub's names (`https://index.docker.io/v1/`, `index.docker.io`, ...) as `docker.io`.
pub(crate) fn server_name(given: &str) -> Result<String, BadServer> {
    let bad = || BadServer(given.to_owned());
    let trimmed = given.trim();
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-:[]_".contains(c);
    if host.is_empty() || host.len() > SERVER_MAX_BYTES || !host.chars().all(allowed) {
        return Err(bad());
    }
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        return Ok(DOCKER_HUB.to_owned());
    }
    Ok(host)
}

/// The registry an image reference pulls from, as Docker reads it: the part before the
/// first `/` when it looks like a host (it holds a `.` or a `:`, is `localhost`, or has
/// capitals, which repository names never do), else Docker Hub (`app`, `library/app`,
/// `user/app`).
pub(crate) fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            server_name(first).unwrap_or_else(|_| first.to_ascii_lowercase())
        }
        _ => DOCKER_HUB.to_owned(),
    }
}

/// One registry's credentials as stored: the password sealed, never in clear text.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RegistryRecord {
    /// The server, as [`server_name`] gives it.
    pub(crate) server: String,
    /// The user name, shown by `knit registry ls`.
    pub(crate) username: String,
    /// The password: nonce, ciphertext and tag, in hex.
    pub(crate) sealed_hex: String,
    /// When `knit login` stored it, in ms since the Unix epoch.
    pub(crate) created_at_ms: u64,
}

/// What a password is sealed under: its record's key and the user, so that it opens for
/// that server and user only.
fn sealed_name(server: &str, username: &str) -> String {
    format!("{}\n{username}", key(server))
}

impl RegistryRecord {
    /// `password` for `username` on `server`, sealed for this cluster.
    pub(crate) fn seal(
        creds: &Credentials,
        server: &str,
        username: &str,
        password: &str,
        created_at_ms: u64,
    ) -> Result<Self, SealError> {
        let name = sealed_name(server, username);
        let sealed = sealed::seal(creds, Purpose::Registry, &name, password.as_bytes())?;
        Ok(Self {
            server: server.to_owned(),
            username: username.to_owned(),
            sealed_hex: hex::encode(sealed),
            created_at_ms,
        })
    }

    /// The credentials in clear, if the password opens under this cluster's key.
    pub(crate) fn open(&self, creds: &Credentials) -> Option<RegistryAuth> {
        let sealed = hex::decode(&self.sealed_hex).ok()?;
        let name = sealed_name(&self.server, &self.username);
        let plain = sealed::open(creds, Purpose::Registry, &name, &sealed)?;
        Some(RegistryAuth {
            server: self.server.clone(),
            username: self.username.clone(),
            password: String::from_utf8(plain).ok()?,
        })
    }
}

/// Every registry record in `store`, in the order of their servers.
pub(crate) fn records(store: &Store) -> Vec<RegistryRecord> {
    store
        .scan(PREFIX)
        .filter_map(|(_, bytes, _)| serde_json::from_slice(bytes).ok())
        .collect()
}

/// The credentials the docker driver pulls `image` with: those of the image's registry,
/// when `knit login` stored some. A record that does not open is logged and skipped: the
/// pull goes on without it (and says the registry refused it).
pub(crate) fn auth_for(store: &Store, creds: &Credentials, image: &str) -> Option<RegistryAuth> {
    let server = registry_of(image);
    let record: RegistryRecord = serde_json::from_slice(store.get(&key(&server))?).ok()?;
    let auth = record.open(creds);
    if auth.is_none() {
        tracing::warn!(
            server,
            "registry credentials do not decrypt with this cluster's key; `knit login {server}` again"
        );
    }
    auth
}

/// One registry's credentials in clear, on their way to the engine. Its `Debug` never
/// shows the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RegistryAuth {
    /// The server, as [`server_name`] gives it.
    pub(crate) server: String,
    pub(crate) username: String,
    pub(crate) password: String,
}

impl RegistryAuth {
    /// The server's address as the engine takes it with credentials.
    pub(crate) fn server_address(&self) -> &str {
        if self.server == DOCKER_HUB {
            DOCKER_HUB_ADDRESS
        } else {
            &self.server
        }
    }
}

impl RegistryAuth {
    /// These credentials as the engine takes them for a pull.
    pub(crate) fn docker_credentials(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.server_address().to_owned()),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<sealed>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use knit_mesh::NodeId;

    use super::*;

    #[test]
    fn an_image_pulls_from_the_registry_its_reference_names() {
        for (image, registry) in [
            (
                "registry.example.com:5000/app:1",
                "registry.example.com:5000",
            ),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
            ("ghcr.io/user/app@sha256:00", "ghcr.io"),
            ("localhost/app", "localhost"),
            ("Registry/app", "registry"),
            ("index.docker.io/library/app", DOCKER_HUB),
            ("docker.io/user/app:2", DOCKER_HUB),
            ("app", DOCKER_HUB),
            ("app:1", DOCKER_HUB),
            ("library/app", DOCKER_HUB),
            ("user/app:1", DOCKER_HUB),
            ("user/sub/app", DOCKER_HUB),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn servers_are_named_as_docker_names_them() {
        for (given, name) in [
            ("https://index.docker.io/v1/", DOCKER_HUB),
            ("docker.io", DOCKER_HUB),
            ("registry-1.docker.io", DOCKER_HUB),
            ("Registry.Example.com:5000", "registry.example.com:5000"),
            ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(server_name(given).unwrap(), name, "{given}");
        }
        for bad in ["", "https://", "a b", "reg\u{e9}.io", &"a".repeat(300)] {
            assert!(server_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_record_opens_for_its_server_and_user_only_and_holds_no_clear_text() {
        let creds = Credentials::create_cluster(&NodeId::from_bytes([1; 16]), [1; 16]).unwrap();
        let password = "correct-horse-battery-staple";
        let record = RegistryRecord::seal(&creds, "reg.io:5000", "alice", password, 7).unwrap();
        let stored = serde_json::to_vec(&record).unwrap();
        let stored_text = String::from_utf8_lossy(&stored);
        assert!(!stored_text.contains(password), "{stored_text}");
        assert!(
            !stored_text.contains(&hex::encode(password)),
            "{stored_text}"
        );
        let back: RegistryRecord = serde_json::from_slice(&stored).unwrap();
        let auth = back.open(&creds).expect("opens");
        assert_eq!(
            (
                auth.server.as_str(),
                auth.username.as_str(),
                auth.password.as_str()
            ),
            ("reg.io:5000", "alice", password)
        );
        assert_eq!(auth.server_address(), "reg.io:5000");
        assert!(!format!("{auth:?}").contains(password), "Debug hides it");
        let moved = RegistryRecord {
            server: "other.io".into(),
            ..back.clone()
        };
        assert!(moved.open(&creds).is_none(), "moved to another server");
        let renamed = RegistryRecord {
            username: "mallory".into(),
            ..back.clone()
        };
        assert!(renamed.open(&creds).is_none(), "given to another user");
        let other = Credentials::create_cluster(&NodeId::from_bytes([1; 16]), [1; 16]).unwrap();
        assert!(back.open(&other).is_none(), "another cluster");
    }

    #[test]
    fn docker_hub_credentials_go_to_the_engine_under_dockers_address() {
        let auth = RegistryAuth {
            server: DOCKER_HUB.into(),
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(auth.server_address(), DOCKER_HUB_ADDRESS);
        let engine = auth.docker_credentials();
        assert_eq!(engine.serveraddress.as_deref(), Some(DOCKER_HUB_ADDRESS));
        assert_eq!(
            (engine.username.as_deref(), engine.password.as_deref()),
            (Some("u"), Some("p"))
        );
    }
}
