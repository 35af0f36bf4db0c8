//! Plans for Jacobians of vector programs: the vector chain rule
//! dy/dx = (dy/dg)(dg/dx) over each node's local Jacobian, keeping its
//! structure (a unary op is Diagonal, `W @ x` is Shared, `sum` a Shared row).
//!
//! Along a path with no branching the local Jacobians form a chain whose
//! product is ordered by dynamic programming over structure-aware costs (the
//! matrix-chain problem); forward (right to left) and reverse (left to right)
//! accumulation are two of the orders it weighs. Where paths fan out or meet,
//! the Jacobian of the shared node is computed once and the paths' products
//! are summed (the total-derivative chain rule).

use crate::error::{Error, Result};
use crate::jacobian::{Cost, JacShape, Structure, sum_shape};
use crate::program::{NodeId, Op, Program};
use crate::schedule::chain::{ChainOrder, chain_order, forward_order, reverse_order};

/// The most terms a node's Jacobian may carry unsummed; beyond it the sum
/// is formed, so that the number of chains cannot grow without bound.
const MAX_DISTRIBUTED: usize = 8;

/// One factor of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// The local Jacobian of `node` with respect to its operand in `slot` (0 or 1).
    Local {
        /// The node.
        node: NodeId,
        /// Which operand.
        slot: usize,
    },
    /// The Jacobian of `node` with respect to the input, computed by an
    /// earlier step because several paths share it.
    Shared(NodeId),
    /// The tangents of a JVP (n x 1 per sample) or the cotangents of a VJP
    /// (1 x m per sample).
    Seed,
}

/// A product of factors, written left to right, with the order chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// Leftmost first: J_L ... J_1.
    pub factors: Vec<Factor>,
    /// The order the dynamic programme chose (None for an empty chain,
    /// which is the identity).
    pub order: Option<ChainOrder>,
    /// Pure forward and pure reverse accumulation, for comparison.
    pub forward: Option<ChainOrder>,
    /// See `forward`.
    pub reverse: Option<ChainOrder>,
}

/// The Jacobian of one node as a sum of products.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The node whose Jacobian (w.r.t. the input) this is.
    pub node: NodeId,
    /// Summed.
    pub terms: Vec<Term>,
    /// Its structure and size.
    pub shape: JacShape,
}

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The full Jacobian, B x m x n.
    Jacobian,
    /// J v for given v (B x n).
    Jvp,
    /// u^T J for given u (B x m).
    Vjp,
}

/// A complete plan: shared steps in order, then the output's step.
#[derive(Debug, Clone, PartialEq)]
pub struct JacobianPlan {
    /// The input variable differentiated against.
    pub wrt: usize,
    /// Batch size the costs were computed for.
    pub batch: usize,
    /// Shared Jacobians, computed first, in order.
    pub shared: Vec<Step>,
    /// The output's Jacobian (or JVP / VJP).
    pub output: Step,
    /// Total cost of the chosen orders.
    pub cost: Cost,
    /// Total cost had every chain been accumulated forward, and reverse.
    pub forward_cost: Cost,
    /// See `forward_cost`.
    pub reverse_cost: Cost,
}

/// The shape of node `node`'s local Jacobian w.r.t. its operand in `slot`
/// (from [`Program::local_jacobian`], the one place it is defined).
pub fn local_shape(program: &Program, node: NodeId, slot: usize) -> Result<JacShape> {
    Ok(program.local_jacobian(node, slot)?.shape)
}

struct Planner<'a> {
    program: &'a Program,
    batch: usize,
    wrt_size: usize,
    /// Jacobian of each node w.r.t. the input as unexpanded terms.
    terms: Vec<Option<Vec<Vec<Factor>>>>,
    /// Shape of each computed shared Jacobian.
    shared_shapes: Vec<Option<JacShape>>,
    shared: Vec<Step>,
    uses: Vec<usize>,
}

