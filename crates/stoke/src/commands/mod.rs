//! One module per sub-command.

pub mod account;
pub mod alias;
pub mod bench;
pub mod bench_image;
pub mod bench_layers;
pub mod bench_load;
pub mod bench_many;
pub mod bench_prewarm;
pub mod bench_tune;
pub mod completions;
pub mod function;
pub mod invoke;
pub mod layer;
pub mod server;
pub mod trigger;
pub mod tune;
pub mod workflow;
