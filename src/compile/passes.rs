//! The passes a fused kernel is made of, each written into the kernel's
//! body for one sample `s`: values and partials forward, tangents forward,
//! cotangents backward, and the workgroup's sums of summed gradients.

use std::fmt::Write;

use crate::ops::RowPartial;

use super::{
    Layout, NodeId, Op, ROUND, WORKGROUP, binary_call, binary_partial, cot, declare, literal,
    open_loop, unary_call,
};

/// Values of every computed node, and the partials the reverse pass reads.
pub(super) fn forward_pass(src: &mut String, layout: &Layout<'_>, needed: &[bool]) {
    let program = layout.program;
    for (id, &op) in program.nodes.iter().enumerate() {
        let scalar = layout.is_scalar(id);
        let n = layout.size(id);
        let keep_partial = needed[id];
        match op {
            Op::Variable(_) | Op::Constant(_) => continue,
            Op::Unary(f, a) => {
                declare(src, &format!("v{id}"), scalar, n);
                if keep_partial {
                    declare(src, &format!("d{id}"), scalar, n);
                }
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        let e = {};",
                    unary_call(f, &layout.at(a, "i"))
                );
                let _ = writeln!(src, "        {} = e.x;", layout.at(id, "i"));
                if keep_partial {
                    let target = if scalar {
                        format!("d{id}")
                    } else {
                        format!("d{id}[i]")
                    };
                    let _ = writeln!(src, "        {target} = e.y;");
                }
                src.push_str("    }\n");
            }
            Op::Binary(f, a, b) => {
                declare(src, &format!("v{id}"), scalar, n);
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = {}.x;",
                    layout.at(id, "i"),
                    binary_call(f, &layout.at(a, "i"), &layout.at(b, "i"))
                );
                src.push_str("    }\n");
            }
            Op::MatVec(w, x) | Op::VecMat(w, x) => {
                let cols = layout.size(x);
                // W @ x reads W[r, c]; x @ W (W^T x) reads W[c, r].
                let index = if matches!(op, Op::VecMat(..)) {
                    format!("c * {n}u + r")
                } else {
                    format!("r * {cols}u + c")
                };
                declare(src, &format!("v{id}"), scalar, n);
                let _ = writeln!(
                    src,
                    "    for (var r = 0u; r < {n}u; r = r + 1u) {{\n        var acc = 0.0;\n        \
                     for (var c = 0u; c < {cols}u; c = c + 1u) {{\n            \
                     acc = acc + chain_mul({}, {});\n        }}\n        {} = acc;\n    }}",
                    layout.at(w, &index),
                    layout.at(x, "c"),
                    layout.at(id, "r")
                );
            }
            // Linear and bilinear reductions: `weight` times the sum of
            // the operands' products.
            Op::Reduce(r, a, _) if !r.partial().kept() => {
                let len = layout.size(a);
                let product: Vec<String> = op.operands().map(|o| layout.at(o, "i")).collect();
                let _ = writeln!(
                    src,
                    "    var v{id} = 0.0;\n    for (var i = 0u; i < {len}u; i = i + 1u) {{\n        \
                     v{id} = v{id} + {};\n    }}",
                    product.join(" * ")
                );
                weigh(src, &format!("v{id}"), r.weight(len));
            }
            Op::Reduce(r, a, _) if r.partial() == RowPartial::Others => {
                // prod: the products of the elements before each (kept as
                // the partial row, mantissa and exponent), then each times
                // the product of those after it, as `products_of_others` in
                // src/ops/reduce.rs; both compensated and scaled by powers
                // of two as they go (`ScaledProduct`, shaders/common.wgsl).
                let len = layout.size(a);
                let x = layout.at(a, "i");
                let keep = if keep_partial {
                    format!(
                        "var d{id}: array<f32, {len}>;\n    var de{id}: array<i32, {len}>;\n    "
                    )
                } else {
                    String::new()
                };
                let before = if keep_partial {
                    format!(
                        "d{id}[i] = scaled_mantissa(before{id});\n        \
                         de{id}[i] = before{id}.e;\n        "
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    src,
                    "    var before{id} = scaled_one();\n    {keep}\
                     for (var i = 0u; i < {len}u; i = i + 1u) {{\n        \
                     {before}before{id} = scaled_step(before{id}, {x});\n    }}\n    \
                     var v{id} = scaled_value(before{id});"
                );
                if keep_partial {
                    let _ = writeln!(
                        src,
                        "    var after{id} = scaled_one();\n    \
                         for (var k = 0u; k < {len}u; k = k + 1u) {{\n        \
                         let i = {last}u - k;\n        \
                         d{id}[i] = times_power_of_two(d{id}[i] * scaled_mantissa(after{id}), \
                         de{id}[i] + after{id}.e);\n        \
                         after{id} = scaled_step(after{id}, {x});\n    }}",
                        last = len - 1
                    );
                }
            }
            Op::Reduce(_, a, _) => {
                // log-sum-exp: the maximum first, so that no exponential
                // overflows. The limits at an infinite maximum are those of
                // the f64 reference (`log_sum_exp`, `softmax` in
                // src/ops/reduce.rs): lse is that infinity; softmax is
                // one-hot where one element holds it and NaN where several
                // do; NaN anywhere gives NaN.
                let len = layout.size(a);
                let z = layout.at(a, "i");
                row_stats(src, id, len, &z);
                let _ = writeln!(
                    src,
                    "    var t{id} = 0.0;\n    \
                     for (var i = 0u; i < {len}u; i = i + 1u) {{\n        \
                     t{id} = t{id} + exp_acc({z} - m{id});\n    }}\n    \
                     var v{id} = m{id} + ln_acc(t{id});\n    \
                     if (is_inf_f32(m{id})) {{\n        v{id} = m{id};\n    }}\n    \
                     if (nan{id}) {{\n        v{id} = nan_like(0.0);\n    }}"
                );
                if keep_partial {
                    let _ = writeln!(
                        src,
                        "    var d{id}: array<f32, {len}>;\n    \
                         for (var i = 0u; i < {len}u; i = i + 1u) {{\n        let z = {z};\n        \
                         d{id}[i] = exp_acc(z - m{id}) / t{id};\n        \
                         if (is_inf_f32(m{id})) {{\n            d{id}[i] = select(0.0, 1.0, z == m{id});\n        }}\n        \
                         if (undefined{id}) {{\n            d{id}[i] = nan_like(0.0);\n        }}\n    }}"
                    );
                }
            }
            Op::Slice(a, start, _) => {
                declare(src, &format!("v{id}"), scalar, n);
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = {};\n    }}",
                    layout.at(id, "i"),
                    layout.at(a, &format!("{start}u + i"))
                );
            }
            Op::Concat(a, b) => {
                declare(src, &format!("v{id}"), scalar, n);
                for (operand, offset) in [(a, 0), (b, layout.size(a))] {
                    open_loop(src, layout.size(operand), layout.is_scalar(operand));
                    let _ = writeln!(
                        src,
                        "        v{id}[{offset}u + i] = {};\n    }}",
                        layout.at(operand, "i")
                    );
                }
            }
            Op::ShiftMax(a) => {
                // z - max(z), the maximum held constant (its Jacobian is the
                // identity); the limits of `shift_max` in src/program/eval.rs.
                let len = layout.size(a);
                let z = layout.at(a, "i");
                row_stats(src, id, len, &z);
                let _ = writeln!(
                    src,
                    "    var v{id}: array<f32, {len}>;\n    \
                     for (var i = 0u; i < {len}u; i = i + 1u) {{\n        let z = {z};\n        \
                     v{id}[i] = z - m{id};\n        \
                     if (is_inf_f32(m{id})) {{\n            v{id}[i] = select(inf_like(z, true), 0.0, z == m{id});\n        }}\n        \
                     if (undefined{id}) {{\n            v{id}[i] = nan_like(0.0);\n        }}\n    }}"
                );
            }
        }
    }
}

