//! A function's configuration, the partial updates to it, and every rule it must satisfy.
//!
//! Validation is done against [`NodeLimits`] (what the node offers), so "memory up to the node's limit" and
//! "GPUs the node reports" are checked without the core asking the machine anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::runtime::Runtime;
use crate::validation::ValidationError;

/// What this node can give a function; configurations are validated against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeLimits {
    /// Largest memory a function may ask for, in MB.
    pub max_memory_mb: u32,
    /// GPUs the node reports.
    pub gpu_count: u32,
    /// Largest per-function concurrency limit.
    pub max_concurrency: u32,
    /// The node's sandbox can give an instance a network of its own (`network: none`).
    pub network_isolation: bool,
    /// Memory of the node's largest GPU, in MB (0: no GPU, or its size unknown).
    #[serde(default)]
    pub gpu_memory_mb: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self { max_memory_mb: 10_240, gpu_count: 0, max_concurrency: 1_000, network_isolation: true, gpu_memory_mb: 0 }
    }
}

/// The network an instance sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network, as on Lambda: the function reaches whatever the node reaches.
    #[default]
    Host,
    /// A network namespace of its own with only loopback; the Runtime API is relayed in.
    None,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::None => "none",
        }
    }
}

/// Memory sizes are multiples of this many MB (seed 002).
pub const MEMORY_STEP_MB: u32 = 64;
pub const MIN_MEMORY_MB: u32 = 128;
/// GPU memory sizes are multiples of this many MB (seed 002).
pub const GPU_MEMORY_STEP_MB: u32 = 256;
pub const MAX_TIMEOUT_S: u32 = 900;
pub const MAX_KEEP_ALIVE_S: u32 = 86_400;
pub const MAX_MIN_WARM: u32 = 100;
pub const MAX_DESCRIPTION_LEN: usize = 256;
pub const MAX_LAYERS: usize = 5;
/// Lambda's limit on the total size of environment variables.
pub const MAX_ENV_BYTES: usize = 4 * 1024;
pub const MAX_HANDLER_LEN: usize = 128;
/// Lambda's range for ephemeral storage (`/tmp`), in MB.
pub const MIN_EPHEMERAL_STORAGE_MB: u32 = 512;
pub const MAX_EPHEMERAL_STORAGE_MB: u32 = 10_240;

/// Lambda's range for a durable execution's timeout, in seconds (a year of 366 days at most).
pub const MAX_DURABLE_EXECUTION_TIMEOUT_S: u32 = 31_622_400;
/// Lambda's range for how long a finished durable execution is kept, in days.
pub const MAX_DURABLE_RETENTION_DAYS: u32 = 90;
/// Lambda's default retention of a finished durable execution.
pub const DEFAULT_DURABLE_RETENTION_DAYS: u32 = 14;

/// Environment variables the platform sets itself; a function may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// The complete, validated configuration of a function version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionConfig {
    /// `python3.N`, `nodejs`, `nodejsNN.x`, or `provided`.
    pub runtime: String,
    /// `module.function` for python and node; ignored by `provided`.
    pub handler: String,
    /// Memory in MB: a multiple of 64, at least 128, at most the node's limit.
    pub memory_mb: u32,
    /// Seconds an invocation may run, 1-900.
    pub timeout_s: u32,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    /// Layer references (`name:version` or a layer ARN), at most 5.
    pub layers: Vec<String>,
    /// Name of the root file system image the function runs on.
    pub base_image: String,
    pub gpu_count: u32,
    /// GPU memory in MB, a multiple of 256; 0 when the function has no GPU.
    pub gpu_memory_mb: u32,
    /// Share of a GPU, 1-100; absent when the function has no GPU.
    pub gpu_percentage: Option<u32>,
    /// Most instances of this function that may run at once; absent = the account's limit.
    pub concurrency_limit: Option<u32>,
    /// Instances kept warm even without traffic (like provisioned concurrency).
    pub min_warm: u32,
    /// Seconds an idle instance stays warm before it is evicted.
    pub keep_alive_s: u32,
    /// `host` (default) or `none`: a network of its own with only loopback.
    #[serde(default)]
    pub network: Network,
    /// The size of `/tmp` (Lambda's ephemeral storage) in MB, 512-10240.
    #[serde(default = "default_ephemeral_storage_mb")]
    pub ephemeral_storage_mb: u32,
    /// Present on a durable function (Lambda's `DurableConfig`): each invocation starts a durable execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<DurableConfig>,
    /// How its runtime writes logs (Lambda's `LoggingConfig`); absent: text.
    #[serde(default, skip_serializing_if = "LoggingConfig::is_default")]
    pub logging: LoggingConfig,
}

/// Lambda's `LoggingConfig`: the format of the function's logs, the levels written in JSON, the log group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `Text` (the default: what the function prints, as it prints it) or `JSON` (the runtime writes each of
    /// the language's log records as a JSON object, with the request id and the record's own fields).
    #[serde(default)]
    pub format: LogFormat,
    /// With JSON: the lowest level of the function's records written: TRACE, DEBUG, INFO (default), WARN,
    /// ERROR or FATAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_level: Option<String>,
    /// With JSON: the lowest level of the platform's records: DEBUG, INFO (default) or WARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_level: Option<String>,
    /// The log group CloudWatch Logs' API reads the function's logs from; default `/aws/lambda/<function>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
}

