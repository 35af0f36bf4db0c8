//! Where to put the brackets in a chain of Jacobians `J_L ... J_2 J_1`: the
//! matrix-chain problem over the structure-aware costs of
//! [`crate::jacobian::product_shape`] (Griewank & Naumann, "Accumulating
//! Jacobians as chained sparse matrix products", 2003). Forward mode is one
//! bracketing (right to left), reverse mode another (left to right); when the
//! sizes alternate narrow and wide, both can be several times dearer than
//! the best one.
//!
//! The dynamic programme over sub-chains is exact for this cost model, not a
//! heuristic, for two reasons. First, the structure of a sub-chain's product
//! does not depend on its bracketing: identities drop out, a product of only
//! diagonals is diagonal, of only shared matrices shared, and anything else
//! dense, which is associative. So a sub-chain has one result shape, and the
//! cost of the last product over a split depends on the split alone. Second,
//! flops with ties broken by bytes is a lexicographic order, which addition
//! preserves, so an optimal bracketing is made of optimal sub-bracketings.

use crate::error::{Error, Result};
use crate::jacobian::{Cost, JacShape, Jacobian, product_shape};

/// A bracketing of a chain: leaves are indices into the factor list.
#[derive(Debug, Clone, PartialEq)]
pub enum Bracketing {
    /// One factor.
    Leaf(usize),
    /// The product of two bracketed sub-chains, left times right.
    Product(Box<Bracketing>, Box<Bracketing>),
}

/// A bracketing with what it costs and what it yields.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainOrder {
    /// Where the brackets go.
    pub bracketing: Bracketing,
    /// The total of all its products.
    pub cost: Cost,
    /// The structure and size of the whole product.
    pub result: JacShape,
}

/// Brute force enumerates Catalan(L - 1) bracketings: 58786 at this length.
pub const BRUTE_FORCE_MAX_FACTORS: usize = 12;

impl Bracketing {
    /// `left right`.
    pub fn product(left: Bracketing, right: Bracketing) -> Self {
        Bracketing::Product(Box::new(left), Box::new(right))
    }

    /// The bracketing as text, e.g. `(J3 (J2 J1))`, with `names[i]` for leaf
    /// `i` (`#i` where `names` has no such entry).
    pub fn render(&self, names: &[String]) -> String {
        match self {
            Bracketing::Leaf(i) => names.get(*i).cloned().unwrap_or_else(|| format!("#{i}")),
            Bracketing::Product(left, right) => {
                format!("({} {})", left.render(names), right.render(names))
            }
        }
    }

    /// The leaves, left to right.
    pub fn leaves(&self) -> Vec<usize> {
        match self {
            Bracketing::Leaf(i) => vec![*i],
            Bracketing::Product(left, right) => {
                let mut leaves = left.leaves();
                leaves.extend(right.leaves());
                leaves
            }
        }
    }

    /// The result and total cost of multiplying `factors` in this order.
    pub fn cost(&self, factors: &[JacShape], batch: usize) -> Result<(JacShape, Cost)> {
        match self {
            Bracketing::Leaf(i) => {
                let shape = *factors.get(*i).ok_or_else(|| missing(*i, factors.len()))?;
                shape.validate()?;
                Ok((shape, Cost::default()))
            }
            Bracketing::Product(left, right) => {
                let (left_shape, left_cost) = left.cost(factors, batch)?;
                let (right_shape, right_cost) = right.cost(factors, batch)?;
                let (shape, cost) = product_shape(left_shape, right_shape, batch)?;
                Ok((shape, left_cost + right_cost + cost))
            }
        }
    }

    /// The product of `factors` computed in this order.
    pub fn evaluate(&self, factors: &[Jacobian], batch: usize) -> Result<Jacobian> {
        match self {
            Bracketing::Leaf(i) => {
                let factor = factors.get(*i).ok_or_else(|| missing(*i, factors.len()))?;
                factor.validate(batch)?;
                factor.shape().validate()?;
                Ok(factor.clone())
            }
            Bracketing::Product(left, right) => left
                .evaluate(factors, batch)?
                .product(&right.evaluate(factors, batch)?, batch),
        }
    }
}

fn missing(index: usize, len: usize) -> Error {
    Error::InvalidArgument(format!(
        "the bracketing names factor {index} but the chain has {len} factors"
    ))
}

