//! The OpenAPI document of `/v1`, generated from the handlers and types. A test compares it with the
//! checked-in `docs/openapi.json`, so the contract cannot drift silently.

use std::collections::BTreeMap;

use axum::Json;
use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayItems, SchemaType};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{KnownFormat, Object, ObjectBuilder, PathItem, RefOr, Required, Schema, SchemaFormat, Type};
use utoipa::{Modify, OpenApi};

use super::{
    accounts, cluster, durable_executions, events, functions, invoke, layers, schedules, triggers, tune, workflows,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "stoke native API", description = "Functions, versions, aliases, lifecycle, layers, images, accounts, invocations, HTTP triggers and workflows. Authenticate with 'Authorization: Bearer <api_key>'."),
    paths(
        accounts::whoami, accounts::list, accounts::create, accounts::node, accounts::node_history, cluster::list,
        functions::create, functions::list, functions::get, functions::update_config, functions::delete,
        functions::update_code, functions::download_code, functions::publish, functions::list_versions, functions::delete_version,
        functions::list_aliases, functions::get_alias, functions::put_alias, functions::delete_alias,
        functions::block, functions::unblock, functions::retire,
        invoke::invoke, invoke::instances, invoke::logs,
        durable_executions::list, durable_executions::get, durable_executions::history, durable_executions::stop,
        durable_executions::timeline, durable_executions::answer,
        events::list_failed, events::get, events::redrive, events::redrive_all, events::delete, events::purge,
        functions::list_event_configs, functions::put_event_config, functions::delete_event_config,
        triggers::create_url, triggers::list_urls, triggers::get_url, triggers::patch_url, triggers::delete_url,
        triggers::create_route, triggers::list_routes, triggers::get_route, triggers::patch_route,
        triggers::delete_route,
        workflows::create, workflows::list, workflows::get, workflows::update, workflows::delete,
        workflows::start, workflows::run, workflows::executions, workflows::describe, workflows::history,
        workflows::stop, workflows::timeline, workflows::cost, workflows::map_runs,
        workflows::map_run_executions,
        schedules::create, schedules::list, schedules::get, schedules::replace, schedules::delete,
        schedules::enable, schedules::disable, schedules::next,
        tune::start, tune::get,
        layers::publish, layers::list, layers::versions, layers::get, layers::delete,
        layers::import, layers::list_images, layers::get_image, layers::delete_image,
    ),
    modifiers(&BearerAuth, &CommonErrors, &ServerRules, &FlatCreateRequest, &BinaryBodies, &OptionalBodies),
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
            for (method, op) in methods_mut(item) {
                let writes = matches!(method, "put" | "post" | "delete" | "patch");
                let params = op.parameters.as_deref().unwrap_or_default();
                let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let responses = &mut op.responses.responses;
                responses.entry("401".into()).or_insert_with(|| error("the API key is missing or not valid").into());
                responses.entry("403".into()).or_insert_with(|| {
                    error("the caller may not do this: another account's resource, or an admin's operation").into()
                });
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

/// Rules the server enforces that attributes on the types cannot state: the values a field takes, listed from
/// the server's own constants (runtimes, pre-warm policies, tune strategies, execution statuses); a workflow's
/// `definition` (an object, or a string holding one); the names environment variables may have; layers listed
/// at most once; and a configuration update that names at least one field. (utoipa 5.5 writes a struct's
/// `min_properties` as `maxProperties`, so that one is set here too.)
struct ServerRules;

/// What the server accepts as an environment variable's name (`stoke_core::config`'s `validate_environment`).
const ENV_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_]*$";

impl Modify for ServerRules {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let runtimes: Vec<Value> = stoke_core::Runtime::identifiers().into_iter().map(Value::from).collect();
        let policies: Vec<Value> =
            stoke_asl::prewarm::Policy::NAMES.iter().chain(&["default"]).map(|p| Value::from(*p)).collect();
        let strategies: Vec<Value> = stoke_core::tune::Strategy::NAMES.split(", ").map(Value::from).collect();
        let statuses: Vec<Value> = stoke_store::ExecutionStatus::ALL.iter().map(|s| Value::from(s.as_str())).collect();

