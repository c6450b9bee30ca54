//! Echoes its event with a few context fields; fails on request. Used by stoke's tests and benchmarks.

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
