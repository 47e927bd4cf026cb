//! `/ui`: the dashboard, one self-contained page (inline style and script, nothing fetched
//! from elsewhere) that shows the hosts as columns with their replicas as cards, and
//! follows `/v1/events` to stay current. It is served behind the same access rules as the
//! rest of the API (the socket's permissions or mutual TLS, and the `Host` check), and
//! reads only what `/v1/events` serves.

use axum::http::header;
use axum::response::IntoResponse;

/// The page, built into the binary.
const PAGE: &str = include_str!("dashboard.html");

/// What the page may do: run its own inline script and style, and connect back to this
/// API; nothing else (no other origin, no frames around it).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard: one HTML page that follows `/v1/events`.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "events",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        for outside in [
            "http://",
            "https://",
            "//cdn",
            "@import",
            "<script src",
            "<link rel=\"stylesheet\"",
        ] {
            assert!(!PAGE.contains(outside), "the dashboard refers to {outside}");
        }
        assert!(PAGE.contains("new EventSource(\"/v1/events\")"));
    }
}
