//! The API client: finds the server and the credentials, sends requests, turns error bodies into messages.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::Method;
use serde::de::DeserializeOwned;
use stoke_server::http::error::ErrorBody;
use stoke_server::{ServerFile, CREDENTIALS_FILE, SERVER_FILE};

use crate::GlobalArgs;

/// The data directory used when none is given: `$XDG_DATA_HOME/stoke` or `~/.local/share/stoke`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("stoke");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/stoke"),
        None => PathBuf::from("stoke-data"),
    }
}

pub fn data_dir(global: &GlobalArgs) -> PathBuf {
    global.data_dir.clone().unwrap_or_else(default_data_dir)
}

/// A client bound to one server and one API key.
#[derive(Debug)]
pub struct Client {
    http: Http,
    endpoint: String,
    api_key: String,
}

impl Client {
    /// Resolves endpoint and key: flags and environment first, then the data directory's files.
    pub fn from_args(global: &GlobalArgs) -> Result<Self> {
        let dir = data_dir(global);
        let endpoint = match &global.endpoint {
            Some(e) => e.clone(),
            None => {
                let path = dir.join(SERVER_FILE);
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        serde_json::from_slice::<ServerFile>(&bytes)
                            .with_context(|| format!("{} is not a valid server file", path.display()))?
                            .endpoint
                    }
                    Err(_) => format!("http://{}", stoke_server::ServerConfig::DEFAULT_LISTEN),
                }
            }
        };
        let api_key = match &global.api_key {
            Some(k) => k.clone(),
            None => {
                let path = dir.join(CREDENTIALS_FILE);
                let bytes = std::fs::read(&path).map_err(|_| {
                    anyhow!(
                        "no API key: pass --api-key or set STOKE_API_KEY, or point --data-dir at the server's data \
                         directory (looked for {})",
                        path.display()
                    )
                })?;
                serde_json::from_slice::<stoke_server::Credentials>(&bytes)
                    .with_context(|| format!("{} is not a valid credentials file", path.display()))?
                    .api_key
            }
        };
        let mut http = Http::builder().timeout(None);
        if let Some(ca) = &global.ca_file {
            for cert in stoke_server::cluster::certificates(ca).map_err(|e| anyhow!("--ca-file: {e}"))? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Self { http, endpoint: endpoint.trim_end_matches('/').to_string(), api_key })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.endpoint)).bearer_auth(&self.api_key)
    }

    /// Sends a request and returns the successful response, or the server's error as a message.
    pub fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().map_err(|e| {
            let chain = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            if chain.contains("certificate") || chain.contains("UnknownIssuer") {
                anyhow!(
                    "the server at {} presented a certificate this client does not trust ({chain}): pass its CA \
                     with --ca-file (or STOKE_CA_FILE)",
                    self.endpoint
                )
            } else if e.is_connect() {
                anyhow!(
                    "cannot reach the stoke server at {}: is it running? (start one with `stoke server`)",
                    self.endpoint
                )
            } else {
                anyhow!("request to {} failed: {e}", self.endpoint)
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let mut body = String::new();
        let _ = resp.take(64 * 1024).read_to_string(&mut body);
        match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => bail!("{} ({}, HTTP {})", e.error.message, e.error.code, status.as_u16()),
            Err(_) => bail!("the server answered HTTP {status}: {body}"),
        }
    }

    pub fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<(T, serde_json::Value)> {
        let value: serde_json::Value = self.send(req)?.json().context("the server's answer is not JSON")?;
        let typed = serde_json::from_value(value.clone()).context("the server's answer has an unexpected shape")?;
        Ok((typed, value))
    }
}

/// Every item of a cursor-paged list: `page` fetches the page after a cursor (`None`: the first) and returns its
/// items and the next cursor.
pub fn all_pages<T>(mut page: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>)>) -> Result<Vec<T>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (items, next) = page(cursor.as_deref())?;
        all.extend(items);
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
}

/// Percent-encodes a path segment (function references may hold ':' and '$').
pub fn segment(s: &str) -> String {
    stoke_core::percent::encode(s.as_bytes(), false)
}
