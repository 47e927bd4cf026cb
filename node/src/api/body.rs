//! JSON request bodies, read strictly: a body that is not JSON, names a field its schema
//! does not (a misspelled `"replica"`), or holds a value of the wrong type is refused with
//! 400 and a message that says which field, in the API's usual `{"error": ...}` form.
//!
//! Only the API is strict. The types themselves decode leniently, because a spec is also
//! what peers of different versions replicate: an older peer must read a newer spec.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::Limits;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::shape::Shapes;
use crate::cluster::NodeSpec;
use crate::wire::{ClientCertRequest, UpdateRequest};

/// Unknown fields named in one answer; past it the message says how many more.
const UNKNOWN_SHOWN_MAX: usize = 5;

/// A type the API takes as a request body.
pub(crate) trait RequestBody: DeserializeOwned + utoipa::ToSchema {
    /// What the body is, for messages ("the service spec").
    const WHAT: &'static str;
}

impl RequestBody for ServiceSpec {
    const WHAT: &'static str = "the service spec";
}

impl RequestBody for UpdateRequest {
    const WHAT: &'static str = "the update request";
}

impl RequestBody for NodeSpec {
    const WHAT: &'static str = "the node spec";
}

impl RequestBody for Limits {
    const WHAT: &'static str = "the cluster limits";
}

impl RequestBody for ClientCertRequest {
    const WHAT: &'static str = "the client certificate request";
}

impl RequestBody for crate::wire::SecretCreate {
    const WHAT: &'static str = "the secret";
}

impl RequestBody for crate::wire::RegistryLogin {
    const WHAT: &'static str = "the login";
}

impl RequestBody for crate::wire::ConfigCreate {
    const WHAT: &'static str = "the config";
}

/// A request body of type `T`, read strictly (see the module doc).
#[derive(Debug)]
pub(crate) struct Strict<T>(pub(crate) T);

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for Strict<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{} must be sent as JSON, with the header `Content-Type: application/json`",
                    T::WHAT
                ),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("{} is larger than a request body may be", T::WHAT),
                )
            } else {
                ApiError::new(
                    status,
                    format!("cannot read {}: {}", T::WHAT, e.body_text()),
                )
            }
        })?;
        parse(&bytes).map(Strict)
    }
}