/// A function's log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LogFormat {
    #[default]
    Text,
    #[serde(rename = "JSON")]
    Json,
}

/// Lambda's application log levels, lowest first.
pub const APPLICATION_LOG_LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
/// Lambda's system log levels.
pub const SYSTEM_LOG_LEVELS: [&str; 3] = ["DEBUG", "INFO", "WARN"];

impl LoggingConfig {
    pub fn is_default(&self) -> bool {
        *self == LoggingConfig::default()
    }

    /// The log group of `function`'s logs.
    pub fn group_of(&self, function: &str) -> String {
        self.log_group.clone().unwrap_or_else(|| format!("/aws/lambda/{function}"))
    }

    /// Lambda's rules: levels only with JSON, each a level Lambda knows; a log group of 1-512 of
    /// `[.-_/#A-Za-z0-9]`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let levels = [
            ("logging.application_level", &self.application_level, &APPLICATION_LOG_LEVELS[..]),
            ("logging.system_level", &self.system_level, &SYSTEM_LOG_LEVELS[..]),
        ];
        for (field, level, known) in levels {
            let Some(level) = level else { continue };
            if self.format != LogFormat::Json {
                return Err(ValidationError::new(
                    field,
                    "log levels apply to JSON logs only: set the log format to JSON, or leave the levels out",
                ));
            }
            if !known.contains(&level.as_str()) {
                return Err(ValidationError::new(
                    field,
                    format!("log level {level:?} is not one of {}", known.join(", ")),
                ));
            }
        }
        if let Some(group) = &self.log_group {
            let valid = (1..=512).contains(&group.len())
                && group.chars().all(|c| c.is_ascii_alphanumeric() || ".-_/#".contains(c));
            if !valid {
                return Err(ValidationError::new(
                    "logging.log_group",
                    format!("log group {group:?} is not valid: use 1-512 letters, digits and . - _ / #"),
                ));
            }
        }
        Ok(())
    }

    /// The variables Lambda sets for a JSON-logging runtime.
    pub fn environment(&self) -> Vec<(String, String)> {
        match self.format {
            LogFormat::Text => Vec::new(),
            LogFormat::Json => vec![
                ("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()),
                ("AWS_LAMBDA_LOG_LEVEL".into(), self.application_level.clone().unwrap_or_else(|| "INFO".into())),
            ],
        }
    }
}

/// Lambda's `DurableConfig`: the settings of a durable function's executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DurableConfig {
    /// Seconds an execution may run in all (every invocation and every wait), 1-31622400.
    pub execution_timeout_s: u32,
    /// Days a finished execution and its history are kept, 1-90.
    pub retention_days: u32,
}

/// What a create or update sets of a function's `DurableConfig`; absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DurableConfigPatch {
    /// Seconds an execution may run in all, 1-31622400 (a year). Required when a function is made durable.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 31622400))]
    pub execution_timeout_s: Option<u32>,
    /// Days a finished execution is kept, 1-90 (default 14).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 90))]
    pub retention_days: Option<u32>,
}

fn default_ephemeral_storage_mb() -> u32 {
    FunctionConfig::DEFAULT_EPHEMERAL_STORAGE_MB
}

impl FunctionConfig {
    pub const DEFAULT_MEMORY_MB: u32 = 128;
    pub const DEFAULT_TIMEOUT_S: u32 = 3;
    pub const DEFAULT_KEEP_ALIVE_S: u32 = 600;
    pub const DEFAULT_BASE_IMAGE: &'static str = "default";
    pub const DEFAULT_EPHEMERAL_STORAGE_MB: u32 = 512;

    /// The parsed runtime; a stored configuration always holds a valid one.
    pub fn runtime(&self) -> Result<Runtime, ValidationError> {
        Runtime::parse(&self.runtime)
    }

    /// Checks every rule; returns the first broken one.
    pub fn validate(&self, node: &NodeLimits) -> Result<(), ValidationError> {
        let runtime = Runtime::parse(&self.runtime)?;
        validate_handler(runtime, &self.handler)?;
        validate_memory(self.memory_mb, node)?;
        if !(1..=MAX_TIMEOUT_S).contains(&self.timeout_s) {
            return Err(ValidationError::new(
                "timeout_s",
                format!("timeout_s {} is not valid: it must be between 1 and {MAX_TIMEOUT_S} seconds", self.timeout_s),
            ));
        }
        validate_environment(&self.environment)?;
        if self.description.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(ValidationError::new(
                "description",
                format!(
                    "description is {} characters long; the limit is {MAX_DESCRIPTION_LEN}",
                    self.description.chars().count()
                ),
            ));
        }
        validate_layers(&self.layers)?;
        validate_base_image(&self.base_image)?;
        if self.network == Network::None && !node.network_isolation {
            return Err(ValidationError::new(
                "network",
                "network none needs the lean sandbox, which this node does not run: start the server as root with \
                 --sandbox lean (or auto), or use network host",
            ));
        }
        validate_gpu(self, node)?;
        validate_concurrency(self, node)?;
        if !(MIN_EPHEMERAL_STORAGE_MB..=MAX_EPHEMERAL_STORAGE_MB).contains(&self.ephemeral_storage_mb) {
            return Err(ValidationError::new(
                "ephemeral_storage_mb",
                format!(
                    "ephemeral_storage_mb {} is not valid: /tmp must be between {MIN_EPHEMERAL_STORAGE_MB} and \
                     {MAX_EPHEMERAL_STORAGE_MB} MB",
                    self.ephemeral_storage_mb
                ),
            ));
        }
        if let Some(durable) = &self.durable {
            validate_durable(durable, self.network)?;
        }
        self.logging.validate()?;
        if !(1..=MAX_KEEP_ALIVE_S).contains(&self.keep_alive_s) {
            return Err(ValidationError::new(
                "keep_alive_s",
                format!(
                    "keep_alive_s {} is not valid: it must be between 1 and {MAX_KEEP_ALIVE_S} seconds",
                    self.keep_alive_s
                ),
            ));
        }
        Ok(())
    }
}