/// The maximum of a row `z` (an expression of `i`) of `len` elements, how
/// many elements hold it, and whether any is NaN (tested by bits), as
/// `m{id}`, `ties{id}`, `nan{id}`; `undefined{id}` where an infinite maximum
/// is held by several elements or a NaN is present.
fn row_stats(src: &mut String, id: NodeId, len: usize, z: &str) {
    let _ = writeln!(
        src,
        "    var m{id} = inf_like(0.0, true);\n    var ties{id} = 0u;\n    var nan{id} = false;\n    \
         for (var i = 0u; i < {len}u; i = i + 1u) {{\n        let z = {z};\n        \
         if (is_nan_f32(z)) {{\n            nan{id} = true;\n        \
         }} else if (z > m{id}) {{\n            m{id} = z;\n            ties{id} = 1u;\n        \
         }} else if (z == m{id}) {{\n            ties{id} = ties{id} + 1u;\n        }}\n    }}\n    \
         let undefined{id} = nan{id} || (is_inf_f32(m{id}) && ties{id} > 1u);"
    );
}

/// Cotangents, from the output back to the variables asked for.
/// Where a pass's seed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seed {
    /// 1 (the gradient of a scalar).
    One,
    /// The `seed` binding's row for the sample.
    Buffer,
    /// The unit vector whose 1 is at index `unit` (a loop variable).
    Unit,
}

