//! HTTP triggers as pure rules: route patterns and the order they match in, Lambda's HTTP API payload
//! format 2.0 event built from a request, a handler's result mapped back to an HTTP response (as Lambda
//! function URLs and API Gateway HTTP APIs do), and CORS.

use std::cmp::Ordering;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::percent;

/// Largest request body an HTTP trigger passes to a function: the synchronous payload limit.
pub use crate::limits::MAX_PAYLOAD_BYTES as MAX_BODY_BYTES;

/// Methods a route may name (besides `ANY`).
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

const MAX_PATH_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: exactly one path segment.
    Param(String),
    /// `{name+}`: one or more trailing segments.
    Greedy(String),
}

impl Segment {
    /// Lower is more specific.
    fn kind(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Greedy(_) => 2,
        }
    }
}

/// A route: `METHOD /path/{param}/{proxy+}`, where METHOD may be `ANY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// `None` for `ANY`.
    method: Option<String>,
    segments: Vec<Segment>,
}

impl RoutePattern {
    /// Parses and validates a route key such as `GET /pets/{id}` or `ANY /files/{path+}`.
    pub fn parse(route_key: &str) -> Result<RoutePattern, String> {
        let (method, path) = route_key
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("route {route_key:?} must be `METHOD /path`, e.g. `GET /pets/{{id}}`"))?;
        let method = method.to_ascii_uppercase();
        let method = match method.as_str() {
            "ANY" => None,
            m if METHODS.contains(&m) => Some(method),
            _ => return Err(format!("method {method:?} is not one of ANY, {}", METHODS.join(", "))),
        };
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(format!("path {path:?} must start with '/'"));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(format!("path is {} characters long; at most {MAX_PATH_LEN} are allowed", path.len()));
        }
        if path.len() > 1 && path.ends_with('/') {
            return Err(format!("path {path:?} must not end with '/'"));
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let parts: Vec<&str> = if path == "/" { Vec::new() } else { path[1..].split('/').collect() };
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(format!("path {path:?} has an empty segment ('//')"));
            }
            let segment = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(format!(
                        "path parameter {part:?} must be {{name}} or {{name+}} with a name of letters, digits, '_' or '-'"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("path parameter {name:?} appears twice in {path:?}"));
                }
                names.push(name);
                if greedy {
                    if i + 1 != parts.len() {
                        return Err(format!("greedy parameter {part:?} must be the last segment of {path:?}"));
                    }
                    Segment::Greedy(name.to_string())
                } else {
                    Segment::Param(name.to_string())
                }
            } else {
                if part.chars().any(|c| matches!(c, '{' | '}' | '?' | '#') || c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "path segment {part:?} may not contain braces (except a whole {{param}}), '?', '#' or spaces"
                    ));
                }
                Segment::Literal(part.to_string())
            };
            segments.push(segment);
        }
        Ok(RoutePattern { method, segments })
    }

    /// The route key in its normal form: `GET /pets/{id}`.
    pub fn route_key(&self) -> String {
        self.render(false)
    }

    /// Two routes with the same shape match exactly the same requests (parameter names aside): they
    /// conflict.
    pub fn shape(&self) -> String {
        self.render(true)
    }

    /// `METHOD /path`, with parameter names, or without them for the shape.
    fn render(&self, shape: bool) -> String {
        let path: String = self
            .segments
            .iter()
            .map(|s| match (s, shape) {
                (Segment::Literal(l), _) => format!("/{l}"),
                (Segment::Param(_), true) => "/{}".to_string(),
                (Segment::Greedy(_), true) => "/{+}".to_string(),
                (Segment::Param(p), false) => format!("/{{{p}}}"),
                (Segment::Greedy(p), false) => format!("/{{{p}+}}"),
            })
            .collect();
        format!("{} {}", self.method.as_deref().unwrap_or("ANY"), if path.is_empty() { "/" } else { &path })
    }

    /// The path parameters when this route matches the request, `None` otherwise. `path` is the raw
    /// (still percent-encoded) path; parameter values are decoded.
    pub fn matches(&self, method: &str, path: &str) -> Option<PathParams> {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return None;
        }
        let parts: Vec<&str> =
            if path == "/" || path.is_empty() { Vec::new() } else { path.trim_start_matches('/').split('/').collect() };
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), percent::decode_str(part)));
                }
                Segment::Greedy(name) => {
                    let rest = &parts[i.min(parts.len())..];
                    if rest.is_empty() || rest.iter().all(|p| p.is_empty()) {
                        return None;
                    }
                    params.push((name.clone(), percent::decode_str(&rest.join("/"))));
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// Most specific first: segment by segment a literal beats a parameter, which beats a greedy one;
    /// then a named method beats `ANY`.
    fn specificity(&self, other: &RoutePattern) -> Ordering {
        let kinds = |p: &RoutePattern| p.segments.iter().map(Segment::kind).collect::<Vec<_>>();
        kinds(self).cmp(&kinds(other)).then_with(|| other.method.is_none().cmp(&self.method.is_none()).reverse())
    }
}