        if let Some(components) = doc.components.as_mut() {
            let schemas = &mut components.schemas;
            if let Some(runtime) = property(schemas, "ConfigPatch", "runtime") {
                set_enum(runtime, &runtimes);
            }
            if let Some(runtime) = items(schemas, "PublishLayerRequest", "compatible_runtimes") {
                set_enum(runtime, &runtimes);
            }
            for request in ["CreateWorkflowRequest", "UpdateWorkflowRequest", "StartRequest"] {
                if let Some(prewarm) = property(schemas, request, "prewarm") {
                    set_enum(prewarm, &policies);
                }
            }
            for request in ["CreateWorkflowRequest", "UpdateWorkflowRequest"] {
                if let Some(definition) = property(schemas, request, "definition") {
                    definition.schema_type = [Type::Object, Type::String].into_iter().collect();
                }
            }
            if let Some(strategy) = property(schemas, "TuneRequest", "strategy") {
                set_enum(strategy, &strategies);
            }
            if let Some(environment) = property(schemas, "ConfigPatch", "environment") {
                if let Some(Schema::Object(names)) = environment.property_names.as_deref_mut() {
                    names.pattern = Some(ENV_NAME_PATTERN.to_string());
                }
            }
            if let Some(RefOr::T(Schema::Object(patch))) = schemas.get_mut("ConfigPatch") {
                // `PATCH /v1/functions/{function}` refuses an update that changes nothing.
                patch.min_properties = Some(1);
                if let Some(RefOr::T(Schema::Array(layers))) = patch.properties.get_mut("layers") {
                    layers.unique_items = true;
                }
            }
        }
        let executions = doc.paths.paths.get_mut("/v1/workflows/{name}/executions").and_then(|item| item.get.as_mut());
        for parameter in executions.into_iter().flat_map(|op| op.parameters.iter_mut().flatten()) {
            if parameter.name == "status" {
                if let Some(RefOr::T(Schema::Object(status))) = parameter.schema.as_mut() {
                    set_enum(status, &statuses);
                }
            }
        }
    }
}

/// The schema of the property `name` of the component `schema`, when both are plain schemas.
fn property<'a>(schemas: &'a mut BTreeMap<String, RefOr<Schema>>, schema: &str, name: &str) -> Option<&'a mut Object> {
    let RefOr::T(Schema::Object(object)) = schemas.get_mut(schema)? else { return None };
    match object.properties.get_mut(name)? {
        RefOr::T(Schema::Object(property)) => Some(property),
        _ => None,
    }
}

/// The schema of the items of the array property `name` of the component `schema`.
fn items<'a>(schemas: &'a mut BTreeMap<String, RefOr<Schema>>, schema: &str, name: &str) -> Option<&'a mut Object> {
    let RefOr::T(Schema::Object(object)) = schemas.get_mut(schema)? else { return None };
    let RefOr::T(Schema::Array(array)) = object.properties.get_mut(name)? else { return None };
    match &mut array.items {
        ArrayItems::RefOrSchema(item) => match &mut **item {
            RefOr::T(Schema::Object(item)) => Some(item),
            _ => None,
        },
        _ => None,
    }
}

/// Lists the values a string takes; a nullable one (an `Option` field, which `null` leaves out) takes `null` too.
fn set_enum(schema: &mut Object, values: &[Value]) {
    let mut values = values.to_vec();
    if matches!(&schema.schema_type, SchemaType::Array(types) if types.contains(&Type::Null)) {
        values.push(Value::Null);
    }
    schema.enum_values = Some(values);
}

/// The operations of a path, with their methods.
fn methods_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| Some((method, op.as_mut()?)))
}

/// The operations of a path, whatever their methods.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    methods_mut(item).map(|(_, op)| op)
}

/// `CreateFunctionRequest` flattens the configuration beside `name` and `code_base64`, and
/// `CreateScheduleRequest` the schedule beside `name`; generated as an `allOf` of the flattened part (which
/// allows no other fields) and the others, no request could satisfy them. One object with all the fields is
/// what the server reads; a function's `runtime`, which has no default, is required.
struct FlatCreateRequest;

/// `composite`, an `allOf` of the component `base` and fields of its own, made one object; `base`'s required
/// fields stay required when `keep_required`.
fn flatten(
    components: &mut utoipa::openapi::Components,
    base: &str,
    composite: &str,
    keep_required: bool,
) -> Option<Object> {
    let (Some(RefOr::T(Schema::Object(config))), Some(RefOr::T(Schema::AllOf(parts)))) =
        (components.schemas.get(base), components.schemas.get(composite))
    else {
        return None;
    };
    let mut flat = config.clone();
    if !keep_required {
        flat.required.clear();
    }
    flat.min_properties = None;
    for part in &parts.items {
        if let RefOr::T(Schema::Object(own)) = part {
            flat.properties.extend(own.properties.clone());
            flat.required.extend(own.required.iter().cloned());
        }
    }
    flat.description.clone_from(&parts.description);
    Some(flat)
}

