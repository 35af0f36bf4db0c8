//! Structured Jacobians against their dense f64 views, and the matrix-chain
//! order against brute force: every product and sum of two structures, random
//! chains in every order, the DP's optimality, W5's alternating shape, and
//! shape mismatches as errors. Random cases print their seed; replay one with
//! CHAINRULE_SEED=<seed>.

use chainrule::Error;
use chainrule::jacobian::{JacShape, Jacobian, Structure, product_shape, sum_shape};
use chainrule::schedule::chain::{
    all_orders, brute_force_order, chain_order, forward_order, reverse_order,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STRUCTURES: [Structure; 4] = [
    Structure::Identity,
    Structure::Diagonal,
    Structure::Shared,
    Structure::Dense,
];

fn rng(test: &str) -> StdRng {
    let seed = std::env::var("CHAINRULE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (replay with CHAINRULE_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

fn square(structure: Structure) -> bool {
    matches!(structure, Structure::Identity | Structure::Diagonal)
}

fn values(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A random Jacobian; `rows` must equal `cols` for identities and diagonals.
fn random_jacobian(
    rng: &mut StdRng,
    structure: Structure,
    rows: usize,
    cols: usize,
    batch: usize,
) -> Jacobian {
    match structure {
        Structure::Identity => Jacobian::Identity { n: rows },
        Structure::Diagonal => Jacobian::diagonal(batch, rows, values(rng, batch * rows)).unwrap(),
        Structure::Shared => Jacobian::shared(rows, cols, values(rng, rows * cols)).unwrap(),
        Structure::Dense => {
            Jacobian::dense(batch, rows, cols, values(rng, batch * rows * cols)).unwrap()
        }
        // Stored as the matrix of zeros and ones it stands for.
        Structure::Selection => Jacobian::shared(
            rows,
            cols,
            (0..rows * cols)
                .map(|e| f64::from(u8::from(e % cols == (e / cols) % cols)))
                .collect(),
        )
        .unwrap(),
    }
}

/// The batched product of dense views, the textbook way.
fn dense_product(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for s in 0..batch {
        for i in 0..m {
            for j in 0..n {
                out[(s * m + i) * n + j] = (0..k)
                    .map(|l| a[(s * m + i) * k + l] * b[(s * k + l) * n + j])
                    .sum();
            }
        }
    }
    out
}

fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let diff: f64 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

/// The product rules as the specification states them, written out again.
fn expected_product(
    l: Structure,
    r: Structure,
    b: f64,
    m: f64,
    k: f64,
    n: f64,
) -> (Structure, f64) {
    use Structure::*;
    match (l, r) {
        (Identity, x) => (x, 0.0),
        (x, Identity) => (x, 0.0),
        (Diagonal, Diagonal) => (Diagonal, b * n),
        (Diagonal, _) | (_, Diagonal) => (Dense, b * m * n),
        (Shared, Shared) => (Shared, 2.0 * m * k * n),
        _ => (Dense, 2.0 * b * m * k * n),
    }
}

fn expected_sum(a: Structure, b: Structure) -> Structure {
    use Structure::*;
    match (a, b) {
        (Identity | Diagonal, Identity | Diagonal) => Diagonal,
        (Shared | Identity, Shared | Identity) => Shared,
        _ => Dense,
    }
}

fn elements(shape: JacShape, batch: usize) -> f64 {
    let (b, m, n) = (batch as f64, shape.rows as f64, shape.cols as f64);
    match shape.structure {
        Structure::Identity => 0.0,
        Structure::Diagonal => b * n,
        Structure::Shared => m * n,
        Structure::Dense => b * m * n,
        Structure::Selection => m,
    }
}

/// A selection's products are gathers (no flops) that keep the other
/// factor's storage, two selections compose into one, and in a sum a
/// selection is the shared matrix it stands for.
#[test]
fn selection_products_are_gathers_and_sums_form_the_matrix() {
    use chainrule::jacobian::{product_shape, sum_shape};
    let selection = |rows, cols| JacShape {
        structure: Structure::Selection,
        rows,
        cols,
    };
    let batch = 7;
    for (other, result) in [
        (Structure::Identity, Structure::Selection),
        (Structure::Selection, Structure::Selection),
        (Structure::Shared, Structure::Shared),
        (Structure::Diagonal, Structure::Dense),
        (Structure::Dense, Structure::Dense),
    ] {
        let square = matches!(other, Structure::Identity | Structure::Diagonal);
        let right = JacShape {
            structure: other,
            rows: 5,
            cols: if square { 5 } else { 3 },
        };
        let (shape, cost) = product_shape(selection(2, 5), right, batch).unwrap();
        assert_eq!(
            (shape.structure, shape.rows, shape.cols),
            (result, 2, right.cols)
        );
        assert_eq!(cost.flops, 0.0, "{other:?}");
        let left = JacShape {
            structure: other,
            rows: if square { 2 } else { 4 },
            cols: 2,
        };
        let (shape, cost) = product_shape(left, selection(2, 5), batch).unwrap();
        assert_eq!(
            (shape.structure, shape.rows, shape.cols),
            (result, left.rows, 5)
        );
        assert_eq!(cost.flops, 0.0, "{other:?}");
    }
    let (shape, cost) = sum_shape(selection(4, 4), selection(4, 4), batch).unwrap();
    assert_eq!(shape.structure, Structure::Shared);
    assert_eq!(cost.flops, 16.0);
    let dense = JacShape::dense(4, 4);
    assert_eq!(
        sum_shape(selection(4, 4), dense, batch)
            .unwrap()
            .0
            .structure,
        Structure::Dense
    );
}

#[test]
fn every_product_pair_matches_the_dense_product_and_the_rules() {
    let mut rng = rng("product_pairs");
    for &ls in &STRUCTURES {
        for &rs in &STRUCTURES {
            for _ in 0..20 {
                let batch = rng.random_range(1..=5);
                let k = rng.random_range(1..=7);
                let m = if square(ls) {
                    k
                } else {
                    rng.random_range(1..=7)
                };
                let n = if square(rs) {
                    k
                } else {
                    rng.random_range(1..=7)
                };
                let left = random_jacobian(&mut rng, ls, m, k, batch);
                let right = random_jacobian(&mut rng, rs, k, n, batch);
                let product = left.product(&right, batch).unwrap();
                let (shape, cost) = product_shape(left.shape(), right.shape(), batch).unwrap();
                let (bf, mf, kf, nf) = (batch as f64, m as f64, k as f64, n as f64);
                let (structure, flops) = expected_product(ls, rs, bf, mf, kf, nf);
                assert_eq!(product.shape(), shape, "{ls:?} x {rs:?}");
                assert_eq!(
                    shape,
                    JacShape {
                        structure,
                        rows: m,
                        cols: n
                    }
                );
                assert_eq!(cost.flops, flops, "{ls:?} x {rs:?}");
                let bytes = if flops == 0.0 {
                    0.0
                } else {
                    4.0 * (elements(left.shape(), batch)
                        + elements(right.shape(), batch)
                        + elements(shape, batch))
                };
                assert_eq!(cost.bytes, bytes, "{ls:?} x {rs:?}");
                let want = dense_product(
                    &left.to_dense(batch),
                    &right.to_dense(batch),
                    batch,
                    m,
                    k,
                    n,
                );
                let error = relative_error(&product.to_dense(batch), &want);
                assert!(error < 1e-12, "{ls:?} x {rs:?}: {error}");
            }
        }
    }
}

#[test]
fn every_sum_pair_matches_the_dense_sum_and_the_rules() {
    let mut rng = rng("sum_pairs");
    for &a in &STRUCTURES {
        for &b in &STRUCTURES {
            for _ in 0..20 {
                let batch = rng.random_range(1..=5);
                let m = rng.random_range(1..=7);
                let n = if square(a) || square(b) {
                    m
                } else {
                    rng.random_range(1..=7)
                };
                let x = random_jacobian(&mut rng, a, m, n, batch);
                let y = random_jacobian(&mut rng, b, m, n, batch);
                let total = x.sum(&y, batch).unwrap();
                let (shape, cost) = sum_shape(x.shape(), y.shape(), batch).unwrap();
                assert_eq!(total.shape(), shape);
                assert_eq!(shape.structure, expected_sum(a, b), "{a:?} + {b:?}");
                let bytes = 4.0
                    * (elements(x.shape(), batch)
                        + elements(y.shape(), batch)
                        + elements(shape, batch));
                assert_eq!(cost.bytes, bytes);
                assert!(cost.flops > 0.0);
                let want: Vec<f64> = x
                    .to_dense(batch)
                    .iter()
                    .zip(y.to_dense(batch))
                    .map(|(p, q)| p + q)
                    .collect();
                assert!(relative_error(&total.to_dense(batch), &want) < 1e-12);
            }
        }
    }
}

/// A random chain J_L ... J_1 with its sizes n_0..n_L, built from J_1 outwards.
fn random_chain(rng: &mut StdRng, len: usize, max_size: usize) -> Vec<JacShape> {
    let mut cols = rng.random_range(1..=max_size);
    let mut chain = Vec::with_capacity(len);
    for _ in 0..len {
        let structure = STRUCTURES[rng.random_range(0..STRUCTURES.len())];
        let rows = if square(structure) {
            cols
        } else {
            rng.random_range(1..=max_size)
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

#[test]
fn random_chains_in_every_order_equal_the_dense_product() {
    let mut rng = rng("chain_values");
    for _ in 0..200 {
        let len = rng.random_range(1..=7);
        let batch = rng.random_range(1..=4);
        let shapes = random_chain(&mut rng, len, 6);
        let factors: Vec<Jacobian> = shapes
            .iter()
            .map(|s| random_jacobian(&mut rng, s.structure, s.rows, s.cols, batch))
            .collect();
        // The reference: dense views multiplied right to left.
        let mut want = factors[len - 1].to_dense(batch);
        let cols = shapes[len - 1].cols;
        let mut inner = shapes[len - 1].rows;
        for factor in factors[..len - 1].iter().rev() {
            let rows = factor.rows();
            want = dense_product(&factor.to_dense(batch), &want, batch, rows, inner, cols);
            inner = rows;
        }
        for order in [chain_order, forward_order, reverse_order] {
            let plan = order(&shapes, batch).unwrap();
            let got = plan.bracketing.evaluate(&factors, batch).unwrap();
            assert_eq!(got.shape(), plan.result);
            let error = relative_error(&got.to_dense(batch), &want);
            assert!(error < 1e-12, "{shapes:?}: {error}");
        }
    }
}

#[test]
fn the_dp_is_optimal_and_never_worse_than_forward_or_reverse() {
    let mut rng = rng("chain_optimal");
    for _ in 0..400 {
        let len = rng.random_range(1..=7);
        let batch = rng.random_range(1..=300);
        let shapes = random_chain(&mut rng, len, 64);
        let dp = chain_order(&shapes, batch).unwrap();
        let brute = brute_force_order(&shapes, batch).unwrap();
        assert_eq!(dp.cost, brute.cost, "{shapes:?}");
        assert_eq!(dp.result, brute.result);
        for other in [
            forward_order(&shapes, batch).unwrap(),
            reverse_order(&shapes, batch).unwrap(),
        ] {
            assert!(dp.cost.flops <= other.cost.flops, "{shapes:?}");
        }
        // The premise of the DP: one result shape whatever the bracketing.
        for order in all_orders(&shapes, batch).unwrap() {
            assert_eq!(order.result, dp.result, "{shapes:?}");
            assert!(dp.cost.flops <= order.cost.flops);
        }
    }
}

#[test]
fn w5_alternating_shape_needs_far_fewer_flops_in_the_dp_order() {
    let sizes = [512, 8, 512, 8, 512, 8, 512];
    let batch = 256;
    // J_k is n_k x n_{k-1}; factors[0] is J_6.
    let shapes: Vec<JacShape> = (1..sizes.len())
        .rev()
        .map(|k| JacShape::dense(sizes[k], sizes[k - 1]))
        .collect();
    let names: Vec<String> = (1..sizes.len()).rev().map(|k| format!("J{k}")).collect();
    let dp = chain_order(&shapes, batch).unwrap();
    let forward = forward_order(&shapes, batch).unwrap();
    let reverse = reverse_order(&shapes, batch).unwrap();
    println!(
        "W5 {sizes:?}, B = {batch}: DP {} flops {}, forward {}, reverse {}",
        dp.cost.flops,
        dp.bracketing.render(&names),
        forward.cost.flops,
        reverse.cost.flops
    );
    assert_eq!(dp.result, JacShape::dense(512, 512));
    assert_eq!(dp.cost, brute_force_order(&shapes, batch).unwrap().cost);
    assert!(4.0 * dp.cost.flops < forward.cost.flops);
    assert!(4.0 * dp.cost.flops < reverse.cost.flops);
}

#[test]
fn shared_products_cost_the_same_for_any_batch() {
    let (a, b) = (JacShape::shared(30, 40), JacShape::shared(40, 50));
    let (_, one) = product_shape(a, b, 1).unwrap();
    let (shape, many) = product_shape(a, b, 10_000).unwrap();
    assert_eq!(one, many);
    assert_eq!(shape, JacShape::shared(30, 50));
    assert_eq!(one.flops, 2.0 * 30.0 * 40.0 * 50.0);
    let chain = [a, b, JacShape::shared(50, 7)];
    assert_eq!(
        chain_order(&chain, 1).unwrap().cost,
        chain_order(&chain, 10_000).unwrap().cost
    );
}

#[test]
fn jvp_and_vjp_equal_dense_matrix_vector_products() {
    let mut rng = rng("jvp_vjp");
    for &structure in &STRUCTURES {
        for _ in 0..20 {
            let batch = rng.random_range(1..=5);
            let m = rng.random_range(1..=7);
            let n = if square(structure) {
                m
            } else {
                rng.random_range(1..=7)
            };
            let j = random_jacobian(&mut rng, structure, m, n, batch);
            let dense = j.to_dense(batch);
            let v = values(&mut rng, batch * n);
            let u = values(&mut rng, batch * m);
            let jv = dense_product(&dense, &v, batch, m, n, 1);
            // u^T J is (1 x m) times (m x n), per sample.
            let uj = dense_product(&u, &dense, batch, 1, m, n);
            assert!(relative_error(&j.jvp(&v, batch).unwrap(), &jv) < 1e-12);
            assert!(relative_error(&j.vjp(&u, batch).unwrap(), &uj) < 1e-12);
            assert!(matches!(
                j.jvp(&values(&mut rng, batch * n + 1), batch),
                Err(Error::Shape(_))
            ));
            assert!(matches!(
                j.vjp(&values(&mut rng, batch * m + 1), batch),
                Err(Error::Shape(_))
            ));
        }
    }
}

#[test]
fn shape_mismatches_are_errors_never_panics() {
    let mut rng = rng("mismatches");
    for _ in 0..500 {
        let batch = rng.random_range(1..=3);
        let a = STRUCTURES[rng.random_range(0..4)];
        let b = STRUCTURES[rng.random_range(0..4)];
        let (m, k) = (rng.random_range(1..=4), rng.random_range(1..=4));
        let (k2, n) = (rng.random_range(1..=4), rng.random_range(1..=4));
        let x = random_jacobian(&mut rng, a, m, if square(a) { m } else { k }, batch);
        let y = random_jacobian(&mut rng, b, k2, if square(b) { k2 } else { n }, batch);
        let fits = x.cols() == y.rows();
        let product = x.product(&y, batch);
        assert_eq!(product.is_ok(), fits);
        assert_eq!(product_shape(x.shape(), y.shape(), batch).is_ok(), fits);
        if !fits {
            assert!(matches!(product, Err(Error::Shape(_))));
        }
        let same = x.rows() == y.rows() && x.cols() == y.cols();
        let sum = x.sum(&y, batch);
        assert_eq!(sum.is_ok(), same);
        if !same {
            let message = sum.unwrap_err().to_string();
            assert!(message.contains(&x.shape().to_string()));
            assert!(message.contains(&y.shape().to_string()));
        }
        let fit_chain = chain_order(&[x.shape(), y.shape()], batch);
        assert_eq!(fit_chain.is_ok(), fits);
        // A batch other than the stored one.
        if matches!(a, Structure::Diagonal | Structure::Dense) {
            assert!(matches!(x.product(&x, batch + 1), Err(Error::Shape(_))));
            assert!(matches!(x.jvp(&[], batch + 1), Err(Error::Shape(_))));
        }
    }
}