/// Path parameters of a matched route, in the order of the pattern, values decoded.
pub type PathParams = Vec<(String, String)>;

/// An account's routes, kept in matching order.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route; refused (with the route it conflicts with) when one of the same shape exists.
    pub fn insert(&mut self, pattern: RoutePattern, value: T) -> Result<(), String> {
        if let Some((existing, _)) = self.routes.iter().find(|(p, _)| p.shape() == pattern.shape()) {
            return Err(existing.route_key());
        }
        let at = self.routes.partition_point(|(p, _)| p.specificity(&pattern) != Ordering::Greater);
        self.routes.insert(at, (pattern, value));
        Ok(())
    }

    /// The most specific route matching the request, with its path parameters.
    pub fn find(&self, method: &str, path: &str) -> Option<(&RoutePattern, &T, PathParams)> {
        self.routes.iter().find_map(|(p, v)| p.matches(method, path).map(|params| (p, v, params)))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// What the event is built from: one HTTP request and where it arrived.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// Path as received, percent-encoded, relative to the trigger (`/` at least).
    pub raw_path: &'a str,
    /// Query string without `?`.
    pub raw_query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// `$default` for a function URL, the matched route key for a route.
    pub route_key: &'a str,
    pub path_parameters: &'a [(String, String)],
    pub account_id: &'a str,
    /// The URL id, or the account's gateway id.
    pub api_id: &'a str,
    pub domain_name: &'a str,
    pub request_id: &'a str,
    pub source_ip: &'a str,
    pub protocol: &'a str,
    pub time_ms: i64,
}

/// Content types whose bodies reach the handler as text; anything else is base64-encoded.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.ends_with("/json")
        || ct.ends_with("+json")
        || ct.ends_with("/xml")
        || ct.ends_with("+xml")
        || ct == "application/javascript"
        || ct == "application/x-www-form-urlencoded"
        || ct == "application/graphql"
}