fn validate_durable(durable: &DurableConfig, network: Network) -> Result<(), ValidationError> {
    if !(1..=MAX_DURABLE_EXECUTION_TIMEOUT_S).contains(&durable.execution_timeout_s) {
        return Err(ValidationError::new(
            "durable.execution_timeout_s",
            format!(
                "durable execution_timeout_s {} is not valid: it must be between 1 and \
                 {MAX_DURABLE_EXECUTION_TIMEOUT_S} seconds (a year)",
                durable.execution_timeout_s
            ),
        ));
    }
    if !(1..=MAX_DURABLE_RETENTION_DAYS).contains(&durable.retention_days) {
        return Err(ValidationError::new(
            "durable.retention_days",
            format!(
                "durable retention_days {} is not valid: it must be between 1 and {MAX_DURABLE_RETENTION_DAYS} days",
                durable.retention_days
            ),
        ));
    }
    if network == Network::None {
        return Err(ValidationError::new(
            "network",
            "a durable function needs network host: it checkpoints its progress through this server's API, \
             which network none cannot reach",
        ));
    }
    Ok(())
}

fn validate_handler(runtime: Runtime, handler: &str) -> Result<(), ValidationError> {
    if handler.len() > MAX_HANDLER_LEN {
        return Err(ValidationError::new(
            "handler",
            format!("handler is {} characters long; the limit is {MAX_HANDLER_LEN}", handler.len()),
        ));
    }
    if handler.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(
            "handler",
            format!("handler {handler:?} is not valid: it may not contain white space"),
        ));
    }
    if runtime.needs_handler() {
        let well_formed = handler.rsplit_once('.').is_some_and(|(module, func)| !module.is_empty() && !func.is_empty());
        if !well_formed {
            return Err(ValidationError::new(
                "handler",
                format!(
                    "handler {handler:?} is not valid for runtime {runtime}: give it as module.function, \
                     e.g. app.handler for a function `handler` in app.py / app.js"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_memory(memory_mb: u32, node: &NodeLimits) -> Result<(), ValidationError> {
    let max = node.max_memory_mb - node.max_memory_mb % MEMORY_STEP_MB;
    if memory_mb < MIN_MEMORY_MB || memory_mb > max || !memory_mb.is_multiple_of(MEMORY_STEP_MB) {
        return Err(ValidationError::new(
            "memory_mb",
            format!(
                "memory_mb {memory_mb} is not valid: it must be a multiple of {MEMORY_STEP_MB} between \
                 {MIN_MEMORY_MB} and {max} MB (this node's limit)"
            ),
        ));
    }
    Ok(())
}

fn validate_environment(env: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    let mut total = 0;
    for (key, value) in env {
        let mut chars = key.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(ValidationError::new(
                "environment",
                format!(
                    "environment variable name {key:?} is not valid: start with a letter, then letters, \
                     digits or '_'"
                ),
            ));
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(ValidationError::new(
                "environment",
                format!("environment variable {key} is reserved: the platform sets it; choose another name"),
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENV_BYTES {
        return Err(ValidationError::new(
            "environment",
            format!("environment variables take {total} bytes; the limit is {MAX_ENV_BYTES}"),
        ));
    }
    Ok(())
}

fn validate_layers(layers: &[String]) -> Result<(), ValidationError> {
    if layers.len() > MAX_LAYERS {
        return Err(ValidationError::new(
            "layers",
            format!("{} layers given; a function may use at most {MAX_LAYERS}", layers.len()),
        ));
    }
    for layer in layers {
        crate::layer::LayerRef::parse(layer)?;
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = layers.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(ValidationError::new("layers", format!("layer {dup:?} is listed twice")));
    }
    Ok(())
}

/// The rule for image names: 1-64 lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit.
pub fn validate_base_image(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let well_formed = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !well_formed {
        return Err(ValidationError::new(
            "base_image",
            format!(
                "base image name {name:?} is not valid: use 1-64 lowercase letters, digits, '.', '_' or '-', \
                 starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn validate_gpu(config: &FunctionConfig, node: &NodeLimits) -> Result<(), ValidationError> {
    if config.gpu_count > node.gpu_count {
        return Err(ValidationError::new(
            "gpu_count",
            format!("gpu_count {} exceeds the {} GPU(s) this node reports", config.gpu_count, node.gpu_count),
        ));
    }
    if node.gpu_memory_mb > 0 && u64::from(config.gpu_memory_mb) > node.gpu_memory_mb {
        return Err(ValidationError::new(
            "gpu_memory_mb",
            format!(
                "gpu_memory_mb {} exceeds the largest GPU this node reports ({} MB)",
                config.gpu_memory_mb, node.gpu_memory_mb
            ),
        ));
    }
    if !config.gpu_memory_mb.is_multiple_of(GPU_MEMORY_STEP_MB) {
        return Err(ValidationError::new(
            "gpu_memory_mb",
            format!(
                "gpu_memory_mb {} is not valid: it must be a multiple of {GPU_MEMORY_STEP_MB}",
                config.gpu_memory_mb
            ),
        ));
    }
    if let Some(p) = config.gpu_percentage {
        if !(1..=100).contains(&p) {
            return Err(ValidationError::new(
                "gpu_percentage",
                format!("gpu_percentage {p} is not valid: it must be between 1 and 100"),
            ));
        }
    }
    if config.gpu_count > 1 && (config.gpu_memory_mb != 0 || config.gpu_percentage.is_some_and(|p| p < 100)) {
        let field = if config.gpu_memory_mb != 0 { "gpu_memory_mb" } else { "gpu_percentage" };
        return Err(ValidationError::new(
            field,
            format!(
                "{field} limits a share of one GPU, and this function has {} whole GPUs: set gpu_count to 1 to \
                 share a GPU, or leave gpu_memory_mb and gpu_percentage out",
                config.gpu_count
            ),
        ));
    }
    if config.gpu_count == 0 {
        if config.gpu_memory_mb != 0 {
            return Err(ValidationError::new(
                "gpu_memory_mb",
                format!(
                    "gpu_memory_mb {} needs a GPU: set gpu_count to at least 1, or gpu_memory_mb to 0",
                    config.gpu_memory_mb
                ),
            ));
        }
        if let Some(p) = config.gpu_percentage {
            return Err(ValidationError::new(
                "gpu_percentage",
                format!("gpu_percentage {p} needs a GPU: set gpu_count to at least 1, or leave gpu_percentage out"),
            ));
        }
    }
    Ok(())
}

fn validate_concurrency(config: &FunctionConfig, node: &NodeLimits) -> Result<(), ValidationError> {
    if let Some(limit) = config.concurrency_limit {
        if limit == 0 || limit > node.max_concurrency {
            return Err(ValidationError::new(
                "concurrency_limit",
                format!(
                    "concurrency_limit {limit} is not valid: it must be between 1 and {} (to stop all \
                     invocations, block the function instead)",
                    node.max_concurrency
                ),
            ));
        }
    }
    let ceiling = config.concurrency_limit.unwrap_or(MAX_MIN_WARM).min(MAX_MIN_WARM);
    if config.min_warm > ceiling {
        return Err(ValidationError::new(
            "min_warm",
            format!(
                "min_warm {} is not valid: it must be at most {ceiling} (at most {MAX_MIN_WARM}, and never above \
                 concurrency_limit)",
                config.min_warm
            ),
        ));
    }
    Ok(())
}

/// A partial configuration: what a create or update request sets. Absent fields keep their value
/// (on create: their default).
///
/// Each field's own rules are in its schema; what depends on other fields or on the node (memory and GPUs up
/// to what it offers, a handler that fits the runtime, layers and images that exist) is checked when the patch
/// is applied ([`FunctionConfig::validate`]), and a request that breaks it gets 400 naming the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// `python3.8` … `python3.14`, `nodejs`, `nodejs18.x` … `nodejs24.x`, or `provided` (`provided.al2`,
    /// `provided.al2023`) for a custom `bootstrap`. Required when a function is created.
    pub runtime: Option<String>,
    /// `module.function` for python and node (e.g. `app.handler` for a function `handler` in app.py /
    /// app.js); ignored by `provided`. At most 128 bytes, no white space.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 128, pattern = r"^[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")
    )]
    pub handler: Option<String>,
    /// Memory in MB: a multiple of 64, at least 128, at most this node's limit (`limits.max_memory_mb` of
    /// `GET /v1/node`).
    #[cfg_attr(feature = "openapi", schema(minimum = 128, multiple_of = 64))]
    pub memory_mb: Option<u32>,
    /// Seconds an invocation may run, 1-900.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 900))]
    pub timeout_s: Option<u32>,
    /// Environment variables. A name starts with a letter, then letters, digits or `_`, and is not one the
    /// platform sets (`AWS_REGION`, `_HANDLER`, …); names and values take at most 4 KB in all.
    pub environment: Option<BTreeMap<String, String>>,
    /// At most 256 characters.
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub description: Option<String>,
    /// Layer versions of the account's own, as `name:version` or a layer version ARN: at most 5, each once.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_items = 5,
            pattern = r"^(?:arn:[^:]*:lambda:[^:]*:[0-9]{12}:layer:)?[A-Za-z0-9_-]{1,64}:0*[1-9][0-9]{0,18}$"
        )
    )]
    pub layers: Option<Vec<String>>,
    /// The root file system: `default` (the host's) or an image imported on this node (`GET /v1/images`).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub base_image: Option<String>,
    /// GPUs, at most as many as this node reports (`limits.gpu_count` of `GET /v1/node`).
    pub gpu_count: Option<u32>,
    /// GPU memory in MB, a multiple of 256; more than 0 needs a `gpu_count`.
    #[cfg_attr(feature = "openapi", schema(multiple_of = 256))]
    pub gpu_memory_mb: Option<u32>,
    /// Share of a GPU, 1-100 (needs a `gpu_count`); `0` clears it.
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub gpu_percentage: Option<u32>,
    /// Most concurrent instances, at most this node's `limits.max_concurrency`; `0` clears the limit.
    pub concurrency_limit: Option<u32>,
    /// Instances kept warm even without traffic: at most 100, and never above `concurrency_limit`.
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub min_warm: Option<u32>,
    /// Seconds an idle instance stays warm before it is evicted, 1-86400.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86400))]
    pub keep_alive_s: Option<u32>,
    pub network: Option<Network>,
    /// The size of `/tmp` in MB, 512-10240 (default 512): on disk, not counted against `memory_mb`.
    #[cfg_attr(feature = "openapi", schema(minimum = 512, maximum = 10240))]
    pub ephemeral_storage_mb: Option<u32>,
    /// Makes the function durable (only when it is created, as on Lambda), or changes a durable function's
    /// settings.
    pub durable: Option<DurableConfigPatch>,
    /// How its runtime writes logs (replaces the current setting whole).
    pub logging: Option<LoggingConfig>,
}

impl DurableConfigPatch {
    /// A new durable function's settings: the execution timeout is required, the retention defaults to 14 days.
    fn into_new(self) -> Result<DurableConfig, ValidationError> {
        let Some(execution_timeout_s) = self.execution_timeout_s else {
            return Err(ValidationError::new(
                "durable.execution_timeout_s",
                "a durable function needs execution_timeout_s: the seconds an execution may run in all, \
                 1-31622400",
            ));
        };
        Ok(DurableConfig {
            execution_timeout_s,
            retention_days: self.retention_days.unwrap_or(DEFAULT_DURABLE_RETENTION_DAYS),
        })
    }
}

impl ConfigPatch {
    /// Builds a new function's configuration: the patch over the defaults. `runtime` is required.
    pub fn into_new_config(self) -> Result<FunctionConfig, ValidationError> {
        let Some(runtime) = self.runtime.clone() else {
            return Err(ValidationError::new(
                "runtime",
                "runtime is required: e.g. python3.12, nodejs20.x or provided",
            ));
        };
        let base = FunctionConfig {
            runtime,
            handler: String::new(),
            memory_mb: FunctionConfig::DEFAULT_MEMORY_MB,
            timeout_s: FunctionConfig::DEFAULT_TIMEOUT_S,
            environment: BTreeMap::new(),
            description: String::new(),
            layers: Vec::new(),
            base_image: FunctionConfig::DEFAULT_BASE_IMAGE.to_string(),
            gpu_count: 0,
            gpu_memory_mb: 0,
            gpu_percentage: None,
            concurrency_limit: None,
            min_warm: 0,
            keep_alive_s: FunctionConfig::DEFAULT_KEEP_ALIVE_S,
            network: Network::Host,
            ephemeral_storage_mb: FunctionConfig::DEFAULT_EPHEMERAL_STORAGE_MB,
            durable: None,
            logging: LoggingConfig::default(),
        };
        let durable = self.durable;
        let mut config = self.apply(&base);
        if let Some(patch) = durable {
            config.durable = Some(patch.into_new()?);
        }
        if config.handler.is_empty() && Runtime::parse(&config.runtime) == Ok(Runtime::Provided) {
            config.handler = "bootstrap".to_string();
        }
        if config.handler.is_empty() && Runtime::parse(&config.runtime).is_ok() {
            return Err(ValidationError::new(
                "handler",
                format!(
                    "handler is required for runtime {}: give it as module.function, e.g. app.handler",
                    config.runtime
                ),
            ));
        }
        Ok(config)
    }

    /// The configuration that results from applying this patch to `base`.
    pub fn apply(self, base: &FunctionConfig) -> FunctionConfig {
        let zero_is_none = |v: u32| (v != 0).then_some(v);
        FunctionConfig {
            runtime: self.runtime.unwrap_or_else(|| base.runtime.clone()),
            handler: self.handler.unwrap_or_else(|| base.handler.clone()),
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            timeout_s: self.timeout_s.unwrap_or(base.timeout_s),
            environment: self.environment.unwrap_or_else(|| base.environment.clone()),
            description: self.description.unwrap_or_else(|| base.description.clone()),
            layers: self.layers.unwrap_or_else(|| base.layers.clone()),
            base_image: self.base_image.unwrap_or_else(|| base.base_image.clone()),
            gpu_count: self.gpu_count.unwrap_or(base.gpu_count),
            gpu_memory_mb: self.gpu_memory_mb.unwrap_or(base.gpu_memory_mb),
            gpu_percentage: self.gpu_percentage.map_or(base.gpu_percentage, zero_is_none),
            concurrency_limit: self.concurrency_limit.map_or(base.concurrency_limit, zero_is_none),
            min_warm: self.min_warm.unwrap_or(base.min_warm),
            keep_alive_s: self.keep_alive_s.unwrap_or(base.keep_alive_s),
            network: self.network.unwrap_or(base.network),
            ephemeral_storage_mb: self.ephemeral_storage_mb.unwrap_or(base.ephemeral_storage_mb),
            // Only a durable function's settings change here: `check_update` refuses making one durable later.
            durable: match (base.durable, self.durable) {
                (Some(old), Some(patch)) => Some(DurableConfig {
                    execution_timeout_s: patch.execution_timeout_s.unwrap_or(old.execution_timeout_s),
                    retention_days: patch.retention_days.unwrap_or(old.retention_days),
                }),
                (old, _) => old,
            },
            logging: self.logging.unwrap_or_else(|| base.logging.clone()),
        }
    }

    /// The rules an update must keep that depend on what the function was: a function is made durable only
    /// when it is created (Lambda's rule: its invocations would change meaning under its callers).
    pub fn check_update(&self, base: &FunctionConfig) -> Result<(), ValidationError> {
        if self.durable.is_some() && base.durable.is_none() {
            return Err(ValidationError::new(
                "durable",
                "a function is made durable only when it is created: create a new function with durable settings",
            ));
        }
        Ok(())
    }

    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeLimits {
        NodeLimits {
            max_memory_mb: 4096,
            gpu_count: 2,
            max_concurrency: 1000,
            network_isolation: true,
            gpu_memory_mb: 8192,
        }
    }

    fn valid() -> FunctionConfig {
        ConfigPatch { runtime: Some("python3.12".into()), handler: Some("app.handler".into()), ..Default::default() }
            .into_new_config()
            .unwrap()
    }

    fn field_of(c: &FunctionConfig) -> String {
        c.validate(&node()).unwrap_err().field
    }

    #[test]
    fn defaults_are_valid() {
        let c = valid();
        assert_eq!(c.memory_mb, 128);
        assert_eq!(c.timeout_s, 3);
        assert_eq!(c.base_image, "default");
        assert_eq!(c.ephemeral_storage_mb, 512);
        c.validate(&node()).unwrap();
    }

    #[test]
    fn a_durable_function_is_made_durable_when_created_and_only_then() {
        let durable = |timeout: Option<u32>, days: Option<u32>| ConfigPatch {
            runtime: Some("python3.12".into()),
            handler: Some("app.handler".into()),
            durable: Some(DurableConfigPatch { execution_timeout_s: timeout, retention_days: days }),
            ..Default::default()
        };
        let c = durable(Some(300), None).into_new_config().unwrap();
        assert_eq!(c.durable, Some(DurableConfig { execution_timeout_s: 300, retention_days: 14 }));
        c.validate(&node()).unwrap();
        assert_eq!(durable(None, Some(7)).into_new_config().unwrap_err().field, "durable.execution_timeout_s");
        for (timeout, days, field) in [
            (0, 7, Some("durable.execution_timeout_s")),
            (MAX_DURABLE_EXECUTION_TIMEOUT_S, 1, None),
            (MAX_DURABLE_EXECUTION_TIMEOUT_S + 1, 1, Some("durable.execution_timeout_s")),
            (60, 0, Some("durable.retention_days")),
            (60, 90, None),
            (60, 91, Some("durable.retention_days")),
        ] {
            let c = durable(Some(timeout), Some(days)).into_new_config().unwrap();
            assert_eq!(c.validate(&node()).err().map(|e| e.field), field.map(str::to_string), "{timeout} s, {days} d");
        }
        // It checkpoints through the server's API: a function without a network could never do that.
        let isolated = FunctionConfig { network: Network::None, ..c.clone() };
        assert_eq!(field_of(&isolated), "network");

        // An update changes a durable function's settings field by field ...
        let patch = ConfigPatch {
            durable: Some(DurableConfigPatch { retention_days: Some(30), ..Default::default() }),
            ..Default::default()
        };
        patch.check_update(&c).unwrap();
        assert_eq!(
            patch.clone().apply(&c).durable,
            Some(DurableConfig { execution_timeout_s: 300, retention_days: 30 })
        );
        // ... leaves it alone when it names nothing durable ...
        let memory = ConfigPatch { memory_mb: Some(256), ..Default::default() };
        assert_eq!(memory.apply(&c).durable, c.durable);
        // ... and never makes a plain function durable.
        assert_eq!(patch.check_update(&valid()).unwrap_err().field, "durable");
        assert_eq!(patch.apply(&valid()).durable, None);

        // A configuration stored before durable functions reads as a plain function, and a plain one is stored
        // without the field.
        let plain = serde_json::to_value(valid()).unwrap();
        assert!(plain.get("durable").is_none(), "{plain}");
        assert_eq!(serde_json::from_value::<FunctionConfig>(plain).unwrap().durable, None);
    }

    #[test]
    fn ephemeral_storage_is_lambdas_range() {
        for (mb, ok) in [(511, false), (512, true), (10_240, true), (10_241, false), (0, false)] {
            let c = FunctionConfig { ephemeral_storage_mb: mb, ..valid() };
            assert_eq!(c.validate(&node()).is_ok(), ok, "{mb} MB");
            if !ok {
                assert_eq!(field_of(&c), "ephemeral_storage_mb");
            }
        }
        // A configuration stored before the field existed reads as the default.
        let mut old = serde_json::to_value(valid()).unwrap();
        old.as_object_mut().unwrap().remove("ephemeral_storage_mb");
        let read: FunctionConfig = serde_json::from_value(old).unwrap();
        assert_eq!(read.ephemeral_storage_mb, 512);
        let patched = ConfigPatch { ephemeral_storage_mb: Some(2048), ..Default::default() }.apply(&valid());
        assert_eq!(patched.ephemeral_storage_mb, 2048);
    }

    #[test]
    fn runtime_is_required_and_provided_needs_no_handler() {
        assert_eq!(ConfigPatch::default().into_new_config().unwrap_err().field, "runtime");
        let c = ConfigPatch { runtime: Some("provided".into()), ..Default::default() }.into_new_config().unwrap();
        assert_eq!(c.handler, "bootstrap");
        let e = ConfigPatch { runtime: Some("nodejs".into()), ..Default::default() }.into_new_config().unwrap_err();
        assert_eq!(e.field, "handler");
    }

    #[test]
    fn memory_rules() {
        for (mb, ok) in
            [(128, true), (192, true), (4096, true), (64, false), (100, false), (130, false), (4160, false), (0, false)]
        {
            let c = FunctionConfig { memory_mb: mb, ..valid() };
            assert_eq!(c.validate(&node()).is_ok(), ok, "{mb}");
            if !ok {
                let e = c.validate(&node()).unwrap_err();
                assert_eq!(e.field, "memory_mb");
                assert!(e.message.contains(&mb.to_string()) && e.message.contains("4096"), "{}", e.message);
            }
        }
    }

    #[test]
    fn memory_limit_rounds_node_limit_down_to_step() {
        let odd = NodeLimits { max_memory_mb: 1000, ..node() };
        let c = FunctionConfig { memory_mb: 960, ..valid() };
        c.validate(&odd).unwrap();
        let c = FunctionConfig { memory_mb: 1024, ..valid() };
        assert!(c.validate(&odd).unwrap_err().message.contains("960"));
    }

    #[test]
    fn timeout_rules() {
        for (t, ok) in [(1, true), (900, true), (0, false), (901, false)] {
            let c = FunctionConfig { timeout_s: t, ..valid() };
            assert_eq!(c.validate(&node()).is_ok(), ok, "{t}");
        }
        assert_eq!(field_of(&FunctionConfig { timeout_s: 0, ..valid() }), "timeout_s");
    }

    #[test]
    fn handler_rules() {
        for bad in ["app", ".handler", "app.", "has space.h", &format!("{}.h", "a".repeat(130))] {
            let c = FunctionConfig { handler: bad.to_string(), ..valid() };
            assert_eq!(field_of(&c), "handler", "{bad}");
        }
        let c = FunctionConfig { handler: "pkg.mod.handler".into(), ..valid() };
        c.validate(&node()).unwrap();
    }

    #[test]
    fn environment_rules() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        FunctionConfig { environment: env("DB_URL", "x"), ..valid() }.validate(&node()).unwrap();
        for (k, v, needle) in [
            ("1ABC", "x", "start with a letter"),
            ("A-B", "x", "not valid"),
            ("AWS_REGION", "x", "reserved"),
            ("BIG", &"x".repeat(5000), "limit is 4096"),
        ] {
            let e = FunctionConfig { environment: env(k, v), ..valid() }.validate(&node()).unwrap_err();
            assert_eq!(e.field, "environment");
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }

    #[test]
    fn network_none_needs_an_isolating_sandbox() {
        let none = FunctionConfig { network: Network::None, ..valid() };
        none.validate(&node()).unwrap();
        let e = none.validate(&NodeLimits { network_isolation: false, ..node() }).unwrap_err();
        assert_eq!(e.field, "network");
        assert!(e.message.contains("lean sandbox"), "{}", e.message);
        // Records stored before the field existed read as host.
        let mut stored = serde_json::to_value(valid()).unwrap();
        stored.as_object_mut().unwrap().remove("network");
        assert_eq!(serde_json::from_value::<FunctionConfig>(stored).unwrap().network, Network::Host);
        let patch: ConfigPatch = serde_json::from_value(serde_json::json!({"network": "none"})).unwrap();
        assert_eq!(patch.apply(&valid()).network, Network::None);
        assert!(serde_json::from_value::<ConfigPatch>(serde_json::json!({"network": "bridge"})).is_err());
    }

    #[test]
    fn description_and_base_image_rules() {
        assert_eq!(field_of(&FunctionConfig { description: "d".repeat(257), ..valid() }), "description");
        FunctionConfig { description: "d".repeat(256), ..valid() }.validate(&node()).unwrap();
        for bad in ["", "Upper", "-lead", "sp ace", &"a".repeat(65)] {
            assert_eq!(field_of(&FunctionConfig { base_image: bad.into(), ..valid() }), "base_image", "{bad}");
        }
        FunctionConfig { base_image: "python-3.12_slim".into(), ..valid() }.validate(&node()).unwrap();
    }

    #[test]
    fn layer_rules() {
        let layers = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FunctionConfig {
            layers: layers(&["numpy:3", "arn:aws:lambda:us-east-1:123456789012:layer:pandas:1"]),
            ..valid()
        }
        .validate(&node())
        .unwrap();
        for bad in [&["numpy"][..], &["numpy:x"], &[":1"], &["a:1", "a:1"], &["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]]
        {
            assert_eq!(field_of(&FunctionConfig { layers: layers(bad), ..valid() }), "layers", "{bad:?}");
        }
    }

    #[test]
    fn gpu_rules() {
        let gpu =
            |count, mem, pct| FunctionConfig { gpu_count: count, gpu_memory_mb: mem, gpu_percentage: pct, ..valid() };
        gpu(1, 512, Some(50)).validate(&node()).unwrap();
        gpu(2, 0, None).validate(&node()).unwrap();
        assert_eq!(field_of(&gpu(3, 0, None)), "gpu_count");
        assert_eq!(field_of(&gpu(1, 300, None)), "gpu_memory_mb");
        assert_eq!(field_of(&gpu(1, 256, Some(0))), "gpu_percentage");
        assert_eq!(field_of(&gpu(1, 256, Some(101))), "gpu_percentage");
        assert_eq!(field_of(&gpu(0, 256, None)), "gpu_memory_mb");
        assert_eq!(field_of(&gpu(0, 0, Some(10))), "gpu_percentage");
        gpu(2, 0, Some(100)).validate(&node()).unwrap();
        gpu(1, 8192, None).validate(&node()).unwrap();
        let e = gpu(1, 8448, None).validate(&node()).unwrap_err();
        assert_eq!(e.field, "gpu_memory_mb");
        assert!(e.message.contains("largest GPU this node reports (8192 MB)"), "{}", e.message);
        gpu(1, 8448, None).validate(&NodeLimits { gpu_memory_mb: 0, ..node() }).unwrap();
        assert_eq!(field_of(&gpu(2, 512, None)), "gpu_memory_mb", "a share is of one GPU");
        assert_eq!(field_of(&gpu(2, 0, Some(50))), "gpu_percentage", "a share is of one GPU");
        let e = gpu(1, 0, None).validate(&NodeLimits { gpu_count: 0, ..node() }).unwrap_err();
        assert!(e.message.contains("0 GPU"), "{}", e.message);
    }

    #[test]
    fn concurrency_and_warm_rules() {
        let c = |limit, warm| FunctionConfig { concurrency_limit: limit, min_warm: warm, ..valid() };
        c(Some(10), 10).validate(&node()).unwrap();
        c(None, 100).validate(&node()).unwrap();
        assert_eq!(field_of(&c(Some(0), 0)), "concurrency_limit");
        assert_eq!(field_of(&c(Some(1001), 0)), "concurrency_limit");
        assert_eq!(field_of(&c(Some(5), 6)), "min_warm");
        assert_eq!(field_of(&c(None, 101)), "min_warm");
    }

    #[test]
    fn keep_alive_rules() {
        assert_eq!(field_of(&FunctionConfig { keep_alive_s: 0, ..valid() }), "keep_alive_s");
        assert_eq!(field_of(&FunctionConfig { keep_alive_s: 86_401, ..valid() }), "keep_alive_s");
    }

    #[test]
    fn patch_keeps_absent_fields_and_zero_clears_optionals() {
        let base = FunctionConfig { concurrency_limit: Some(5), gpu_percentage: Some(10), ..valid() };
        let patched =
            ConfigPatch { memory_mb: Some(256), concurrency_limit: Some(0), ..Default::default() }.apply(&base);
        assert_eq!(patched.memory_mb, 256);
        assert_eq!(patched.handler, base.handler);
        assert_eq!(patched.concurrency_limit, None);
        assert_eq!(patched.gpu_percentage, Some(10));
        assert!(ConfigPatch::default().is_empty());
    }

    #[test]
    fn patch_refuses_unknown_fields() {
        let e = serde_json::from_str::<ConfigPatch>(r#"{"memory": 256}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `memory`"), "{e}");
    }

    #[test]
    fn logging_levels_need_json_and_known_names_and_the_group_a_valid_name() {
        let json = |app: Option<&str>| LoggingConfig {
            format: LogFormat::Json,
            application_level: app.map(str::to_string),
            ..Default::default()
        };
        let with = |logging: LoggingConfig| FunctionConfig { logging, ..valid() };
        assert!(with(json(Some("DEBUG"))).validate(&node()).is_ok());
        assert_eq!(field_of(&with(json(Some("VERBOSE")))), "logging.application_level");
        let text_with_level = LoggingConfig { format: LogFormat::Text, ..json(Some("INFO")) };
        assert_eq!(field_of(&with(text_with_level)), "logging.application_level");
        let system = LoggingConfig { system_level: Some("ERROR".into()), ..json(None) };
        assert_eq!(field_of(&with(system)), "logging.system_level", "ERROR is not a system level");
        let group = |g: &str| LoggingConfig { log_group: Some(g.into()), ..Default::default() };
        assert!(with(group("/aws/lambda/custom#1")).validate(&node()).is_ok());
        assert_eq!(field_of(&with(group("has space"))), "logging.log_group");
        assert_eq!(group("/g").group_of("f"), "/g");
        assert_eq!(LoggingConfig::default().group_of("f"), "/aws/lambda/f");
        assert_eq!(
            json(None).environment(),
            [("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()), ("AWS_LAMBDA_LOG_LEVEL".into(), "INFO".into())]
        );
        assert!(LoggingConfig::default().environment().is_empty());
        // Stored as before for a function that never set it; read back when set.
        let stored = serde_json::to_value(valid()).unwrap();
        assert!(stored.get("logging").is_none());
        let set: FunctionConfig =
            serde_json::from_value(serde_json::to_value(with(json(Some("WARN")))).unwrap()).unwrap();
        assert_eq!(set.logging, json(Some("WARN")));
    }
}
