//! The OpenAPI document of `/v1`, generated from the handlers and types. A test compares it with the
//! checked-in `docs/openapi.json`, so the contract cannot drift silently.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, cluster, functions, invoke, layers, triggers, tune, workflows};

#[derive(OpenApi)]
#[openapi(
    info(title = "stoke native API", description = "Functions, versions, aliases, lifecycle, layers, images, accounts, invocations, HTTP triggers and workflows. Authenticate with 'Authorization: Bearer <api_key>'."),
    paths(
        accounts::whoami, accounts::list, accounts::create, accounts::node, cluster::list,
        functions::create, functions::list, functions::get, functions::update_config, functions::delete,
        functions::update_code, functions::download_code, functions::publish, functions::list_versions,
        functions::list_aliases, functions::get_alias, functions::put_alias, functions::delete_alias,
        functions::block, functions::unblock, functions::retire,
        invoke::invoke, invoke::instances, invoke::logs,
        triggers::create_url, triggers::list_urls, triggers::get_url, triggers::patch_url, triggers::delete_url,
        triggers::create_route, triggers::list_routes, triggers::get_route, triggers::patch_route,
        triggers::delete_route,
        workflows::create, workflows::list, workflows::get, workflows::update, workflows::delete,
        workflows::start, workflows::run, workflows::executions, workflows::describe, workflows::history,
        workflows::stop, workflows::timeline, workflows::cost,
        tune::start, tune::get,
        layers::publish, layers::list, layers::versions, layers::get, layers::delete,
        layers::import, layers::list_images, layers::get_image, layers::delete_image,
    ),
    modifiers(&BearerAuth, &CommonErrors, &FlatCreateRequest),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The errors every operation can answer, said once here rather than on each handler: 401 without a valid
/// API key; 400 where there is a body or a parameter to get wrong; 404 where the path names a resource; 408
/// where there is a body to send; 503 when a dependency cannot answer; 507 for a write on a full disk.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.delete, true),
                (&mut item.patch, true),
                (&mut item.head, false),
            ];
            for (op, writes) in ops.into_iter().filter_map(|(op, writes)| Some((op.as_mut()?, writes))) {
                let params = op.parameters.as_deref().unwrap_or_default();
                let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let responses = &mut op.responses.responses;
                responses.entry("401".into()).or_insert_with(|| error("the API key is missing or not valid").into());
                if op.request_body.is_some() || !params.is_empty() {
                    responses
                        .entry("400".into())
                        .or_insert_with(|| error("the request is not valid; the message says why").into());
                }
                if in_path {
                    responses.entry("404".into()).or_insert_with(|| error("what the path names does not exist").into());
                }
                if op.request_body.is_some() {
                    responses.entry("408".into()).or_insert_with(|| {
                        error("the request body did not arrive within the server's --body-timeout").into()
                    });
                }
                responses.entry("503".into()).or_insert_with(|| {
                    error("a dependency (a cluster's store, a peer) cannot answer now; retry after Retry-After").into()
                });
                if writes {
                    responses.entry("507".into()).or_insert_with(|| {
                        error("the server's disk is full, so nothing was written; retry after Retry-After").into()
                    });
                }
            }
        }
    }
}

/// `CreateFunctionRequest` flattens the configuration beside `name` and `code_base64`; generated as an
/// `allOf` of the configuration (which allows no other fields) and those two, no request could satisfy it.
/// One object with all the fields is what the server reads.
struct FlatCreateRequest;

impl Modify for FlatCreateRequest {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = doc.components.as_mut() else { return };
        let (Some(RefOr::T(Schema::Object(config))), Some(RefOr::T(Schema::AllOf(parts)))) =
            (components.schemas.get("ConfigPatch"), components.schemas.get("CreateFunctionRequest"))
        else {
            return;
        };
        let mut flat = config.clone();
        flat.required.clear();
        for part in &parts.items {
            if let RefOr::T(Schema::Object(own)) = part {
                flat.properties.extend(own.properties.clone());
                flat.required.extend(own.required.iter().cloned());
            }
        }
        flat.description.clone_from(&parts.description);
        components.schemas.insert("CreateFunctionRequest".into(), RefOr::T(Schema::Object(flat)));
    }
}

/// The document as pretty JSON, with a fixed version so it does not change with every release.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = "1".to_string();
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

pub async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::from_str(&document()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when the API changed but docs/openapi.json was not regenerated. To regenerate:
    /// `STOKE_BLESS=1 cargo test -p stoke-server openapi`.
    #[test]
    fn openapi_document_matches_checked_in_copy() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let current = document();
        if std::env::var_os("STOKE_BLESS").is_some() {
            std::fs::write(&path, &current).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == current,
            "docs/openapi.json is out of date with the code; run `STOKE_BLESS=1 cargo test -p stoke-server openapi` and commit it"
        );
    }

    /// Every `{name}` of a path is declared as a path parameter of each of its operations, and nothing else
    /// is: a query parameter declared `in: path` (or a path one left out) sends a client generated from the
    /// document to the wrong URL.
    #[test]
    fn path_parameters_are_exactly_the_paths_placeholders() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut wrong = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let placeholders: std::collections::BTreeSet<&str> =
                path.split('{').skip(1).filter_map(|rest| rest.split('}').next()).collect();
            for (method, op) in ops.as_object().unwrap() {
                let declared: std::collections::BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                if declared != placeholders {
                    wrong.push(format!("{method} {path}: declares {declared:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "operations whose path parameters are not their path's:\n{}", wrong.join("\n"));
    }

    /// A request the server takes satisfies the schema: every field of a create request is a property of one
    /// object, `name` and `code_base64` required, nothing else allowed.
    #[test]
    fn a_create_request_is_one_object_a_valid_request_satisfies() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let create = &doc["components"]["schemas"]["CreateFunctionRequest"];
        assert!(create.get("allOf").is_none(), "{create}");
        assert_eq!(create["additionalProperties"], false);
        assert_eq!(create["required"], serde_json::json!(["name", "code_base64"]));
        for field in ["name", "code_base64", "runtime", "handler", "memory_mb", "timeout_s", "environment"] {
            assert!(create["properties"].get(field).is_some(), "{field} missing from {create}");
        }
    }

    /// Every operation needs an API key, so every one documents the 401 a caller without one gets; one with
    /// a body or a parameter documents its 400, one whose path names a resource its 404.
    #[test]
    fn every_operation_documents_the_errors_it_can_answer() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let error = |op: &serde_json::Value, status: &str| {
            op["responses"][status]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"
        };
        let mut count = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(error(op, "401"), "{method} {path}: no 401");
                let params = op["parameters"].as_array().map_or(0, Vec::len);
                if op.get("requestBody").is_some() || params > 0 {
                    assert!(error(op, "400"), "{method} {path}: no 400");
                }
                if path.contains('{') {
                    assert!(error(op, "404"), "{method} {path}: no 404");
                }
                count += 1;
            }
        }
        assert!(count > 50, "{count} operations");
    }
}
