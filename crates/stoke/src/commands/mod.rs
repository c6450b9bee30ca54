//! One module per sub-command.

pub mod account;
pub mod alias;
pub mod completions;
pub mod durable;
pub mod events;
pub mod function;
pub mod invoke;
pub mod layer;
pub mod nodes;
pub mod schedule;
pub mod server;
pub mod trigger;
pub mod tune;
pub mod workflow;
