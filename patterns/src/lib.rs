//! Log templates ("patterns"): which lines are the same message with different values.
//!
//! A Drain-style miner (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth
//! Tree", ICWS 2017), written for this project: variables are masked by regular expressions,
//! lines are routed through a fixed-depth tree by token count and leading tokens, and a line
//! joins the most similar template of its leaf when enough positions agree; the positions that
//! differ become `<*>`. `query` exposes it as the SQL window function `log_pattern(message)` and
//! as `query patterns`.
//!
//! | stage | file |
//! |---|---|
//! | variables masked before mining | `mask.rs` |
//! | the tree, the clusters and their templates | `drain.rs` |
//! | templates with ids kept from batch to batch | `dictionary.rs` |
//! | grouping accuracy, the metric it is judged by | `accuracy.rs` |
//! | the labelled samples it is judged on | `loghub.rs` |
//!
//! Bounded for hostile input: at most [`MAX_TOKENS`] tokens of a line take part (the rest is one
//! `<*>`), at most `max_clusters` templates and [`MAX_LEAF_CLUSTERS`] per leaf; a line that would
//! need more is not clustered and its pattern is its masked text.
#![warn(missing_docs, unreachable_pub)]

mod accuracy;
mod dictionary;
mod drain;
pub mod loghub;
mod mask;

pub use accuracy::grouping_accuracy;
pub use dictionary::{Dictionary, PatternId};
pub use drain::{ClusterId, MAX_LEAF_CLUSTERS, MAX_TOKENS, Miner, Settings, final_patterns};
pub use mask::Masks;

/// How a variable position is written in a template (by the masks and by the miner).
pub const WILDCARD: &str = "<*>";
