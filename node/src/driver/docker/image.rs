//! The docker driver's images: an image is inspected, and pulled when missing, with the
//! credentials `knit login` stored for its registry.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::TryStreamExt;

use super::{CALL_TIMEOUT, DockerDriver, PULL_TIMEOUT, failed, is_not_found, reason, within};
use crate::driver::DriverError;

impl DockerDriver {
    /// Makes sure `image` is on this host, pulling it if not: ahead of a start this node
    /// may soon have to make (a member under suspicion holds the replica now).
    pub(crate) async fn warm(
        &self,
        image: &str,
        auth: Option<&crate::registry::RegistryAuth>,
    ) -> Result<(), DriverError> {
        self.ensure_image(image, auth).await
    }

    /// Makes sure `image` is in the local store: inspects it, else pulls it, with `auth`
    /// when given.
    pub(super) async fn ensure_image(
        &self,
        image: &str,
        auth: Option<&crate::registry::RegistryAuth>,
    ) -> Result<(), DriverError> {
        match within(CALL_TIMEOUT, self.docker.inspect_image(image)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(failed(&format!("inspect image {image}"), &e)),
        }
        let credentials = auth
            .map(crate::registry::RegistryAuth::docker_credentials)
            .or_else(registry_credentials);
        let user = credentials.as_ref().and_then(|c| c.username.clone());
        tracing::info!(image, user, "image not found locally; pulling");
        let options = CreateImageOptionsBuilder::default()
            .from_image(&image_reference(image))
            .build();
        let pull = self
            .docker
            .create_image(Some(options), None, credentials)
            .try_for_each(|_progress| async { Ok(()) });
        within(PULL_TIMEOUT, pull)
            .await
            .map_err(|e| DriverError::Image {
                image: image.to_owned(),
                detail: format!(
                    "not found locally and cannot be pulled: {}; build or load it on this \
                     host (docker build / docker load), or for a private registry \
                     `knit login {}`",
                    reason(&e),
                    crate::registry::registry_of(image)
                ),
            })
    }
}

/// Credentials for pulls, from `KNIT_REGISTRY_USER` and `KNIT_REGISTRY_PASSWORD`: the
/// fallback for an image whose registry `knit login` has none for.
fn registry_credentials() -> Option<DockerCredentials> {
    let username = std::env::var("KNIT_REGISTRY_USER").ok()?;
    Some(DockerCredentials {
        username: Some(username),
        password: std::env::var("KNIT_REGISTRY_PASSWORD").ok(),
        ..Default::default()
    })
}

/// `image` with `:latest` when it names neither a tag nor a digest: a pull without a tag
/// would fetch every tag of the repository.
pub(super) fn image_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}
