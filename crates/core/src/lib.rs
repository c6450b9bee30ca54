//! stoke's domain rules as pure code: no I/O, no clock, no randomness of its own.
//!
//! Everything here is a function of plain values so it can be unit-tested exhaustively: names and
//! references, function configuration and its validation against the node's limits, the lifecycle
//! transition table of the function manager, alias routing, and timestamp formatting.

pub mod alias;
pub mod archive;
pub mod config;
pub mod cost;
pub mod destination;
pub mod durable;
pub mod error;
pub mod event;
pub mod gateway;
pub mod gpu;
pub mod hex;
pub mod history;
pub mod json;
pub mod keepalive;
pub mod layer;
pub mod lifecycle;
pub mod limits;
pub mod logfilter;
pub mod memory;
pub mod names;
pub mod num;
pub mod percent;
pub mod placement;
pub mod pool;
pub mod reference;
pub mod runtime;
pub mod schedule;
pub mod stats;
pub mod sync;
pub mod time;
pub mod tune;
pub mod validation;

pub use alias::{AliasRouting, RoutingError};
pub use config::{ConfigPatch, FunctionConfig, Network, NodeLimits};
pub use layer::LayerRef;
pub use lifecycle::{Admission, IllegalTransition, LifecycleContext, LifecycleEvent, LifecycleState};
pub use names::{AccountId, AliasName, FunctionName, LayerName};
pub use reference::{FunctionRef, Qualifier, RefError};
pub use runtime::Runtime;
pub use validation::ValidationError;