impl Seed {
    /// The seed's element `i` for a row of `n`.
    fn element(self, n: usize, i: &str) -> String {
        match self {
            Seed::One => "1.0".into(),
            Seed::Buffer => format!("seed[s * {n}u + {i}]"),
            Seed::Unit => format!("select(0.0, 1.0, {i} == unit)"),
        }
    }
}

/// Cotangents from node `from` back, seeded by `seed`, for the nodes
/// `needed`.
pub(super) fn reverse_pass(
    src: &mut String,
    layout: &Layout<'_>,
    needed: &[bool],
    seed: Seed,
    from: NodeId,
) {
    let program = layout.program;
    for (id, _) in program.nodes.iter().enumerate() {
        if needed[id] {
            declare(
                src,
                &format!("g{id}"),
                layout.is_scalar(id),
                layout.size(id),
            );
        }
    }
    let m = layout.size(from);
    let _ = writeln!(
        src,
        "    for (var i = 0u; i < {m}u; i = i + 1u) {{\n        {} = {};\n    }}",
        cot(layout, from, "i"),
        seed.element(m, "i")
    );
    for id in (0..program.nodes.len()).rev() {
        if !needed[id] {
            continue;
        }
        let n = layout.size(id);
        let scalar = layout.is_scalar(id);
        match program.nodes[id] {
            Op::Variable(_) | Op::Constant(_) => {}
            Op::Unary(_, a) => {
                open_loop(src, n, scalar);
                let partial = if scalar {
                    format!("d{id}")
                } else {
                    format!("d{id}[i]")
                };
                let _ = writeln!(
                    src,
                    "        {t} = {t} + chain_mul({partial}, {g});\n    }}",
                    t = cot(layout, a, "i"),
                    g = cot(layout, id, "i")
                );
            }
            Op::Binary(f, a, b) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        let e = {};",
                    binary_call(f, &layout.at(a, "i"), &layout.at(b, "i"))
                );
                for (slot, operand) in [(0, a), (1, b)] {
                    if needed[operand] {
                        let _ = writeln!(
                            src,
                            "        {t} = {t} + chain_mul({partial}, {g});",
                            partial = binary_partial(program, id, slot, "e"),
                            t = cot(layout, operand, "i"),
                            g = cot(layout, id, "i")
                        );
                    }
                }
                src.push_str("    }\n");
            }
            Op::MatVec(w, x) | Op::VecMat(w, x) => {
                let cols = layout.size(x);
                // W @ x reads W[r, c]; x @ W (W^T x) reads W[c, r].
                let index = if matches!(program.nodes[id], Op::VecMat(..)) {
                    format!("c * {n}u + r")
                } else {
                    format!("r * {cols}u + c")
                };
                if needed[x] {
                    let _ = writeln!(
                        src,
                        "    for (var c = 0u; c < {cols}u; c = c + 1u) {{\n        var acc = 0.0;\n        \
                         for (var r = 0u; r < {n}u; r = r + 1u) {{\n            \
                         acc = acc + chain_mul({}, g{id}[r]);\n        }}\n        {t} = {t} + acc;\n    }}",
                        layout.at(w, &index),
                        t = cot(layout, x, "c")
                    );
                }
                if needed[w] {
                    let _ = writeln!(
                        src,
                        "    for (var r = 0u; r < {n}u; r = r + 1u) {{\n        \
                         for (var c = 0u; c < {cols}u; c = c + 1u) {{\n            \
                         g{w}[{index}] = g{w}[{index}] + chain_mul(g{id}[r], {});\n        }}\n    }}",
                        layout.at(x, "c")
                    );
                }
            }
            Op::Reduce(r, a, _) => {
                let len = layout.size(a);
                let operands: Vec<NodeId> = program.nodes[id].operands().collect();
                let share = match r.weight(len) {
                    1.0 => format!("g{id}"),
                    weight => format!("g{id} * {}", literal(weight)),
                };
                open_loop(src, len, layout.is_scalar(a));
                for (slot, &operand) in operands.iter().enumerate() {
                    if needed[operand] {
                        let _ = writeln!(
                            src,
                            "        {t} = {t} + chain_mul({}, {share});",
                            row_partial(layout, id, &operands, slot),
                            t = cot(layout, operand, "i")
                        );
                    }
                }
                src.push_str("    }\n");
            }
            Op::ShiftMax(a) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {t} = {t} + {g};\n    }}",
                    t = cot(layout, a, "i"),
                    g = cot(layout, id, "i")
                );
            }
            Op::Slice(a, start, _) => {
                // The transpose of a selection scatters: each element's
                // cotangent goes back to the element it was read from.
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {t} = {t} + {g};\n    }}",
                    t = cot(layout, a, &format!("{start}u + i")),
                    g = cot(layout, id, "i")
                );
            }
            Op::Concat(a, b) => {
                for (operand, offset) in [(a, 0), (b, layout.size(a))] {
                    if needed[operand] {
                        open_loop(src, layout.size(operand), layout.is_scalar(operand));
                        let _ = writeln!(
                            src,
                            "        {t} = {t} + g{id}[{offset}u + i];\n    }}",
                            t = cot(layout, operand, "i")
                        );
                    }
                }
            }
        }
    }
}