/// The payload format 2.0 event for a request.
pub fn event(req: &HttpRequest<'_>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_string));
            continue;
        }
        join_value(&mut headers, name, value);
    }
    let user_agent = headers.get("user-agent").cloned().unwrap_or_else(|| Value::String(String::new()));
    let content_type = headers.get("content-type").and_then(Value::as_str);
    let mut event = json!({
        "version": "2.0",
        "routeKey": req.route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
        "headers": headers.clone(),
        "requestContext": {
            "accountId": req.account_id,
            "apiId": req.api_id,
            "domainName": req.domain_name,
            "domainPrefix": req.domain_name.split('.').next().unwrap_or_default(),
            "http": {
                "method": req.method,
                "path": percent::decode_str(req.raw_path),
                "protocol": req.protocol,
                "sourceIp": req.source_ip,
                "userAgent": user_agent,
            },
            "requestId": req.request_id,
            "routeKey": req.route_key,
            "stage": "$default",
            "time": crate::time::format_request_time(req.time_ms),
            "timeEpoch": req.time_ms,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !req.raw_query.is_empty() {
        let mut query = Map::new();
        for pair in req.raw_query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (form_decode(k), form_decode(v));
            join_value(&mut query, k, &v);
        }
        event["queryStringParameters"] = Value::Object(query);
    }
    if !req.path_parameters.is_empty() {
        let params: Map<String, Value> =
            req.path_parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        event["pathParameters"] = Value::Object(params);
    }
    if !req.body.is_empty() {
        match std::str::from_utf8(req.body) {
            Ok(text) if is_text(content_type) => event["body"] = Value::String(text.to_string()),
            _ => {
                event["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(req.body));
                event["isBase64Encoded"] = Value::Bool(true);
            }
        }
    }
    event
}

/// Adds `value` under `key`, joining it to an earlier value with ',' (how the 2.0 event folds repeated
/// headers and query parameters).
fn join_value(map: &mut Map<String, Value>, key: String, value: &str) {
    match map.get_mut(&key) {
        Some(Value::String(existing)) => {
            existing.push(',');
            existing.push_str(value);
        }
        _ => {
            map.insert(key, Value::String(value.to_string()));
        }
    }
}

fn form_decode(s: &str) -> String {
    percent::decode_str(&s.replace('+', " "))
}

/// An HTTP response built from a handler's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// Names lowercased; `set-cookie` once per cookie.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Maps a handler's result (its JSON output) to the response, as Lambda does for payload format 2.0:
/// an object with `statusCode` describes the response (`headers`, `cookies`, `body`, `isBase64Encoded`);
/// any other JSON value is the body of a 200 `application/json` response. `Err` says why the result
/// cannot be a response (the trigger answers 502).
pub fn reply(result: &[u8]) -> Result<HttpReply, String> {
    let value: Value = serde_json::from_slice(result).map_err(|e| format!("the function's result is not JSON: {e}"))?;
    let json_reply = |body: Vec<u8>| HttpReply {
        status: 200,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body,
    };
    let Some(obj) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        return Ok(json_reply(result.to_vec()));
    };
    let status = obj["statusCode"]
        .as_u64()
        .or_else(|| obj["statusCode"].as_str().and_then(|s| s.parse().ok()))
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("statusCode {} is not an HTTP status (100–599)", obj["statusCode"]))?;
    let mut headers = Vec::new();
    if let Some(h) = obj.get("headers").filter(|h| !h.is_null()) {
        let h = h.as_object().ok_or("headers must be an object of strings")?;
        for (name, value) in h {
            let value = scalar(value).ok_or_else(|| format!("header {name:?} must be a string"))?;
            headers.push((name.to_ascii_lowercase(), value));
        }
    }
    if let Some(c) = obj.get("cookies").filter(|c| !c.is_null()) {
        let c = c.as_array().ok_or("cookies must be an array of strings")?;
        for cookie in c {
            let cookie = cookie.as_str().ok_or("cookies must be an array of strings")?;
            headers.push(("set-cookie".to_string(), cookie.to_string()));
        }
    }
    if !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    let base64 = obj.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false);
    let body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("isBase64Encoded is true but the body is not base64: {e}"))?,
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(HttpReply { status, headers, body })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Who may call an HTTP trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TriggerAuth {
    /// Anyone who can reach the server.
    None,
    /// Callers presenting the owning account's API key (`Authorization: Bearer …`).
    #[default]
    Key,
}

impl TriggerAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerAuth::None => "none",
            TriggerAuth::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<TriggerAuth> {
        [TriggerAuth::None, TriggerAuth::Key].into_iter().find(|a| a.as_str() == s)
    }
}

/// Cross-origin settings of a function URL. Preflight requests are answered by stoke without invoking
/// the function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Origins allowed, each `*` or `scheme://host[:port]` (`https://example.com`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(?:\*|https?://[^/]+/*)$"))]
    pub allow_origins: Vec<String>,
    /// Methods allowed (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, in any case), or `*`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^(?:\*|[Gg][Ee][Tt]|[Pp][Oo][Ss][Tt]|[Pp][Uu][Tt]|[Pp][Aa][Tt][Cc][Hh]|[Dd][Ee][Ll][Ee][Tt][Ee]|[Hh][Ee][Aa][Dd]|[Oo][Pp][Tt][Ii][Oo][Nn][Ss])$"
        )
    )]
    pub allow_methods: Vec<String>,
    /// Request headers allowed (letters, digits, `-`, `_`), or `*`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_*-]+$"))]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read (letters, digits, `-`, `_`), or `*`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_*-]+$"))]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds (at most 86400).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 86400))]
    pub max_age_s: Option<u32>,
    /// Let the browser send credentials; not with the origin `*`.
    #[serde(default)]
    pub allow_credentials: bool,
}

