//! Echoes its event with a few context fields; fails on request; reads files on request; uses stoke's runtime
//! interfaces on request. Used by stoke's tests and benchmarks.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    if payload.get("fail").is_some() {
        return Err("asked to fail".into());
    }
    if payload.get("noop").is_some() {
        return Ok(Value::Null);
    }
    // What the instance sees of the file system: each path's contents (text), or null when unreadable.
    if let Some(paths) = payload.get("read").and_then(Value::as_array) {
        let seen: serde_json::Map<String, Value> = paths
            .iter()
            .filter_map(Value::as_str)
            .map(|p| (p.to_string(), std::fs::read_to_string(p).map_or(Value::Null, Value::String)))
            .collect();
        return Ok(Value::Object(seen));
    }
    // stoke's runtime interfaces, when the event asks: prepare the next step, or run as a prepared one.
    if let Some(next) = payload.get("prepare").and_then(Value::as_str) {
        let reservation = stoke_runtime::prepare(next, &json!({"probe": true, "from": payload}))?;
        return Ok(json!({"prepared_next": reservation.function, "echo": payload}));
    }
    if payload.get("probe").is_some() {
        let params = stoke_runtime::prepared_params()?;
        let input = match &params {
            Some(_) => tokio::task::spawn_blocking(stoke_runtime::wait_turn).await??,
            None => payload,
        };
        return Ok(json!({"prepared": params, "input": input}));
    }
    Ok(json!({
        "echo": payload,
        "request": ctx.request_id,
        "function": ctx.env_config.function_name,
        "memory": ctx.env_config.memory,
        "version": ctx.env_config.version,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
