//! Lambda's layer API (`/2018-10-31/layers/...`: PublishLayerVersion, ListLayers, ListLayerVersions,
//! GetLayerVersion, DeleteLayerVersion), a thin adapter over the same registry as `/v1/layers`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use stoke_core::layer::layer_arn;
use stoke_core::time::format_lambda_timestamp;
use stoke_core::LayerName;
use stoke_store::LayerRecord;

use super::lambda::{sha_base64, zip_bytes, LambdaError, LambdaResult, Signed};
use super::{blocking, AppState};
use crate::registry::{layer_view_arn, RegistryError};

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/layers", get(list_layers))
        .route("/layers/", get(list_layers))
        .route("/layers/{name}/versions", get(list_versions).post(publish))
        .route("/layers/{name}/versions/{version}", get(get_version).delete(delete_version))
        .layer(axum::middleware::from_fn_with_state(state, super::lambda::other_regions_are_not_found))
}

/// Lambda's `GetLayerVersion` shape.
fn version_view(l: &LayerRecord, region: &str) -> Value {
    json!({
        "Content": {
            "Location": format!("/v1/layers/{}/versions/{}", l.name, l.version),
            "CodeSha256": sha_base64(&l.code.sha256),
            "CodeSize": l.code.size,
        },
        "LayerArn": layer_arn(region, &l.account, &l.name, None),
        "LayerVersionArn": layer_view_arn(region, l),
        "Description": l.description,
        "CreatedDate": format_lambda_timestamp(l.created_ms),
        "Version": l.version,
        "CompatibleRuntimes": l.compatible_runtimes,
        "CompatibleArchitectures": ["x86_64"],
    })
}

/// The `ListLayerVersions` item shape (no content).
fn list_item(l: &LayerRecord, region: &str) -> Value {
    let mut v = version_view(l, region);
    if let Some(o) = v.as_object_mut() {
        o.remove("Content");
        o.remove("LayerArn");
    }
    v
}

fn name_of(name: &str) -> LambdaResult<LayerName> {
    LayerName::parse(name).map_err(|e| LambdaError::invalid(e.message))
}

fn number_of(version: &str) -> LambdaResult<u64> {
    version
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| LambdaError::invalid(format!("VersionNumber {version:?} is not a layer version number")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContentIn {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishIn {
    content: ContentIn,
    #[serde(default)]
    description: String,
    #[serde(default)]
    compatible_runtimes: Vec<String>,
}

async fn publish(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> LambdaResult<(StatusCode, Json<Value>)> {
    let input: PublishIn = req.json()?;
    if input.content.s3_bucket.is_some() {
        return Err(LambdaError::invalid(
            "stoke takes layer content as Content.ZipFile; S3 locations are not supported",
        ));
    }
    let code = zip_bytes(input.content.zip_file.as_deref(), "Content.ZipFile")?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let layer = blocking(move || {
        Ok(registry.publish_layer(&account, &name, input.description, input.compatible_runtimes, &code)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(version_view(&layer, &region))))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListLayersQuery {
    compatible_runtime: Option<String>,
}

async fn list_layers(State(s): State<AppState>, uri: axum::http::Uri, req: Signed) -> LambdaResult<Json<Value>> {
    // `CompatibleRuntime` filters, and must be a runtime Lambda knows (ValidationException otherwise).
    let runtime = super::lambda::query::<ListLayersQuery>(&uri)?.compatible_runtime;
    if let Some(r) = &runtime {
        stoke_core::Runtime::parse(r).map_err(|e| {
            LambdaError::validation(format!(
                "1 validation error detected: Value '{r}' at 'compatibleRuntime' failed to satisfy constraint: \
                 Member must satisfy enum value set: {}",
                e.message
            ))
        })?;
    }
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let layers = blocking(move || Ok(registry.list_layers(&account)?)).await?;
    let items: Vec<Value> = layers
        .iter()
        .filter(|l| runtime.as_ref().is_none_or(|r| l.compatible_runtimes.iter().any(|c| c == r)))
        .map(|l| {
            json!({
                "LayerName": l.name.as_str(),
                "LayerArn": layer_arn(&region, &l.account, &l.name, None),
                "LatestMatchingVersion": list_item(l, &region),
            })
        })
        .collect();
    Ok(Json(json!({ "Layers": items })))
}

async fn list_versions(State(s): State<AppState>, Path(name): Path<String>, req: Signed) -> LambdaResult<Json<Value>> {
    let name = name_of(&name)?;
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    // Lambda answers an empty list for a layer with no versions.
    let versions = blocking(move || match registry.list_layer_versions(&account, &name) {
        Err(RegistryError::NotFound(_)) => Ok(Vec::new()),
        other => Ok(other?),
    })
    .await?;
    Ok(Json(json!({ "LayerVersions": versions.iter().map(|l| list_item(l, &region)).collect::<Vec<_>>() })))
}

async fn get_version(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Signed,
) -> LambdaResult<Json<Value>> {
    let (name, version) = (name_of(&name)?, number_of(&version)?);
    let (registry, account, region) = (s.registry.clone(), req.caller.account.id, s.region.clone());
    let layer = blocking(move || Ok(registry.get_layer(&account, &name, version)?)).await?;
    Ok(Json(version_view(&layer, &region)))
}

async fn delete_version(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Signed,
) -> LambdaResult<StatusCode> {
    let (name, version) = (name_of(&name)?, number_of(&version)?);
    let (registry, account) = (s.registry.clone(), req.caller.account.id);
    // Lambda's delete is idempotent: deleting what is not there is no error.
    blocking(move || match registry.delete_layer(&account, &name, version) {
        Err(RegistryError::NotFound(_)) => Ok(()),
        other => Ok(other?),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
