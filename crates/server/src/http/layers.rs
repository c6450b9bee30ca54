//! `/v1/layers/...` (an account's library layers) and `/v1/images/...` (root file systems of this node).

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use stoke_core::time::format_rfc3339;
use stoke_core::{LayerName, ValidationError};
use stoke_store::{ImageRecord, LayerRecord};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::{blocking, AppState};
use crate::accounts::Caller;
use crate::registry::{layer_view_arn, RegistryError};

/// A layer version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayerVersionView {
    pub name: String,
    pub version: u64,
    /// What a function lists in `layers`: `name:version`.
    pub reference: String,
    /// The layer version's ARN (also accepted in `layers`).
    pub arn: String,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub code_sha256: String,
    pub code_size: u64,
    pub created: String,
}

impl LayerVersionView {
    fn from(l: &LayerRecord, region: &str) -> Self {
        Self {
            name: l.name.to_string(),
            version: l.version,
            reference: format!("{}:{}", l.name, l.version),
            arn: layer_view_arn(region, l),
            description: l.description.clone(),
            compatible_runtimes: l.compatible_runtimes.clone(),
            code_sha256: l.code.sha256.clone(),
            code_size: l.code.size,
            created: format_rfc3339(l.created_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LayerList {
    /// The newest version of each layer.
    pub layers: Vec<LayerVersionView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LayerVersionList {
    /// Newest first.
    pub versions: Vec<LayerVersionView>,
}

/// A new layer version: its files as a zip or tar.gz (what instances see under `/opt`: `python/`,
/// `nodejs/node_modules/`, `bin/`, `lib/`, …).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishLayerRequest {
    /// The archive (zip or tar.gz, not empty), base64-encoded.
    #[schema(min_length = 1, content_encoding = "base64")]
    pub code_base64: String,
    /// At most 256 characters.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub description: String,
    /// Runtimes the layer is built for (informational), at most 15, e.g. `["python3.12"]`.
    #[serde(default)]
    #[schema(max_items = 15)]
    pub compatible_runtimes: Vec<String>,
}

/// `{name}` of a layer.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LayerPath {
    /// The layer's name: 1-64 letters, digits, '-' or '_'.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
}

/// `{name}` of an image.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ImagePath {
    /// The image's name: 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit
    /// (`default`, the host's own, cannot be imported).
    #[param(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub name: String,
}

fn layer_name(name: &str) -> ApiResult<LayerName> {
    LayerName::parse(name).map_err(|e| ApiError::from(RegistryError::from(e)))
}

fn version_number(version: &str) -> ApiResult<u64> {
    version.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::from(RegistryError::from(ValidationError::new(
            "version",
            format!("layer version {version:?} is not valid: give its number, e.g. 3"),
        )))
    })
}

/// Publishes a new version of a layer (numbered one more than its highest so far).
#[utoipa::path(post, path = "/v1/layers/{name}/versions", tag = "layers", request_body = PublishLayerRequest,
    params(LayerPath),
    responses((status = 201, body = LayerVersionView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PublishLayerRequest>,
) -> ApiResult<(StatusCode, Json<LayerVersionView>)> {
    let code = base64::engine::general_purpose::STANDARD.decode(req.code_base64.trim()).map_err(|e| {
        ApiError::bad_request("invalid_parameter", format!("code_base64 is not valid base64: {e}"))
            .with_field("code_base64")
    })?;
    let registry = s.registry.clone();
    let layer = blocking(move || {
        Ok(registry.publish_layer(&caller.account.id, &name, req.description, req.compatible_runtimes, &code)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(LayerVersionView::from(&layer, &s.region))))
}

/// The account's layers, each with its newest version.
#[utoipa::path(get, path = "/v1/layers", tag = "layers", responses((status = 200, body = LayerList)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<LayerList>> {
    let registry = s.registry.clone();
    let layers = blocking(move || Ok(registry.list_layers(&caller.account.id)?)).await?;
    Ok(Json(LayerList { layers: layers.iter().map(|l| LayerVersionView::from(l, &s.region)).collect() }))
}

/// A layer's versions, newest first.
#[utoipa::path(get, path = "/v1/layers/{name}/versions", tag = "layers",
    params(LayerPath),
    responses((status = 200, body = LayerVersionList), (status = 404, body = ErrorBody)))]
