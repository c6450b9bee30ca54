//! The web console at `/console`: a page, a script and a style sheet, all in the binary. The page holds no
//! data and needs no key; the script signs in with an API key kept in the browser's session storage and
//! calls the same `/v1` API as the CLI, with the key as a bearer token (no cookies, so no cross-site request
//! can act for a user). Every value is rendered as text. The headers forbid everything the console does not
//! use: scripts and styles only from this origin, no inline code, no frames, no other hosts.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// What the console's documents may load and do: only this origin's script, style sheet and API.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /console`: the console's page.
pub async fn page() -> Response {
    document(INDEX, "text/html; charset=utf-8")
}

/// `GET /console/{asset}`: its script and style sheet.
pub async fn asset(Path(asset): Path<String>) -> Result<Response, ApiError> {
    match asset.as_str() {
        "app.js" => Ok(document(SCRIPT, "text/javascript; charset=utf-8")),
        "app.css" => Ok(document(STYLE, "text/css; charset=utf-8")),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the console has no file '{asset}'; open /console"),
        )),
    }
}

fn document(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The assets are part of the binary: a new server may bring new ones.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_document_carries_the_strict_policy_and_unknown_files_are_404() {
        for response in [page().await, asset(Path("app.js".into())).await.unwrap()] {
            let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
            assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let missing = asset(Path("../secret".into())).await.unwrap_err().into_response();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    /// The page loads nothing but its own script and style sheet, and no script or style is inline
    /// (the policy would block it).
    #[test]
    fn the_page_has_no_inline_code() {
        assert!(INDEX.contains(r#"<script src="/console/app.js" defer></script>"#));
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(!INDEX.contains("<style") && !INDEX.contains("style="));
        let handler = INDEX.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "no inline event handlers");
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML") && !SCRIPT.contains("eval("));
    }
}