impl Planner<'_> {
    fn factor_shape(&self, factor: Factor, seed: JacShape) -> Result<JacShape> {
        match factor {
            Factor::Local { node, slot } => local_shape(self.program, node, slot),
            Factor::Shared(node) => self.shared_shapes[node]
                .ok_or_else(|| Error::Shape(format!("node {node} was not computed first"))),
            Factor::Seed => Ok(seed),
        }
    }

    fn term(&self, factors: Vec<Factor>, seed: JacShape) -> Result<Term> {
        if factors.is_empty() {
            return Ok(Term {
                factors,
                order: None,
                forward: None,
                reverse: None,
            });
        }
        let shapes: Vec<JacShape> = factors
            .iter()
            .map(|&f| self.factor_shape(f, seed))
            .collect::<Result<_>>()?;
        Ok(Term {
            order: Some(chain_order(&shapes, self.batch)?),
            forward: Some(forward_order(&shapes, self.batch)?),
            reverse: Some(reverse_order(&shapes, self.batch)?),
            factors,
        })
    }

    /// Shape and cost of a sum of terms.
    fn step_shape(&self, terms: &[Term]) -> Result<(JacShape, Cost)> {
        let identity = JacShape {
            structure: Structure::Identity,
            rows: self.wrt_size,
            cols: self.wrt_size,
        };
        let mut total: Option<JacShape> = None;
        let mut cost = Cost::default();
        for term in terms {
            let shape = term.order.as_ref().map_or(identity, |o| o.result);
            if let Some(o) = &term.order {
                cost += o.cost;
            }
            total = Some(match total {
                None => shape,
                Some(t) => {
                    let (s, c) = sum_shape(t, shape, self.batch)?;
                    cost += c;
                    s
                }
            });
        }
        Ok((total.unwrap_or(identity), cost))
    }

    /// The chains that stand for node `o`'s Jacobian inside longer chains.
    /// One chain when `o` has one user and one path. Where paths meet at a
    /// node with one user, a sum that would be Dense is not formed: each
    /// term continues as its own chain (products distribute over the sum),
    /// so a structured sum such as softmax's diag(s) - s s^T (a diagonal
    /// plus a rank-one product) reaches its neighbours as those two pieces,
    /// never as an n x n matrix. Otherwise (several users, or a sum whose
    /// structure survives) the Jacobian is computed once as a shared step.
    fn chains_of(&mut self, o: NodeId) -> Result<Vec<Vec<Factor>>> {
        let terms = self.terms[o]
            .clone()
            .ok_or_else(|| Error::Shape(format!("node {o} does not depend on the input")))?;
        // The input itself (an empty chain, the identity) is never worth a step.
        if terms.len() == 1 && (self.uses[o] <= 1 || terms[0].is_empty()) {
            return Ok(terms);
        }
        let seed = self.seed_placeholder();
        let planned: Vec<Term> = terms
            .iter()
            .cloned()
            .map(|f| self.term(f, seed))
            .collect::<Result<_>>()?;
        let (shape, _) = self.step_shape(&planned)?;
        if self.uses[o] <= 1
            && shape.structure == Structure::Dense
            && terms.len() <= MAX_DISTRIBUTED
        {
            return Ok(terms);
        }
        if self.shared_shapes[o].is_none() {
            self.shared_shapes[o] = Some(shape);
            self.shared.push(Step {
                node: o,
                terms: planned,
                shape,
            });
        }
        Ok(vec![vec![Factor::Shared(o)]])
    }

    fn seed_placeholder(&self) -> JacShape {
        JacShape {
            structure: Structure::Dense,
            rows: self.wrt_size,
            cols: 1,
        }
    }
}

/// Plans `request` for the output of `program` w.r.t. input variable `wrt`
/// over a batch of `batch` samples.
pub fn plan(program: &Program, wrt: usize, request: Request, batch: usize) -> Result<JacobianPlan> {
    let variable = program
        .variables
        .get(wrt)
        .ok_or_else(|| Error::InvalidArgument(format!("no variable {wrt}")))?;
    let Some(wrt_node) = program.nodes.iter().position(|op| *op == Op::Variable(wrt)) else {
        // The output ignores this input: its Jacobian is zero.
        let (rows, cols) = match request {
            Request::Jacobian => (program.shapes[program.output].size(), variable.shape.size()),
            Request::Jvp => (program.shapes[program.output].size(), 1),
            Request::Vjp => (1, variable.shape.size()),
        };
        return Ok(JacobianPlan {
            wrt,
            batch,
            shared: Vec::new(),
            output: Step {
                node: program.output,
                terms: Vec::new(),
                shape: JacShape {
                    structure: Structure::Dense,
                    rows,
                    cols,
                },
            },
            cost: Cost::default(),
            forward_cost: Cost::default(),
            reverse_cost: Cost::default(),
        });
    };
    let mut plan = plan_node(program, wrt_node, request, batch)?;
    plan.wrt = wrt;
    Ok(plan)
}