/// `application/json`, or any `application/...+json`, parameters aside.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads `bytes` as a `T`: JSON, naming only the fields `T`'s schema in the API's document
/// names, each of the right type.
pub(crate) fn parse<T: RequestBody>(bytes: &[u8]) -> Result<T, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("{} is not valid JSON: {e}", T::WHAT)))?;
    // serde would read an array as the fields in order: a body is an object.
    if !value.is_object() {
        return Err(bad(format!(
            "{} must be a JSON object ({{\"field\": value, ...}})",
            T::WHAT
        )));
    }
    // The document always has components (a test holds every body type to one).
    let unknown = super::openapi::components()
        .map(|c| Shapes::new(c).unknown_fields(&T::name(), &value))
        .unwrap_or_default();
    if !unknown.is_empty() {
        let mut lines: Vec<String> = unknown
            .iter()
            .take(UNKNOWN_SHOWN_MAX)
            .map(|u| u.message(T::WHAT))
            .collect();
        if unknown.len() > UNKNOWN_SHOWN_MAX {
            lines.push(format!(
                "and {} more unknown fields",
                unknown.len() - UNKNOWN_SHOWN_MAX
            ));
        }
        return Err(bad(lines.join("; ")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            bad(format!("{} is not valid: {}", T::WHAT, e.inner()))
        } else {
            bad(format!("{} is not valid at {path}: {}", T::WHAT, e.inner()))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use knit_scheduler::spec::{Autoscale, HealthCheck, Mode, PortSpec, Probe, Protocol};
    use knit_scheduler::{Availability, Resources};
    use serde::Serialize;
    use utoipa::ToSchema;

    use super::*;
    use crate::wire::RegistryLogin;

    /// A spec with every optional field set, so that its JSON names every field.
    fn full_spec() -> ServiceSpec {
        let mut spec = ServiceSpec::docker("web", "busybox");
        spec.command = vec!["httpd".into()];
        spec.args = vec!["-f".into()];
        spec.mode = Mode::Replicated { replicas: 3 };
        spec.ports = vec![PortSpec {
            published: 8080,
            target: 80,
            protocol: Protocol::Tcp,
            proxy_protocol: true,
        }];
        spec.env = BTreeMap::from([("A".into(), "1".into())]);
        spec.labels = BTreeMap::from([("team".into(), "web".into())]);
        spec.reservations = Resources {
            cpu_millis: 100,
            memory_bytes: 1 << 20,
        };
        spec.constraints = vec!["node.labels.zone==a".parse().unwrap()];
        spec.restart.max_attempts = Some(3);
        spec.stop_signal = Some("SIGINT".into());
        let mut health = HealthCheck::new(Probe::Http {
            path: "/healthz".into(),
            port: Some(80),
        });
        health.response_time_max_ms = Some(500);
        spec.health = Some(health);
        spec.autoscale = Some(Autoscale {
            min: 1,
            max: 5,
            cpu_target_percent: 50,
        });
        spec.version = 2;
        let mut previous = ServiceSpec::docker("web", "busybox:old");
        previous.health = Some(HealthCheck::new(Probe::Command(vec!["true".into()])));
        spec.previous = Some(Box::new(previous));
        spec
    }

    fn update_request() -> UpdateRequest {
        UpdateRequest {
            spec: full_spec(),
            from_version: 2,
            redeploy: true,
        }
    }

    fn node_spec() -> NodeSpec {
        NodeSpec {
            availability: Availability::Drain,
            labels: Some(BTreeMap::from([("zone".into(), "a".into())])),
            auto_drained: false,
        }
    }

    fn cert_request() -> ClientCertRequest {
        ClientCertRequest {
            name: "alice".into(),
            public_key: "04ab".into(),
        }
    }

    fn json<T: Serialize>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).unwrap()
    }

    /// The message of a refused `body`, read as `T`.
    fn refusal<T: RequestBody + std::fmt::Debug>(body: &serde_json::Value) -> String {
        let error = parse::<T>(&serde_json::to_vec(body).unwrap()).unwrap_err();
        assert_eq!(error.0, StatusCode::BAD_REQUEST, "{}", error.1);
        error.1
    }

    /// Every body the client sends reads back as it was: the schemas name every field
    /// serde writes.
    #[test]
    fn what_the_client_sends_is_taken() {
        let spec = full_spec();
        let read: ServiceSpec = parse(&serde_json::to_vec(&spec).unwrap()).unwrap();
        assert_eq!(read, spec);
        let read: UpdateRequest = parse(&serde_json::to_vec(&update_request()).unwrap()).unwrap();
        assert_eq!(read.spec, spec);
        let read: NodeSpec = parse(&serde_json::to_vec(&node_spec()).unwrap()).unwrap();
        assert_eq!(read.availability, Availability::Drain);
        let read: Limits = parse(&serde_json::to_vec(&Limits::default()).unwrap()).unwrap();
        assert_eq!(read, Limits::default());
        let read: ClientCertRequest = parse(&serde_json::to_vec(&cert_request()).unwrap()).unwrap();
        assert_eq!(read.name, "alice");
        // Fields left out take their defaults, as before.
        let read: ServiceSpec = parse(br#"{"name": "web", "image": "busybox"}"#).unwrap();
        assert_eq!(read, ServiceSpec::docker("web", "busybox"));
        let read: ServiceSpec = parse(br#"{"name": "w", "mode": "global"}"#).unwrap();
        assert_eq!(read.mode, Mode::Global);
    }

    /// The schemas name no field that serde does not write either: what the document says
    /// a body holds is what the type holds.
    #[test]
    fn the_schemas_name_the_fields_of_the_types() {
        let components = super::super::openapi::components().unwrap();
        let bodies = [
            (ServiceSpec::name(), json(&full_spec())),
            (UpdateRequest::name(), json(&update_request())),
            (NodeSpec::name(), json(&node_spec())),
            (Limits::name(), json(&Limits::default())),
            (ClientCertRequest::name(), json(&cert_request())),
            (RegistryLogin::name(), json(&registry_login())),
        ];
        for (name, value) in bodies {
            let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(schema))) =
                components.schemas.get(name.as_ref())
            else {
                panic!("{name} is not an object schema in the document");
            };
            let documented: BTreeSet<&str> = schema.properties.keys().map(String::as_str).collect();
            let written: BTreeSet<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(documented, written, "{name}");
        }
    }

    fn registry_login() -> RegistryLogin {
        RegistryLogin {
            server: "reg.io:5000".into(),
            username: "alice".into(),
            password: "pw".into(),
        }
    }

    #[test]
    fn a_login_is_read_strictly() {
        let read: RegistryLogin = parse(&serde_json::to_vec(&registry_login()).unwrap()).unwrap();
        assert_eq!(
            (read.username.as_str(), read.password.as_str()),
            ("alice", "pw")
        );
        let mut body = json(&registry_login());
        body["passwd"] = "pw".into();
        let message = refusal::<RegistryLogin>(&body);
        assert!(
            message.starts_with(r#"unknown field "passwd" in the login"#),
            "{message}"
        );
        assert!(
            !format!("{read:?}").contains("\"pw\""),
            "a login's Debug hides the password"
        );
    }

    #[test]
    fn an_unknown_field_is_named_with_what_is_known() {
        let mut body = json(&ServiceSpec::docker("web", "busybox"));
        body["replica"] = 3.into();
        let message = refusal::<ServiceSpec>(&body);
        assert!(
            message.starts_with(r#"unknown field "replica" in the service spec (did you mean "mode": {"replicated": {"replicas": ...}}?); expected one of: name, driver, image, command, entrypoint, args, mode, ports,"#),
            "{message}"
        );
        assert!(message.ends_with("force_update, previous"), "{message}");
    }

    #[test]
    fn nested_objects_are_checked() {
        let base = json(&full_spec());
        let cases: [(&str, &str, &str); 9] = [
            (
                "/ports/0",
                "proxy",
                "at ports[0] (did you mean \"proxy_protocol\"?)",
            ),
            (
                "/health",
                "intreval_ms",
                "at health (did you mean \"interval_ms\"?)",
            ),
            (
                "/health/probe/http",
                "paht",
                "at health.probe.http (did you mean \"path\"?)",
            ),
            (
                "/update",
                "paralelism",
                "at update (did you mean \"parallelism\"?)",
            ),
            ("/rollback", "order_by", "at rollback"),
            (
                "/mode/replicated",
                "replica",
                "at mode.replicated (did you mean \"replicas\"?)",
            ),
            ("/reservations", "cpu", "at reservations"),
            ("/autoscale", "mn", "at autoscale"),
            (
                "/previous/restart",
                "conditon",
                "at previous.restart (did you mean \"condition\"?)",
            ),
        ];
        for (pointer, field, place) in cases {
            let mut body = base.clone();
            body.pointer_mut(pointer).unwrap()[field] = 1.into();
            let message = refusal::<ServiceSpec>(&body);
            let expected = format!("unknown field {field:?} in the service spec {place}");
            assert!(message.starts_with(&expected), "{message}");
        }
        // An enum's variants are its fields.
        let mut body = base.clone();
        body["mode"] = serde_json::json!({"replicatd": {"replicas": 2}});
        let message = refusal::<ServiceSpec>(&body);
        assert!(
            message.starts_with(r#"unknown field "replicatd" in the service spec at mode (did you mean "replicated"?); expected one of: replicated"#),
            "{message}"
        );
        // And the spec inside an update.
        let mut body = json(&update_request());
        body["spec"]["ports"][0]["publshed"] = 80.into();
        body["redploy"] = true.into();
        let message = refusal::<UpdateRequest>(&body);
        assert!(message.contains(r#"unknown field "publshed" in the update request at spec.ports[0] (did you mean "published"?)"#), "{message}");
        assert!(message.contains(r#"unknown field "redploy" in the update request (did you mean "redeploy"?); expected one of: spec, from_version, redeploy"#), "{message}");
        let mut body = json(&node_spec());
        body["lables"] = serde_json::json!({});
        assert!(
            refusal::<NodeSpec>(&body).starts_with(r#"unknown field "lables" in the node spec"#)
        );
        let body = serde_json::json!({"replicas_max": 10, "slot_max": 5});
        assert!(refusal::<Limits>(&body).starts_with(
            r#"unknown field "slot_max" in the cluster limits (did you mean "slots_max"?)"#
        ));
    }

    #[test]
    fn maps_take_any_key() {
        let mut body = json(&full_spec());
        body["env"]["ANYTHING_AT_ALL"] = "x".into();
        body["labels"]["com.example/anything"] = "y".into();
        let read: ServiceSpec = parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(read.env["ANYTHING_AT_ALL"], "x");
    }

    #[test]
    fn many_unknown_fields_are_counted() {
        let mut body = json(&ServiceSpec::docker("web", "busybox"));
        for i in 0..8 {
            body[format!("extra{i}")] = i.into();
        }
        let message = refusal::<ServiceSpec>(&body);
        assert_eq!(
            message.matches("unknown field \"extra").count(),
            UNKNOWN_SHOWN_MAX
        );
        assert!(message.ends_with("and 3 more unknown fields"), "{message}");
    }

    #[test]
    fn bad_json_and_wrong_types_say_where() {
        let error = parse::<ServiceSpec>(br#"{"name": "x","#).unwrap_err();
        assert_eq!(error.0, StatusCode::BAD_REQUEST);
        assert!(
            error
                .1
                .starts_with("the service spec is not valid JSON: EOF while parsing"),
            "{}",
            error.1
        );
        let body = serde_json::json!({"name": "x", "mode": {"replicated": {"replicas": "3"}}});
        assert_eq!(
            refusal::<ServiceSpec>(&body),
            r#"the service spec is not valid at mode.replicated.replicas: invalid type: string "3", expected u32"#
        );
        let body = serde_json::json!({"name": "x", "health": {"interval_ms": 1000}});
        assert_eq!(
            refusal::<ServiceSpec>(&body),
            "the service spec is not valid at health: missing field `probe`"
        );
        let body = serde_json::json!(["web"]);
        assert_eq!(
            refusal::<ServiceSpec>(&body),
            r#"the service spec must be a JSON object ({"field": value, ...})"#
        );
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!json_content_type(&headers));
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(json_content_type(&headers), json, "{value}");
        }
    }
}
