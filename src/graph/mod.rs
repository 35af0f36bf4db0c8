//! The function as a graph: element-wise nodes over scalar inputs, shared
//! where the text repeats a subexpression, so that a node used twice has two
//! paths to the output whose contributions are summed (the total-derivative
//! chain rule). Knows nothing of wgpu; the text language lowers into it.

mod eval;
mod lower;

use std::collections::HashMap;

use crate::ops::{BinaryOp, UnaryOp};

pub use eval::Workspace;
pub use lower::{InputOrder, functions};

/// Index of a node in its graph; operands always come before their users.
pub type NodeId = usize;

/// One node of an element-wise graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node {
    /// The i-th input variable.
    Input(usize),
    /// A constant, exactly representable in f32 (the GPU's precision).
    Constant(f64),
    /// An element-wise unary operation.
    Unary(UnaryOp, NodeId),
    /// An element-wise binary operation.
    Binary(BinaryOp, NodeId, NodeId),
}

/// Hash key for sharing identical nodes; constants by their bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Input(usize),
    Constant(u64),
    Unary(&'static str, u32, NodeId),
    Binary(BinaryOp, NodeId, NodeId),
}

impl Key {
    fn of(node: &Node) -> Key {
        match *node {
            Node::Input(i) => Key::Input(i),
            Node::Constant(c) => Key::Constant(c.to_bits()),
            Node::Unary(op, a) => Key::Unary(op.name(), op.parameter().map_or(0, f32::to_bits), a),
            Node::Binary(op, a, b) => Key::Binary(op, a, b),
        }
    }
}

/// A scalar function of named scalar inputs, as a graph of element-wise nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    nodes: Vec<Node>,
    inputs: Vec<String>,
    output: NodeId,
    /// For each node, the inputs it depends on, ascending: the structure of
    /// its tangent, which is zero (and never computed) for the others.
    deps: Vec<Vec<usize>>,
}

/// Builds a graph bottom-up, sharing identical nodes.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
    inputs: Vec<String>,
    shared: HashMap<Key, NodeId>,
}

impl GraphBuilder {
    /// An empty builder with the given input names, in order.
    pub fn with_inputs(inputs: Vec<String>) -> Self {
        GraphBuilder {
            inputs,
            ..GraphBuilder::default()
        }
    }

    /// Adds `node` (or finds the identical one already added).
    pub fn add(&mut self, node: Node) -> NodeId {
        let key = Key::of(&node);
        if let Some(&id) = self.shared.get(&key) {
            return id;
        }
        self.nodes.push(node);
        let id = self.nodes.len() - 1;
        self.shared.insert(key, id);
        id
    }

    /// The input called `name`, added to the inputs if new.
    pub fn input(&mut self, name: &str) -> NodeId {
        let index = match self.inputs.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.inputs.push(name.to_string());
                self.inputs.len() - 1
            }
        };
        self.add(Node::Input(index))
    }

    /// A constant, rounded to f32.
    pub fn constant(&mut self, value: f64) -> NodeId {
        self.add(Node::Constant(f64::from(value as f32)))
    }

    /// The input names so far.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The node behind `id`.
    pub fn node(&self, id: NodeId) -> Node {
        self.nodes[id]
    }

    /// Finishes with `output` as the function's value. Nodes that do not
    /// reach the output are dropped.
    pub fn finish(self, output: NodeId) -> Graph {
        Graph::pruned(self.nodes, self.inputs, output)
    }
}

impl Graph {
    /// Keeps only the nodes `output` depends on, renumbered in order.
    fn pruned(nodes: Vec<Node>, inputs: Vec<String>, output: NodeId) -> Graph {
        let mut live = vec![false; nodes.len()];
        live[output] = true;
        for id in (0..=output).rev() {
            if !live[id] {
                continue;
            }
            match nodes[id] {
                Node::Unary(_, a) => live[a] = true,
                Node::Binary(_, a, b) => {
                    live[a] = true;
                    live[b] = true;
                }
                Node::Input(_) | Node::Constant(_) => {}
            }
        }
        let mut renumber = vec![usize::MAX; nodes.len()];
        let mut kept = Vec::new();
        for (id, node) in nodes.into_iter().enumerate().take(output + 1) {
            if !live[id] {
                continue;
            }
            renumber[id] = kept.len();
            kept.push(match node {
                Node::Unary(op, a) => Node::Unary(op, renumber[a]),
                Node::Binary(op, a, b) => Node::Binary(op, renumber[a], renumber[b]),
                other => other,
            });
        }
        let output = renumber[output];
        let deps = kept
            .iter()
            .scan(Vec::<Vec<usize>>::new(), |done, node| {
                let mut d: Vec<usize> = match *node {
                    Node::Input(i) => vec![i],
                    Node::Constant(_) => vec![],
                    Node::Unary(_, a) => done[a].clone(),
                    Node::Binary(_, a, b) => done[a].iter().chain(&done[b]).copied().collect(),
                };
                d.sort_unstable();
                d.dedup();
                done.push(d.clone());
                Some(d)
            })
            .collect();
        Graph {
            nodes: kept,
            inputs,
            output,
            deps,
        }
    }

    /// The nodes, operands before users.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The input names, in the order their columns appear in derivatives.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The node whose value is the function's.
    pub fn output(&self) -> NodeId {
        self.output
    }

    /// The inputs node `id` depends on, ascending.
    pub fn deps(&self, id: NodeId) -> &[usize] {
        &self.deps[id]
    }

    /// How many users each node has (the output counts one more): a node
    /// with two or more is where paths fan out.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for node in &self.nodes {
            match *node {
                Node::Unary(_, a) => uses[a] += 1,
                Node::Binary(_, a, b) => {
                    uses[a] += 1;
                    uses[b] += 1;
                }
                Node::Input(_) | Node::Constant(_) => {}
            }
        }
        uses[self.output] += 1;
        uses
    }
}
