//! The admin API's OpenAPI document, made from the handlers' `#[utoipa::path]` attributes
//! and the wire types' `ToSchema` derives, and served at `GET /v1/openapi.json`. Its
//! schemas are also what request bodies are checked against ([`super::body`]), so what the
//! document says a body may hold is what the API takes.

use std::sync::OnceLock;

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::{Components, OpenApi as Document};

use super::{cluster, configs, dashboard, events, nodes, operators, registries, secrets, services};
use crate::wire::ErrorBody;

/// What the document says of the API as a whole.
const DESCRIPTION: &str = "The admin API of a knit peer: JSON over HTTP on the peer's \
root-only Unix socket, or over TCP with mutual TLS (client certificates from \
`knit operator add`). Every request's Host must be one of the API's own names. Writes \
answer once the change is applied and on this peer's disk. Request bodies that name a \
field their schema does not are refused with 400; errors are `{\"error\": \"...\"}`.";

/// The document's source: every path the router serves (see `every_route_is_documented`).
#[derive(OpenApi)]
#[openapi(
    info(title = "knit admin API", description = DESCRIPTION),
    paths(
        nodes::list,
        nodes::inspect,
        nodes::remove,
        nodes::update,
        services::list,
        services::create,
        services::inspect,
        services::update,
        services::remove,
        services::rollback,
        services::ps,
        logs,
        secrets::list,
        secrets::create,
        secrets::inspect,
        secrets::remove,
        configs::list,
        configs::create,
        configs::inspect,
        configs::remove,
        registries::list,
        registries::login,
        registries::logout,
        cluster::limits,
        cluster::set_limits,
        events::stream,
        dashboard::page,
        super::token,
        super::rotate_token,
        operators::client_cert,
        serve,
    ),
    tags(
        (name = "nodes", description = "The members, and operators' overrides of them"),
        (name = "services", description = "Service specs, their tasks and logs"),
        (name = "secrets", description = "Secrets, sealed in the cluster's state and given to replicas as files"),
        (name = "configs", description = "Configs: files given to replicas at a path, sealed in the cluster's state"),
        (name = "registries", description = "Registry credentials (`knit login`), sealed in the cluster's state, that every host pulls images with"),
        (name = "cluster", description = "Cluster-wide settings and the join token"),
        (name = "events", description = "The cluster's changes as they happen, and the dashboard"),
        (name = "operators", description = "Client certificates for the API over TCP"),
        (name = "api", description = "This document"),
    )
)]
struct ApiDoc;

/// The document, made once.
pub(super) fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The document's schemas.
pub(super) fn components() -> Option<&'static Components> {
    document().components.as_ref()
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "api",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
    )
)]
pub(super) async fn serve() -> Json<&'static Document> {
    Json(document())
}

/// The output of the service's replicas on every host that runs them, gathered over the
/// mesh, each line prefixed `service.N@node | `; a host that is down or does not answer
/// is a line starting `error: `. Streamed (chunked) as it comes, to the end of the logs or,
/// with `follow`, until the client goes.
///
/// Documented here; the handler is `logs::logs`.
#[utoipa::path(
    get,
    path = "/v1/services/{name}/logs",
    tag = "services",
    params(
        ("name" = String, Path, description = "The service's name"),
        ("tail" = Option<String>, Query, description = "Lines per replica: a number, or `all` (the default)"),
        ("since" = Option<String>, Query, description = "Only lines since then: a duration back from now (`10m`) or an RFC 3339 UTC time"),
        ("follow" = Option<bool>, Query, description = "Keep streaming new lines"),
        ("timestamps" = Option<bool>, Query, description = "Show each line's time"),
    ),
    responses(
        (status = 200, description = "Streamed plain text", content_type = "text/plain", body = String),
        (status = 400, description = "A bad `tail` or `since`", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn logs() {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::openapi::path::PathItem;

    use super::*;
    use crate::api::{Verb, routes};

    fn operation(item: &PathItem, verb: Verb) -> bool {
        match verb {
            Verb::Get => item.get.is_some(),
            Verb::Post => item.post.is_some(),
            Verb::Delete => item.delete.is_some(),
        }
    }

    #[test]
    fn every_route_is_documented() {
        let paths = &document().paths.paths;
        let routes = routes();
        assert!(routes.len() >= 20, "the admin API has its routes");
        for route in &routes {
            let item = paths
                .get(route.path)
                .unwrap_or_else(|| panic!("{} is not in the OpenAPI document", route.path));
            assert!(
                operation(item, route.verb),
                "{:?} {} is not in the OpenAPI document",
                route.verb,
                route.path
            );
        }
    }

    #[test]
    fn every_documented_route_is_served() {
        let served: BTreeSet<(String, &str)> = routes()
            .iter()
            .map(|r| (format!("{:?}", r.verb), r.path))
            .collect();
        for (path, item) in &document().paths.paths {
            for verb in [Verb::Get, Verb::Post, Verb::Delete] {
                if operation(item, verb) {
                    assert!(
                        served.contains(&(format!("{verb:?}"), path.as_str())),
                        "the document has {verb:?} {path}, which the router does not serve"
                    );
                }
            }
            let others = [
                &item.put,
                &item.patch,
                &item.head,
                &item.options,
                &item.trace,
            ];
            assert!(
                others.iter().all(|o| o.is_none()),
                "{path}: a method the router does not serve"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_with_the_service_routes() {
        let json = serde_json::to_value(document()).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."));
        let create = &json["paths"]["/v1/services"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ServiceSpec"
        );
        let spec = &json["components"]["schemas"]["ServiceSpec"]["properties"];
        assert!(spec["mode"].is_object() && spec["ports"].is_object());
        // Path parameters are named as the router names them.
        let inspect = &json["paths"]["/v1/services/{name}"]["get"]["parameters"][0];
        assert_eq!(inspect["name"], "name");
        assert_eq!(inspect["in"], "path");
    }
}
