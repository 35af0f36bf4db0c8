//! Turning a graph and a request into a plan. For element-wise graphs the
//! plan is a list of regions, each becoming one generated kernel that
//! carries value and derivatives together (forward mode, one tangent per
//! input), so that inside a region every intermediate stays in registers and
//! fan-out sums cost nothing extra. `Fusion::Fused` makes the whole graph one
//! region; `Fusion::Unfused` makes every operation its own region, writing
//! each intermediate to memory: the op-by-op plan fusion is measured against.

pub mod chain;
pub mod vector;

use crate::graph::{Graph, NodeId};
use crate::program::Op;

/// How to cut an element-wise graph into kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fusion {
    /// One kernel for the whole graph.
    #[default]
    Fused,
    /// One kernel per operation, intermediates through memory.
    Unfused,
}

/// Nodes computed by one kernel, and those of them whose value and tangents
/// it writes to memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Operations computed here, operands before users.
    pub nodes: Vec<NodeId>,
    /// Nodes written out: read by a later region, or the graph's output.
    pub outputs: Vec<NodeId>,
}

/// The kernels of an element-wise graph, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementwisePlan {
    /// The regions; the last one writes the graph's output.
    pub regions: Vec<Region>,
}

/// Whether a graph's node is computed (rather than read or inlined).
pub(crate) fn is_operation(node: &Op) -> bool {
    matches!(node, Op::Unary(..) | Op::Binary(..))
}

/// The plan for `graph` under `fusion`. Inputs and constants belong to no
/// region: every kernel reads inputs directly and inlines constants.
pub fn elementwise(graph: &Graph, fusion: Fusion) -> ElementwisePlan {
    let operations: Vec<NodeId> = (0..graph.nodes().len())
        .filter(|&id| is_operation(&graph.nodes()[id]))
        .collect();
    let output = graph.output();
    let regions = match fusion {
        Fusion::Fused => vec![Region {
            nodes: operations,
            outputs: vec![output],
        }],
        Fusion::Unfused if operations.is_empty() => vec![Region {
            nodes: vec![],
            outputs: vec![output],
        }],
        Fusion::Unfused => operations
            .into_iter()
            .map(|id| Region {
                nodes: vec![id],
                outputs: vec![id],
            })
            .collect(),
    };
    ElementwisePlan { regions }
}
