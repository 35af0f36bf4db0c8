//! Running a Jacobian plan on either backend: each backend supplies the
//! algebra (its local Jacobians, products and sums), this module walks the
//! plan: shared steps first, then the output, each chain multiplied in the
//! bracketing the scheduler chose.

use crate::error::{Error, Result};
use crate::schedule::chain::Bracketing;
use crate::schedule::vector::{Factor, JacobianPlan, Step, Term};

/// What a backend provides to run a plan.
pub trait JacobianAlgebra {
    /// A (possibly lazy) structured Jacobian.
    type Value: Clone;
    /// The local Jacobian of `node` w.r.t. its operand in `slot`.
    fn local(&mut self, node: usize, slot: usize) -> Result<Self::Value>;
    /// The seed of a JVP or VJP.
    fn seed(&mut self) -> Result<Self::Value>;
    /// I_n.
    fn identity(&mut self, n: usize) -> Self::Value;
    /// Zero, rows x cols per sample.
    fn zero(&mut self, rows: usize, cols: usize) -> Result<Self::Value>;
    /// left * right.
    fn product(&mut self, left: Self::Value, right: Self::Value) -> Result<Self::Value>;
    /// a + b.
    fn sum(&mut self, a: Self::Value, b: Self::Value) -> Result<Self::Value>;
    /// Finishes any pending work in `value`.
    fn finish(&mut self, value: Self::Value) -> Result<Self::Value>;
}

fn factor_value<A: JacobianAlgebra>(
    algebra: &mut A,
    factor: Factor,
    shared: &[(usize, A::Value)],
) -> Result<A::Value> {
    match factor {
        Factor::Local { node, slot } => algebra.local(node, slot),
        Factor::Shared(node) => shared
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Shape(format!("shared Jacobian of node {node} missing"))),
        Factor::Seed => algebra.seed(),
    }
}

fn evaluate<A: JacobianAlgebra>(
    algebra: &mut A,
    tree: &Bracketing,
    factors: &[A::Value],
) -> Result<A::Value> {
    match tree {
        Bracketing::Leaf(i) => factors
            .get(*i)
            .cloned()
            .ok_or_else(|| Error::Shape(format!("factor {i} missing"))),
        Bracketing::Product(left, right) => {
            let l = evaluate(algebra, left, factors)?;
            let r = evaluate(algebra, right, factors)?;
            algebra.product(l, r)
        }
    }
}

fn term_value<A: JacobianAlgebra>(
    algebra: &mut A,
    term: &Term,
    shared: &[(usize, A::Value)],
    identity_size: usize,
) -> Result<A::Value> {
    let Some(order) = &term.order else {
        return Ok(algebra.identity(identity_size));
    };
    let factors: Vec<A::Value> = term
        .factors
        .iter()
        .map(|&f| factor_value(algebra, f, shared))
        .collect::<Result<_>>()?;
    evaluate(algebra, &order.bracketing, &factors)
}

fn step_value<A: JacobianAlgebra>(
    algebra: &mut A,
    step: &Step,
    shared: &[(usize, A::Value)],
    identity_size: usize,
) -> Result<A::Value> {
    let mut total: Option<A::Value> = None;
    for term in &step.terms {
        let value = term_value(algebra, term, shared, identity_size)?;
        total = Some(match total {
            None => value,
            Some(t) => {
                let t = algebra.finish(t)?;
                let value = algebra.finish(value)?;
                algebra.sum(t, value)?
            }
        });
    }
    match total {
        Some(value) => algebra.finish(value),
        None => algebra.zero(step.shape.rows, step.shape.cols),
    }
}

/// Runs `plan`: the output's Jacobian (or JVP / VJP) as the algebra's value.
pub fn run_plan<A: JacobianAlgebra>(
    plan: &JacobianPlan,
    algebra: &mut A,
    input_size: usize,
) -> Result<A::Value> {
    let mut shared: Vec<(usize, A::Value)> = Vec::with_capacity(plan.shared.len());
    for step in &plan.shared {
        let value = step_value(algebra, step, &shared, input_size)?;
        shared.push((step.node, value));
    }
    step_value(algebra, &plan.output, &shared, input_size)
}

/// Reverse accumulation over a whole program: the cotangent of every node in
/// `needed`, from `seed` at the output (1 x m per sample) down, each a row
/// times the local Jacobians of the node's users, summed across users (the
/// total-derivative chain rule). Nothing larger than a row per sample is ever
/// formed, whatever the structure of the local Jacobians. The matrix operand
/// of `W @ v` gets no cotangent here: its gradient is the outer product of
/// the product's cotangent with v.
pub fn reverse_cotangents<A: JacobianAlgebra>(
    program: &crate::program::Program,
    algebra: &mut A,
    seed: A::Value,
    needed: &[bool],
) -> Result<Vec<Option<A::Value>>> {
    let count = program.nodes.len();
    let mut cotangents: Vec<Option<A::Value>> = vec![None; count];
    if program.output >= count {
        return Err(Error::Shape("the output node is missing".into()));
    }
    cotangents[program.output] = Some(seed);
    for id in (0..count).rev() {
        let Some(cotangent) = cotangents[id].clone() else {
            continue;
        };
        let cotangent = algebra.finish(cotangent)?;
        cotangents[id] = Some(cotangent.clone());
        let operands: Vec<usize> = program.nodes[id].operands().collect();
        for (slot, &o) in operands.iter().enumerate() {
            if !needed.get(o).copied().unwrap_or(false)
                || (program.nodes[id].matrix_product().is_some() && slot == 0)
            {
                continue;
            }
            let local = algebra.local(id, slot)?;
            let contribution = algebra.product(cotangent.clone(), local)?;
            let contribution = algebra.finish(contribution)?;
            cotangents[o] = Some(match cotangents[o].take() {
                None => contribution,
                Some(existing) => algebra.sum(existing, contribution)?,
            });
        }
    }
    Ok(cotangents)
}