impl Cors {
    pub fn validate(&self) -> Result<(), String> {
        for o in &self.allow_origins {
            let scheme_ok = o.starts_with("http://") || o.starts_with("https://");
            if o != "*" && (!scheme_ok || o.trim_end_matches('/').matches('/').count() != 2) {
                return Err(format!("origin {o:?} must be `*` or scheme://host[:port], e.g. https://example.com"));
            }
        }
        for m in &self.allow_methods {
            if m != "*" && !METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                return Err(format!("method {m:?} is not one of *, {}", METHODS.join(", ")));
            }
        }
        for h in self.allow_headers.iter().chain(&self.expose_headers) {
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || "-_*".contains(c)) {
                return Err(format!("header name {h:?} is not a valid HTTP header name"));
            }
        }
        if self.max_age_s.is_some_and(|a| a > 86_400) {
            return Err("max_age_s is at most 86400 (one day)".to_string());
        }
        if self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            return Err(
                "allow_credentials cannot be combined with the origin `*` (browsers refuse it); list the origins"
                    .to_string(),
            );
        }
        Ok(())
    }

    fn allowed_origin(&self, origin: &str) -> Option<String> {
        if self.allow_origins.iter().any(|o| o == "*") {
            return Some("*".to_string());
        }
        self.allow_origins
            .iter()
            .find(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
            .map(|_| origin.to_string())
    }

    /// Headers for a response to a request from `origin` (nothing when the origin is not allowed).
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(String, String)> {
        let Some(allowed) = origin.and_then(|o| self.allowed_origin(o)) else { return Vec::new() };
        let mut h = vec![("access-control-allow-origin".to_string(), allowed.clone())];
        if allowed != "*" {
            h.push(("vary".to_string(), "Origin".to_string()));
        }
        if self.allow_credentials {
            h.push(("access-control-allow-credentials".to_string(), "true".to_string()));
        }
        if !self.expose_headers.is_empty() {
            h.push(("access-control-expose-headers".to_string(), self.expose_headers.join(",")));
        }
        h
    }

    /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`) from `origin`:
    /// `None` when the origin or the method is not allowed.
    pub fn preflight(&self, origin: &str, method: &str) -> Option<Vec<(String, String)>> {
        let allowed = self.allowed_origin(origin)?;
        let method_ok = self.allow_methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(method));
        if !method_ok {
            return None;
        }
        let mut h = vec![("access-control-allow-origin".to_string(), allowed)];
        h.push(("access-control-allow-methods".to_string(), self.allow_methods.join(",")));
        if !self.allow_headers.is_empty() {
            h.push(("access-control-allow-headers".to_string(), self.allow_headers.join(",")));
        }
        if let Some(age) = self.max_age_s {
            h.push(("access-control-max-age".to_string(), age.to_string()));
        }
        if self.allow_credentials {
            h.push(("access-control-allow-credentials".to_string(), "true".to_string()));
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str) -> RoutePattern {
        RoutePattern::parse(key).unwrap()
    }

    #[test]
    fn parses_route_keys_and_refuses_malformed_ones_with_the_reason() {
        assert_eq!(route("get /pets/{id}").route_key(), "GET /pets/{id}");
        assert_eq!(route("ANY /").route_key(), "ANY /");
        assert_eq!(route("POST /files/{path+}").route_key(), "POST /files/{path+}");
        for (bad, needle) in [
            ("/pets", "METHOD /path"),
            ("FETCH /pets", "not one of"),
            ("GET pets", "must start with '/'"),
            ("GET /pets/", "must not end with '/'"),
            ("GET /a//b", "empty segment"),
            ("GET /{}", "must be {name}"),
            ("GET /{a b}", "must be {name}"),
            ("GET /{id}/{id}", "appears twice"),
            ("GET /{rest+}/more", "must be the last"),
            ("GET /a{b}", "braces"),
            ("GET /a?b", "'?'"),
        ] {
            let err = RoutePattern::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn matches_literals_params_and_greedy_tails() {
        let p = route("GET /pets/{id}/toys/{toy}");
        assert_eq!(
            p.matches("GET", "/pets/7/toys/ball%20red"),
            Some(vec![("id".into(), "7".into()), ("toy".into(), "ball red".into())])
        );
        assert_eq!(p.matches("POST", "/pets/7/toys/ball"), None);
        assert_eq!(p.matches("GET", "/pets/7/toys"), None);
        assert_eq!(p.matches("GET", "/pets/7/toys/ball/x"), None);
        let g = route("ANY /files/{path+}");
        assert_eq!(g.matches("DELETE", "/files/a/b/c.txt"), Some(vec![("path".into(), "a/b/c.txt".into())]));
        assert_eq!(g.matches("GET", "/files"), None, "a greedy parameter takes at least one segment");
        assert_eq!(route("GET /").matches("GET", "/"), Some(vec![]));
        assert_eq!(route("GET /").matches("GET", "/x"), None);
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_order_of_creation() {
        let keys = ["ANY /{proxy+}", "GET /pets/{id}", "ANY /pets/{id}", "GET /pets/mine", "GET /pets/{id}/{rest+}"];
        // Every rotation of the creation order gives the same answers.
        for start in 0..keys.len() {
            let mut table = RouteTable::default();
            for k in keys.iter().cycle().skip(start).take(keys.len()) {
                table.insert(route(k), k.to_string()).unwrap();
            }
            let found = |m: &str, p: &str| table.find(m, p).map(|(_, v, _)| v.clone());
            assert_eq!(found("GET", "/pets/mine").as_deref(), Some("GET /pets/mine"));
            assert_eq!(found("GET", "/pets/7").as_deref(), Some("GET /pets/{id}"));
            assert_eq!(found("PUT", "/pets/7").as_deref(), Some("ANY /pets/{id}"));
            assert_eq!(found("GET", "/pets/7/a/b").as_deref(), Some("GET /pets/{id}/{rest+}"));
            assert_eq!(found("GET", "/other").as_deref(), Some("ANY /{proxy+}"));
            assert_eq!(found("GET", "/"), None);
        }
    }

    #[test]
    fn routes_of_the_same_shape_conflict() {
        let mut table = RouteTable::default();
        table.insert(route("GET /pets/{id}"), 1).unwrap();
        assert_eq!(table.insert(route("GET /pets/{name}"), 2), Err("GET /pets/{id}".to_string()));
        assert!(table.insert(route("POST /pets/{name}"), 3).is_ok());
        assert!(table.insert(route("ANY /pets/{name}"), 4).is_ok());
        assert_eq!(table.insert(route("any /pets/{x}"), 5), Err("ANY /pets/{name}".to_string()));
        assert_eq!(table.len(), 3);
    }

    fn request<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> HttpRequest<'a> {
        HttpRequest {
            method: "POST",
            raw_path: "/pets/7%20b",
            raw_query: "a=1&a=2&b=x+y%21&flag",
            headers,
            body,
            route_key: "POST /pets/{id}",
            path_parameters: &[],
            account_id: "123456789012",
            api_id: "gw",
            domain_name: "127.0.0.1:9000",
            request_id: "req-1",
            source_ip: "127.0.0.1",
            protocol: "HTTP/1.1",
            time_ms: 1_584_039_838_390,
        }
    }

    #[test]
    fn builds_the_payload_format_2_event() {
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Multi".to_string(), "a".to_string()),
            ("x-multi".to_string(), "b".to_string()),
            ("Cookie".to_string(), "s=1; theme=dark".to_string()),
            ("User-Agent".to_string(), "curl/8".to_string()),
        ];
        let params = vec![("id".to_string(), "7 b".to_string())];
        let mut req = request(&headers, br#"{"n":1}"#);
        req.path_parameters = &params;
        let e = event(&req);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "POST /pets/{id}");
        assert_eq!(e["rawPath"], "/pets/7%20b");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x+y%21&flag");
        assert_eq!(e["queryStringParameters"], json!({"a": "1,2", "b": "x y!", "flag": ""}));
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none(), "cookies move to their own field");
        assert_eq!(e["cookies"], json!(["s=1", "theme=dark"]));
        assert_eq!(e["pathParameters"], json!({"id": "7 b"}));
        assert_eq!(e["body"], r#"{"n":1}"#);
        assert_eq!(e["isBase64Encoded"], false);
        let ctx = &e["requestContext"];
        assert_eq!(
            ctx["http"],
            json!({"method": "POST", "path": "/pets/7 b", "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1", "userAgent": "curl/8"})
        );
        assert_eq!(ctx["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(ctx["timeEpoch"], 1_584_039_838_390i64);
        assert_eq!(ctx["requestId"], "req-1");
    }

    #[test]
    fn binary_bodies_are_base64_and_empty_ones_absent() {
        let headers = vec![("content-type".to_string(), "image/png".to_string())];
        let e = event(&request(&headers, &[0x89, b'P', b'N', b'G', 0, 0xff]));
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "iVBORwD/");
        let e = event(&request(&[], &[0xff, 0xfe]));
        assert_eq!(e["isBase64Encoded"], true, "bytes that are not UTF-8 are binary whatever the type");
        let mut bare = request(&[], b"");
        bare.raw_query = "";
        let e = event(&bare);
        assert!(e.get("body").is_none() && e.get("queryStringParameters").is_none() && e.get("cookies").is_none());
        assert!(e.get("pathParameters").is_none());
    }

    #[test]
    fn maps_results_to_responses_as_lambda_does() {
        // Any JSON without statusCode: 200 application/json, the result as the body.
        let r = reply(br#"{"hello":"world"}"#).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, br#"{"hello":"world"}"#.as_slice()));
        assert_eq!(r.headers, vec![("content-type".to_string(), "application/json".to_string())]);
        assert_eq!(reply(br#""text""#).unwrap().body, br#""text""#);
        // A response object.
        let r = reply(
            br#"{"statusCode": 201, "headers": {"X-Id": 7, "Content-Type": "text/plain"},
                 "cookies": ["a=1", "b=2; Path=/"], "body": "made"}"#,
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"made");
        assert!(r.headers.contains(&("x-id".to_string(), "7".to_string())));
        assert!(r.headers.contains(&("content-type".to_string(), "text/plain".to_string())));
        assert_eq!(r.headers.iter().filter(|(n, _)| n == "set-cookie").count(), 2);
        let r = reply(br#"{"statusCode": 200, "body": "iVBORwD/", "isBase64Encoded": true}"#).unwrap();
        assert_eq!(r.body, [0x89, b'P', b'N', b'G', 0, 0xff]);
        assert_eq!(reply(br#"{"statusCode": 204}"#).unwrap().body, b"");
        for (bad, needle) in [
            (r#"{"statusCode": 99}"#.as_bytes(), "not an HTTP status"),
            (br#"{"statusCode": "x"}"#, "not an HTTP status"),
            (br#"{"statusCode": 200, "headers": []}"#, "headers must be"),
            (br#"{"statusCode": 200, "headers": {"a": {}}}"#, "header \"a\""),
            (br#"{"statusCode": 200, "cookies": "a=1"}"#, "cookies must be"),
            (br#"{"statusCode": 200, "body": "!!", "isBase64Encoded": true}"#, "not base64"),
            (b"not json", "not JSON"),
        ] {
            let err = reply(bad).unwrap_err();
            assert!(err.contains(needle), "{}: {err}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn cors_answers_allowed_origins_and_methods_only() {
        let cors = Cors {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["x-id".into()],
            max_age_s: Some(600),
            allow_credentials: true,
        };
        assert!(cors.validate().is_ok());
        let pre = cors.preflight("https://app.example.com", "POST").unwrap();
        assert!(pre.contains(&("access-control-allow-origin".into(), "https://app.example.com".into())));
        assert!(pre.contains(&("access-control-max-age".into(), "600".into())));
        assert_eq!(cors.preflight("https://evil.example.com", "POST"), None);
        assert_eq!(cors.preflight("https://app.example.com", "DELETE"), None);
        let h = cors.response_headers(Some("https://app.example.com"));
        assert!(h.contains(&("access-control-expose-headers".into(), "x-id".into())));
        assert!(cors.response_headers(Some("https://evil.example.com")).is_empty());
        assert!(cors.response_headers(None).is_empty());
        let any = Cors { allow_origins: vec!["*".into()], allow_methods: vec!["*".into()], ..Default::default() };
        assert_eq!(any.preflight("http://x.test", "PATCH").unwrap()[0].1, "*");
        for (bad, needle) in [
            (Cors { allow_origins: vec!["example.com".into()], ..Default::default() }, "scheme://host"),
            (Cors { allow_methods: vec!["FETCH".into()], ..Default::default() }, "not one of"),
            (Cors { allow_headers: vec!["a b".into()], ..Default::default() }, "header name"),
            (Cors { max_age_s: Some(100_000), ..Default::default() }, "86400"),
            (Cors { allow_origins: vec!["*".into()], allow_credentials: true, ..Default::default() }, "credentials"),
        ] {
            assert!(bad.validate().unwrap_err().contains(needle), "{bad:?}");
        }
    }
}