impl Modify for FlatCreateRequest {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else { return };
        if let Some(flat) = flatten(components, "ScheduleSpec", "CreateScheduleRequest", true) {
            components.schemas.insert("CreateScheduleRequest".into(), RefOr::T(Schema::Object(flat)));
        }
        let Some(mut flat) = flatten(components, "ConfigPatch", "CreateFunctionRequest", false) else { return };
        if let Some(RefOr::T(Schema::Object(runtime))) = flat.properties.get_mut("runtime") {
            runtime.schema_type = SchemaType::new(Type::String);
            if let Some(values) = runtime.enum_values.as_mut() {
                values.retain(|v| !v.is_null());
            }
            flat.required.push("runtime".to_string());
        }
        components.schemas.insert("CreateFunctionRequest".into(), RefOr::T(Schema::Object(flat)));
    }
}

/// Archives and images travel as raw bytes. The handlers' annotations name them `Vec<u8>`, which utoipa writes
/// as an array of integers: every body and answer that is not JSON is a binary string instead.
struct BinaryBodies;

impl Modify for BinaryBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let binary = || {
            let bytes = ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .build();
            Some(RefOr::T(Schema::Object(bytes)))
        };
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                if let Some(body) = op.request_body.as_mut() {
                    for (media_type, content) in body.content.iter_mut() {
                        if !media_type.ends_with("json") {
                            content.schema = binary();
                        }
                    }
                }
                for answer in op.responses.responses.values_mut() {
                    if let RefOr::T(answer) = answer {
                        for (media_type, content) in answer.content.iter_mut() {
                            if !media_type.ends_with("json") {
                                content.schema = binary();
                            }
                        }
                    }
                }
            }
        }
    }
}