/// Tangents of every node that depends on input `wrt`, seeded with the
/// seed's row, forward through the local partials (the same `_vd` and
/// `_vdd` functions as the values). Stored as `g{id}`, like cotangents, so
/// the output is written the same way.
pub(super) fn tangent_pass(
    src: &mut String,
    layout: &Layout<'_>,
    needed: &[bool],
    wrt: usize,
    seed: Seed,
) {
    let program = layout.program;
    for (id, &op) in program.nodes.iter().enumerate() {
        if !needed[id] {
            continue;
        }
        let n = layout.size(id);
        let scalar = layout.is_scalar(id);
        declare(src, &format!("g{id}"), scalar, n);
        // A term of the tangent from operand `o`, if it depends on the input.
        let term = |o: NodeId, partial: &str, i: &str| -> Option<String> {
            needed[o].then(|| format!("chain_mul({partial}, {})", cot(layout, o, i)))
        };
        let sum = |terms: Vec<Option<String>>| -> String {
            let terms: Vec<String> = terms.into_iter().flatten().collect();
            if terms.is_empty() {
                "0.0".into()
            } else {
                terms.join(" + ")
            }
        };
        match op {
            Op::Variable(v) if v == wrt => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = {};\n    }}",
                    cot(layout, id, "i"),
                    seed.element(n, "i")
                );
            }
            Op::Variable(_) | Op::Constant(_) => {}
            Op::Unary(_, a) => {
                open_loop(src, n, scalar);
                let partial = if scalar {
                    format!("d{id}")
                } else {
                    format!("d{id}[i]")
                };
                let _ = writeln!(
                    src,
                    "        {} = {};\n    }}",
                    cot(layout, id, "i"),
                    sum(vec![term(a, &partial, "i")])
                );
            }
            Op::Binary(f, a, b) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        let e = {};\n        {} = {};\n    }}",
                    binary_call(f, &layout.at(a, "i"), &layout.at(b, "i")),
                    cot(layout, id, "i"),
                    sum(vec![
                        term(a, &binary_partial(layout.program, id, 0, "e"), "i"),
                        term(b, &binary_partial(layout.program, id, 1, "e"), "i"),
                    ])
                );
            }
            Op::MatVec(w, x) | Op::VecMat(w, x) => {
                // The matrix is a param, so only x carries a tangent.
                let cols = layout.size(x);
                let index = if matches!(op, Op::VecMat(..)) {
                    format!("c * {n}u + r")
                } else {
                    format!("r * {cols}u + c")
                };
                let _ = writeln!(
                    src,
                    "    for (var r = 0u; r < {n}u; r = r + 1u) {{\n        var acc = 0.0;\n        \
                     for (var c = 0u; c < {cols}u; c = c + 1u) {{\n            \
                     acc = acc + chain_mul({}, {});\n        }}\n        {} = acc;\n    }}",
                    layout.at(w, &index),
                    cot(layout, x, "c"),
                    cot(layout, id, "r")
                );
            }
            Op::ShiftMax(a) => {
                open_loop(src, n, scalar);
                let _ = writeln!(
                    src,
                    "        {} = {};\n    }}",
                    cot(layout, id, "i"),
                    sum(vec![term(a, "1.0", "i")])
                );
            }
            Op::Slice(a, start, _) => {
                // A selection gathers the operand's tangents.
                let from = if needed[a] {
                    cot(layout, a, &format!("{start}u + i"))
                } else {
                    "0.0".into()
                };
                open_loop(src, n, scalar);
                let _ = writeln!(src, "        {} = {from};\n    }}", cot(layout, id, "i"));
            }
            Op::Concat(a, b) => {
                for (operand, offset) in [(a, 0), (b, layout.size(a))] {
                    if needed[operand] {
                        open_loop(src, layout.size(operand), layout.is_scalar(operand));
                        let _ = writeln!(
                            src,
                            "        g{id}[{offset}u + i] = {};\n    }}",
                            cot(layout, operand, "i")
                        );
                    }
                }
            }
            Op::Reduce(r, a, _) => {
                let len = layout.size(a);
                let operands: Vec<NodeId> = program.nodes[id].operands().collect();
                let terms = (0..operands.len())
                    .map(|slot| {
                        term(
                            operands[slot],
                            &row_partial(layout, id, &operands, slot),
                            "i",
                        )
                    })
                    .collect();
                let _ = writeln!(
                    src,
                    "    for (var i = 0u; i < {len}u; i = i + 1u) {{\n        g{id} = g{id} + {};\n    }}",
                    sum(terms)
                );
                weigh(src, &format!("g{id}"), r.weight(len));
            }
        }
    }
}