/// Plans `request` w.r.t. the value of node `wrt_node` (a variable, or an
/// intermediate value such as `W @ x`, whose cotangent gives W's gradient).
/// The plan's `wrt` is `usize::MAX` unless the caller sets the variable.
pub fn plan_node(
    program: &Program,
    wrt_node: usize,
    request: Request,
    batch: usize,
) -> Result<JacobianPlan> {
    let nodes = &program.nodes;
    if wrt_node >= nodes.len() {
        return Err(Error::InvalidArgument(format!("no node {wrt_node}")));
    }
    let wrt = usize::MAX;
    let wrt_size = program.shapes[wrt_node].size();
    let depends: Vec<bool> = {
        let mut d = vec![false; nodes.len()];
        for (id, op) in nodes.iter().enumerate() {
            // Below the node differentiated against, nothing depends on it.
            if id < wrt_node {
                continue;
            }
            d[id] = id == wrt_node || op.operands().any(|o| d[o]);
            // Matrices are parameters: a product depends on x through its vector only.
            if let Some((_, v, _)) = op.matrix_product() {
                d[id] = id == wrt_node || d[v];
            }
        }
        d
    };
    let mut uses = vec![0usize; nodes.len()];
    for (id, op) in nodes.iter().enumerate() {
        if !depends[id] {
            continue;
        }
        for (slot, o) in op.operands().enumerate() {
            if depends[o] && !(op.matrix_product().is_some() && slot == 0) {
                uses[o] += 1;
            }
        }
    }
    uses[program.output] += 1;
    let mut planner = Planner {
        program,
        batch,
        wrt_size,
        terms: vec![None; nodes.len()],
        shared_shapes: vec![None; nodes.len()],
        shared: Vec::new(),
        uses,
    };
    planner.terms[wrt_node] = Some(vec![vec![]]);
    for id in 0..nodes.len() {
        if !depends[id] || id == wrt_node {
            continue;
        }
        let mut terms = Vec::new();
        for (slot, o) in nodes[id].operands().enumerate() {
            if !depends[o] || (nodes[id].matrix_product().is_some() && slot == 0) {
                continue;
            }
            for chain in planner.chains_of(o)? {
                // A shift by the maximum is the identity under
                // differentiation: it adds no factor, so that the node,
                // read by both log-softmax and its logsumexp, is never
                // worth a step of its own.
                let mut factors = match nodes[id] {
                    Op::ShiftMax(_) => vec![],
                    _ => vec![Factor::Local { node: id, slot }],
                };
                factors.extend(chain);
                terms.push(factors);
            }
        }
        planner.terms[id] = Some(terms);
    }
    let output_size = program.shapes[program.output].size();
    let output_terms = planner.terms[program.output].clone().unwrap_or_default();
    let seed = match request {
        Request::Jacobian => planner.seed_placeholder(),
        Request::Jvp => JacShape {
            structure: Structure::Dense,
            rows: wrt_size,
            cols: 1,
        },
        Request::Vjp => JacShape {
            structure: Structure::Dense,
            rows: 1,
            cols: output_size,
        },
    };
    let mut terms = Vec::new();
    for mut factors in output_terms {
        match request {
            Request::Jacobian => {}
            Request::Jvp => factors.push(Factor::Seed),
            Request::Vjp => factors.insert(0, Factor::Seed),
        }
        terms.push(planner.term(factors, seed)?);
    }
    let shape = if terms.is_empty() {
        // The output does not depend on the input: the answer is zero.
        let (rows, cols) = match request {
            Request::Jacobian => (output_size, wrt_size),
            Request::Jvp => (output_size, 1),
            Request::Vjp => (1, wrt_size),
        };
        JacShape {
            structure: Structure::Dense,
            rows,
            cols,
        }
    } else {
        planner.step_shape(&terms)?.0
    };
    let mut cost = Cost::default();
    let mut forward_cost = Cost::default();
    let mut reverse_cost = Cost::default();
    for step in planner.shared.iter().chain(std::iter::once(&Step {
        node: program.output,
        terms: terms.clone(),
        shape,
    })) {
        for term in &step.terms {
            if let (Some(o), Some(f), Some(r)) = (&term.order, &term.forward, &term.reverse) {
                cost += o.cost;
                forward_cost += f.cost;
                reverse_cost += r.cost;
            }
        }
    }
    Ok(JacobianPlan {
        wrt,
        batch,
        shared: planner.shared,
        output: Step {
            node: program.output,
            terms,
            shape,
        },
        cost,
        forward_cost,
        reverse_cost,
    })
}