/// utoipa marks every request body required, but the server reads an empty body as `{}`
/// (`extract::parse_json`, and `Invoker::payload` for an event): a JSON body whose schema requires no property
/// may be left out. One that requires some (or, as a configuration update, at least one property) stays
/// required.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let schemas = doc.components.as_ref().map(|c| &c.schemas);
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let Some(body) = op.request_body.as_mut() else { continue };
                let Some(json) = body.content.get("application/json") else { continue };
                let schema = match &json.schema {
                    Some(RefOr::Ref(reference)) => {
                        reference.ref_location.strip_prefix("#/components/schemas/").and_then(|name| schemas?.get(name))
                    }
                    inline => inline.as_ref(),
                };
                let requires_nothing = matches!(schema, Some(RefOr::T(Schema::Object(object)))
                    if object.required.is_empty() && object.min_properties.unwrap_or(0) == 0);
                if requires_nothing {
                    body.required = Some(Required::False);
                }
            }
        }
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
    /// object, `name`, `code_base64` and `runtime` (which has no default) required, nothing else allowed.
    #[test]
    fn a_create_request_is_one_object_a_valid_request_satisfies() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let create = &doc["components"]["schemas"]["CreateFunctionRequest"];
        assert!(create.get("allOf").is_none(), "{create}");
        assert_eq!(create["additionalProperties"], false);
        assert_eq!(create["required"], serde_json::json!(["name", "code_base64", "runtime"]));
        for field in ["name", "code_base64", "runtime", "handler", "memory_mb", "timeout_s", "environment"] {
            assert!(create["properties"].get(field).is_some(), "{field} missing from {create}");
        }
        let runtime = &create["properties"]["runtime"];
        assert_eq!(runtime["type"], "string", "a create request names a runtime, not null: {runtime}");
        assert!(runtime["enum"].as_array().is_some_and(|values| values.iter().all(|v| v.is_string())), "{runtime}");
        assert!(create.get("minProperties").is_none(), "{create}");
    }

    /// Two schemas named `NodeView` once replaced each other, and `/v1/node` was documented as a cluster
    /// node: what it answers has the node's limits; the cluster's entries are `ClusterNode`.
    #[test]
    fn the_node_is_documented_as_what_get_v1_node_answers() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let answer = &doc["paths"]["/v1/node"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(answer["$ref"], "#/components/schemas/NodeView");
        let schemas = &doc["components"]["schemas"];
        for field in ["limits", "max_archive_bytes", "region", "version"] {
            assert!(schemas["NodeView"]["properties"].get(field).is_some(), "{field} missing from NodeView");
        }
        assert!(schemas["ClusterNode"]["properties"].get("name").is_some(), "{}", schemas["ClusterNode"]);
        assert_eq!(schemas["NodeList"]["properties"]["nodes"]["items"]["$ref"], "#/components/schemas/ClusterNode");
    }

    /// The server reads an empty body as `{}`: a body whose schema requires nothing is optional, one that
    /// requires a property (or, for a configuration update, any property at all) is not.
    #[test]
    fn bodies_that_require_nothing_may_be_left_out() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let required = |path: &str, method: &str| {
            let body = &doc["paths"][path][method]["requestBody"];
            assert!(body.is_object(), "{method} {path} has no body");
            body["required"].as_bool().unwrap_or(false)
        };
        for (path, method) in [
            ("/v1/functions/{function}/invoke", "post"),
            ("/v1/functions/{function}/versions", "post"),
            ("/v1/functions/{function}/tune", "post"),
            ("/v1/workflows/{name}/executions", "post"),
            ("/v1/workflows/{name}/run", "post"),
            ("/v1/executions/{id}/stop", "post"),
            ("/v1/urls/{id}", "patch"),
            ("/v1/routes/{id}", "patch"),
        ] {
            assert!(!required(path, method), "{method} {path}: an empty body is read as {{}}");
        }
        for (path, method) in [
            ("/v1/functions", "post"),
            ("/v1/functions/{function}", "patch"),
            ("/v1/functions/{function}/aliases/{alias}", "put"),
            ("/v1/functions/{function}/code", "put"),
            ("/v1/workflows", "post"),
            ("/v1/workflows/{name}", "put"),
            ("/v1/accounts", "post"),
            ("/v1/urls", "post"),
            ("/v1/layers/{name}/versions", "post"),
        ] {
            assert!(required(path, method), "{method} {path}: its body has required properties");
        }
        assert_eq!(doc["components"]["schemas"]["ConfigPatch"]["minProperties"], 1);
        let event = &doc["paths"]["/v1/functions/{function}/invoke"]["post"]["requestBody"]["content"];
        assert_eq!(event["application/json"]["schema"], serde_json::json!({}), "an event is any JSON");
    }

    /// Archives and images are bytes on the wire, not JSON arrays of numbers.
    #[test]
    fn binary_bodies_are_binary_strings() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let binary = serde_json::json!({"type": "string", "format": "binary"});
        let code = &doc["paths"]["/v1/functions/{function}/code"];
        assert_eq!(code["put"]["requestBody"]["content"]["application/zip"]["schema"], binary);
        assert_eq!(code["get"]["responses"]["200"]["content"]["application/zip"]["schema"], binary);
        let image = &doc["paths"]["/v1/images/{name}"]["put"]["requestBody"]["content"];
        assert_eq!(image["application/x-tar"]["schema"], binary);
    }

    /// The values the document lists are the ones the server's parsers take.
    #[test]
    fn listed_values_are_the_ones_the_server_takes() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let listed = |schema: &serde_json::Value| -> Vec<String> {
            let values = schema["enum"].as_array().unwrap_or_else(|| panic!("no enum in {schema}"));
            values.iter().filter_map(|v| v.as_str().map(String::from)).collect()
        };
        let runtimes = listed(&schemas["ConfigPatch"]["properties"]["runtime"]);
        assert_eq!(runtimes, stoke_core::Runtime::identifiers());
        assert!(schemas["ConfigPatch"]["properties"]["runtime"]["enum"].as_array().unwrap().contains(&Value::Null));
        assert_eq!(listed(&schemas["PublishLayerRequest"]["properties"]["compatible_runtimes"]["items"]), runtimes);
        for request in ["CreateWorkflowRequest", "UpdateWorkflowRequest", "StartRequest"] {
            let policies = listed(&schemas[request]["properties"]["prewarm"]);
            assert_eq!(policies.len(), 4, "{request}: {policies:?}");
            for policy in policies {
                assert!(crate::workflows::parse_policy(&policy).is_ok(), "{request}: {policy}");
            }
        }
        for request in ["CreateWorkflowRequest", "UpdateWorkflowRequest"] {
            assert_eq!(schemas[request]["properties"]["definition"]["type"], serde_json::json!(["object", "string"]));
        }
        for strategy in listed(&schemas["TuneRequest"]["properties"]["strategy"]) {
            assert!(stoke_core::tune::Strategy::parse(&strategy, None, None).is_ok(), "{strategy}");
        }
        let executions = &doc["paths"]["/v1/workflows/{name}/executions"]["get"]["parameters"];
        let status = executions.as_array().unwrap().iter().find(|p| p["name"] == "status").unwrap();
        let statuses = listed(&status["schema"]);
        assert_eq!(statuses.len(), 5, "{statuses:?}");
        for text in statuses {
            assert!(stoke_store::ExecutionStatus::parse(&text).is_some(), "{text}");
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