pub async fn versions(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<LayerVersionList>> {
    let name = layer_name(&name)?;
    let registry = s.registry.clone();
    let versions = blocking(move || Ok(registry.list_layer_versions(&caller.account.id, &name)?)).await?;
    Ok(Json(LayerVersionList { versions: versions.iter().map(|l| LayerVersionView::from(l, &s.region)).collect() }))
}

/// One layer version.
#[utoipa::path(get, path = "/v1/layers/{name}/versions/{version}", tag = "layers",
    params(LayerPath, ("version" = u64, Path, description = "version number", minimum = 1)),
    responses((status = 200, body = LayerVersionView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<LayerVersionView>> {
    let (name, version) = (layer_name(&name)?, version_number(&version)?);
    let registry = s.registry.clone();
    let layer = blocking(move || Ok(registry.get_layer(&caller.account.id, &name, version)?)).await?;
    Ok(Json(LayerVersionView::from(&layer, &s.region)))
}

/// Deletes a layer version. Functions that list it keep running on it; no new configuration may list it.
#[utoipa::path(delete, path = "/v1/layers/{name}/versions/{version}", tag = "layers",
    params(LayerPath, ("version" = u64, Path, description = "version number", minimum = 1)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (name, version) = (layer_name(&name)?, version_number(&version)?);
    let registry = s.registry.clone();
    blocking(move || Ok(registry.delete_layer(&caller.account.id, &name, version)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A root file system functions can run on (`base_image`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageView {
    pub name: String,
    /// sha256 of the imported tarball.
    pub sha256: String,
    pub size: u64,
    pub unpacked_bytes: u64,
    pub created: String,
}

impl From<&ImageRecord> for ImageView {
    fn from(i: &ImageRecord) -> Self {
        Self {
            name: i.name.clone(),
            sha256: i.code.sha256.clone(),
            size: i.code.size,
            unpacked_bytes: i.unpacked_bytes,
            created: format_rfc3339(i.created_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    /// Imported images; `default` (the host's own) is always there and not listed.
    pub images: Vec<ImageView>,
}

fn admin_only(caller: &Caller, what: &str) -> ApiResult<()> {
    if caller.account.is_admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{what} changes what every account can run on this node: use an admin account's key"),
    ))
}

/// A blocking reader over a request body arriving on the async side.
struct BodyReader {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(format!("the upload broke off: {e}"))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Imports an image from a tarball (plain or gzip-compressed; e.g. from `docker export` or debootstrap)
/// streamed as the request body (admin only).
#[utoipa::path(put, path = "/v1/images/{name}", tag = "images", request_body(content = Vec<u8>, content_type = "application/x-tar"),
    params(ImagePath),
    responses((status = 201, body = ImageView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn import(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ImageView>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut body = request.into_body().into_data_stream();
    let feeder = tokio::spawn(async move {
        let mut importing = true;
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(|e| e.to_string());
            if item.is_err() {
                return;
            }
            // Once the importer has hung up (it refused the image, or the caller), the rest of the upload is
            // read and dropped: a client still sending would otherwise see its connection closed instead of
            // the answer.
            if importing && tx.send(item).await.is_err() {
                importing = false;
            }
        }
    });
    // Refused after the feeder started, so that this refusal too reaches a client still sending the tarball.
    admin_only(&caller, "importing an image")?;
    let registry = s.registry.clone();
    let image = blocking(move || {
        let mut reader = BodyReader { chunks: rx, current: Bytes::new() };
        Ok(registry.import_image(&name, &mut reader)?)
    })
    .await;
    let _ = feeder.await;
    Ok((StatusCode::CREATED, Json(ImageView::from(&image?))))
}

/// The images functions can run on besides `default`.
#[utoipa::path(get, path = "/v1/images", tag = "images", responses((status = 200, body = ImageList)))]
pub async fn list_images(State(s): State<AppState>, _caller: Caller) -> ApiResult<Json<ImageList>> {
    let registry = s.registry.clone();
    let images = blocking(move || Ok(registry.list_images()?)).await?;
    Ok(Json(ImageList { images: images.iter().map(ImageView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/images/{name}", tag = "images",
    params(ImagePath),
    responses((status = 200, body = ImageView), (status = 404, body = ErrorBody)))]
pub async fn get_image(
    State(s): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ImageView>> {
    let registry = s.registry.clone();
    let image = blocking(move || Ok(registry.get_image(&name)?)).await?;
    Ok(Json(ImageView::from(&image)))
}

/// Deletes an image no function runs on (admin only).
#[utoipa::path(delete, path = "/v1/images/{name}", tag = "images",
    params(ImagePath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_image(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    admin_only(&caller, "deleting an image")?;
    let registry = s.registry.clone();
    blocking(move || Ok(registry.delete_image(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