/// Checks that the chain is not empty, that every factor is well formed and
/// that neighbours fit, naming the factors as J_L ... J_1.
fn check_chain(factors: &[JacShape]) -> Result<()> {
    if factors.is_empty() {
        return Err(Error::Shape(
            "an empty chain has no product; pass at least one factor".into(),
        ));
    }
    let count = factors.len();
    for (i, factor) in factors.iter().enumerate() {
        factor.validate()?;
        match factors.get(i + 1) {
            Some(next) if factor.cols != next.rows => {
                return Err(Error::Shape(format!(
                    "J{} ({factor}) has {} columns but J{} ({next}) has {} rows",
                    count - i,
                    factor.cols,
                    count - i - 1,
                    next.rows
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn order(bracketing: Bracketing, factors: &[JacShape], batch: usize) -> Result<ChainOrder> {
    let (result, cost) = bracketing.cost(factors, batch)?;
    Ok(ChainOrder {
        bracketing,
        cost,
        result,
    })
}

/// The cheapest bracketing by dynamic programming over sub-chains, O(L^3):
/// fewest flops, ties broken by fewest bytes, then by the leftmost split.
/// `factors` are written left to right as in J_L ... J_2 J_1 (`factors[0]`
/// is the leftmost, J_L).
pub fn chain_order(factors: &[JacShape], batch: usize) -> Result<ChainOrder> {
    check_chain(factors)?;
    let count = factors.len();
    // best[i * count + j]: the cheapest product of factors i..=j, its shape
    // and where its last product splits it (i..=split, split+1..=j).
    #[derive(Clone, Copy)]
    struct Cell {
        cost: Cost,
        shape: JacShape,
        split: usize,
    }
    let mut best: Vec<Cell> = (0..count * count)
        .map(|index| Cell {
            cost: Cost::default(),
            shape: factors[index % count],
            split: index / count,
        })
        .collect();
    for len in 2..=count {
        for i in 0..=count - len {
            let j = i + len - 1;
            let mut chosen: Option<Cell> = None;
            for split in i..j {
                let left = best[i * count + split];
                let right = best[(split + 1) * count + j];
                let (shape, cost) = product_shape(left.shape, right.shape, batch)?;
                let cost = left.cost + right.cost + cost;
                if chosen.is_none_or(|c| cost.cheaper_than(&c.cost)) {
                    chosen = Some(Cell { cost, shape, split });
                }
            }
            if let Some(cell) = chosen {
                best[i * count + j] = cell;
            }
        }
    }
    fn rebuild(best: &[Cell], count: usize, i: usize, j: usize) -> Bracketing {
        if i == j {
            return Bracketing::Leaf(i);
        }
        let split = best[i * count + j].split;
        Bracketing::product(
            rebuild(best, count, i, split),
            rebuild(best, count, split + 1, j),
        )
    }
    let top = best[count - 1];
    Ok(ChainOrder {
        bracketing: rebuild(&best, count, 0, count - 1),
        cost: top.cost,
        result: top.shape,
    })
}

/// Forward mode, J_L (... (J_2 J_1)): right to left, each product carrying
/// the Jacobian with respect to the chain's input one factor further.
pub fn forward_order(factors: &[JacShape], batch: usize) -> Result<ChainOrder> {
    check_chain(factors)?;
    let last = factors.len() - 1;
    let bracketing = (0..last).rev().fold(Bracketing::Leaf(last), |acc, i| {
        Bracketing::product(Bracketing::Leaf(i), acc)
    });
    order(bracketing, factors, batch)
}

/// Reverse mode, ((J_L J_{L-1}) ...) J_1: left to right, each product
/// carrying the Jacobian of the chain's output one factor further back.
pub fn reverse_order(factors: &[JacShape], batch: usize) -> Result<ChainOrder> {
    check_chain(factors)?;
    let bracketing = (1..factors.len()).fold(Bracketing::Leaf(0), |acc, i| {
        Bracketing::product(acc, Bracketing::Leaf(i))
    });
    order(bracketing, factors, batch)
}

/// Every bracketing of the chain (Catalan(L - 1) of them, at most
/// [`BRUTE_FORCE_MAX_FACTORS`] factors), each with its cost and result.
pub fn all_orders(factors: &[JacShape], batch: usize) -> Result<Vec<ChainOrder>> {
    check_chain(factors)?;
    if factors.len() > BRUTE_FORCE_MAX_FACTORS {
        return Err(Error::InvalidArgument(format!(
            "enumerating every bracketing of {} factors is too slow; at most {BRUTE_FORCE_MAX_FACTORS}",
            factors.len()
        )));
    }
    fn trees(i: usize, j: usize) -> Vec<Bracketing> {
        if i == j {
            return vec![Bracketing::Leaf(i)];
        }
        let mut all = Vec::new();
        for split in i..j {
            let rights = trees(split + 1, j);
            for left in trees(i, split) {
                for right in &rights {
                    all.push(Bracketing::product(left.clone(), right.clone()));
                }
            }
        }
        all
    }
    trees(0, factors.len() - 1)
        .into_iter()
        .map(|bracketing| order(bracketing, factors, batch))
        .collect()
}

/// The cheapest of every bracketing, by the same order as [`chain_order`]:
/// the test oracle for it.
pub fn brute_force_order(factors: &[JacShape], batch: usize) -> Result<ChainOrder> {
    let mut best: Option<ChainOrder> = None;
    for candidate in all_orders(factors, batch)? {
        if best
            .as_ref()
            .is_none_or(|b| candidate.cost.cheaper_than(&b.cost))
        {
            best = Some(candidate);
        }
    }
    best.ok_or_else(|| Error::Shape("an empty chain has no product".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jacobian::Structure;
    use crate::testing::rng;
    use rand::Rng;
    use rand::rngs::StdRng;

    /// A random chain J_L ... J_1, built from J_1 outwards so that square
    /// structures can take the size of their input.
    fn random_chain(rng: &mut StdRng, len: usize) -> Vec<JacShape> {
        let structures = [
            Structure::Identity,
            Structure::Diagonal,
            Structure::Shared,
            Structure::Dense,
        ];
        let mut cols = rng.random_range(1..=6);
        let mut chain = Vec::with_capacity(len);
        for _ in 0..len {
            let structure = structures[rng.random_range(0..structures.len())];
            let rows = match structure {
                Structure::Identity | Structure::Diagonal => cols,
                _ => rng.random_range(1..=6),
            };
            chain.push(JacShape {
                structure,
                rows,
                cols,
            });
            cols = rows;
        }
        chain.reverse();
        chain
    }

    fn names(len: usize) -> Vec<String> {
        (0..len).map(|i| format!("J{}", len - i)).collect()
    }

    #[test]
    fn the_result_structure_does_not_depend_on_the_bracketing() {
        let mut rng = rng("structure_independent_of_bracketing");
        for _ in 0..300 {
            let len = rng.random_range(1..=7);
            let chain = random_chain(&mut rng, len);
            let batch = rng.random_range(1..=8);
            let orders = all_orders(&chain, batch).unwrap();
            let first = orders[0].result;
            for order in &orders {
                assert_eq!(order.result, first, "{chain:?}");
            }
        }
    }

    #[test]
    fn dp_matches_brute_force_on_small_chains() {
        let mut rng = rng("dp_matches_brute_force");
        for _ in 0..200 {
            let len = rng.random_range(1..=6);
            let chain = random_chain(&mut rng, len);
            let batch = rng.random_range(1..=64);
            let dp = chain_order(&chain, batch).unwrap();
            let brute = brute_force_order(&chain, batch).unwrap();
            assert_eq!(dp.cost, brute.cost, "{chain:?}");
            assert_eq!(dp.bracketing.cost(&chain, batch).unwrap().1, dp.cost);
            assert_eq!(dp.bracketing.leaves(), (0..len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn forward_and_reverse_render_as_their_names_say() {
        let chain = [
            JacShape::dense(2, 3),
            JacShape::dense(3, 4),
            JacShape::dense(4, 5),
        ];
        let names = names(3);
        let forward = forward_order(&chain, 1).unwrap();
        let reverse = reverse_order(&chain, 1).unwrap();
        assert_eq!(forward.bracketing.render(&names), "(J3 (J2 J1))");
        assert_eq!(reverse.bracketing.render(&names), "((J3 J2) J1)");
        assert_eq!(forward.result, JacShape::dense(2, 5));
        assert_eq!(Bracketing::Leaf(7).render(&names), "#7");
    }

    #[test]
    fn one_factor_is_itself_at_no_cost_and_an_empty_chain_is_an_error() {
        let chain = [JacShape::shared(3, 4)];
        for order in [chain_order, forward_order, reverse_order, brute_force_order] {
            let one = order(&chain, 5).unwrap();
            assert_eq!(one.bracketing, Bracketing::Leaf(0));
            assert_eq!(one.cost, Cost::default());
            assert_eq!(one.result, chain[0]);
            assert!(matches!(order(&[], 5), Err(Error::Shape(_))));
        }
    }

    #[test]
    fn mismatched_or_malformed_chains_are_shape_errors() {
        let chain = [JacShape::dense(2, 3), JacShape::dense(4, 5)];
        let bad_identity = [JacShape {
            structure: Structure::Identity,
            rows: 2,
            cols: 3,
        }];
        for order in [chain_order, forward_order, reverse_order, brute_force_order] {
            let message = order(&chain, 1).unwrap_err().to_string();
            assert!(
                message.contains("J2") && message.contains("J1"),
                "{message}"
            );
            assert!(matches!(order(&bad_identity, 1), Err(Error::Shape(_))));
        }
        let long = vec![JacShape::identity(2); BRUTE_FORCE_MAX_FACTORS + 1];
        assert!(brute_force_order(&long, 1).is_err());
        assert!(chain_order(&long, 1).is_ok());
        let stray = Bracketing::product(Bracketing::Leaf(0), Bracketing::Leaf(9));
        assert!(stray.cost(&chain, 1).is_err());
        assert!(stray.evaluate(&[], 1).is_err());
    }
}