/// `target = target * weight`, unless the weight is 1.
fn weigh(src: &mut String, target: &str, weight: f64) {
    if weight != 1.0 {
        let _ = writeln!(src, "    {target} = {target} * {};", literal(weight));
    }
}

/// Element `i` of the local Jacobian row of reduction node `id` with
/// respect to operand `slot`, before the reduction's weight, as the op
/// table's structure says: 1 for a linear reduction, the other operand's
/// element for a bilinear one, the row the forward pass kept for the
/// others (softmax for log-sum-exp, the products of the others for prod).
fn row_partial(layout: &Layout<'_>, id: NodeId, operands: &[NodeId], slot: usize) -> String {
    let Op::Reduce(r, ..) = layout.program.nodes[id] else {
        return "0.0".into();
    };
    match r.partial() {
        RowPartial::Uniform => "1.0".into(),
        RowPartial::Other => layout.at(operands[1 - slot.min(1)], "i"),
        RowPartial::Softmax | RowPartial::Others => format!("d{id}[i]"),
    }
}

/// Each workgroup's sums of the accumulated gradients, ROUND columns at a
/// time, by a fixed two-level tree in workgroup memory: 16 invocations per
/// column add 16 entries each, then one invocation adds their 16 results.
/// Three barriers a round, whatever the workgroup size.
pub(super) fn workgroup_sums(src: &mut String, width: usize) {
    let rounds = width.div_ceil(ROUND);
    let lanes = WORKGROUP / ROUND;
    let _ = writeln!(
        src,
        "    for (var r = 0u; r < {rounds}u; r = r + 1u) {{\n        \
         let base = r * {ROUND}u;\n        let columns = min({ROUND}u, {width}u - base);\n        \
         for (var c = 0u; c < columns; c = c + 1u) {{\n            \
         red[c * {WORKGROUP}u + lid] = acc[base + c];\n        }}\n        \
         workgroupBarrier();\n        \
         let column = lid / {lanes}u;\n        let part = lid % {lanes}u;\n        \
         if (column < columns) {{\n            var t = 0.0;\n            \
         for (var q = 0u; q < {lanes}u; q = q + 1u) {{\n                \
         t = t + red[column * {WORKGROUP}u + part * {lanes}u + q];\n            }}\n            \
         red[column * {WORKGROUP}u + part * {lanes}u] = t;\n        }}\n        \
         workgroupBarrier();\n        \
         if (lid < columns) {{\n            var t = 0.0;\n            \
         for (var q = 0u; q < {lanes}u; q = q + 1u) {{\n                \
         t = t + red[lid * {WORKGROUP}u + q * {lanes}u];\n            }}\n            \
         partials[wg * {width}u + base + lid] = t;\n        }}\n        \
         workgroupBarrier();\n    }}"
    );
}
