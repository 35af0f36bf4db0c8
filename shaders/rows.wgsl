// One stage of a reduction along every row of a matrix (each sample's
// vector, or the partial results of an earlier stage), as a tree: a row is
// cut into blocks of 256 * per_thread elements, one workgroup per (row,
// block); each invocation adds per_thread elements in a fixed order, then
// a fixed tree in workgroup memory adds the 256 shares, and invocation 0
// writes the block's partial. The planner repeats stages until one partial
// per row is left, so the result depends on the row's length only: the same
// on every run, every adapter and every batch. Every loop runs at most
// per_thread (planned <= 16) or 8 times, far within the 65,535 iterations a
// software driver executes.
//
// Modes (uniform for the dispatch):
//   0 sum of a[i]                     1 dot: sum of a[i] * b[i]
//   2 sum of exp(a[i] - max), the maxima from mode 3 in b (3 floats per row)
//   3 maximum of a[i] with ties and NaN, the bookkeeping of `row_max` in
//     src/program/eval.rs: (max, ties, any NaN) as 3 floats per partial
//   4 the same maximum, merging partials of mode 3 (3 floats each).
// The output of modes 3 and 4 is 3 floats per partial: the maximum, its
// tie count capped at 2 (all a reader asks is whether several elements hold
// the maximum; small integers survive any float path exactly) and 1.0 where
// some element was NaN.

struct RowParams {
    rows: u32,
    n: u32,
    // Blocks per row: the partials this stage writes for each row.
    blocks: u32,
    per_thread: u32,
    // The first (row, block) workgroup of this dispatch, row * blocks + block:
    // a dispatch covers at most max_workgroups_per_dimension^2 of them.
    first_group: u32,
    mode: u32,
    a_shared: u32,
    b_shared: u32,
    // Multiplies the last stage's result (1 / n for a mean; 1 elsewhere).
    scale: f32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: RowParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> sums: array<f32, 256>;
var<workgroup> maxima: array<f32, 256>;
var<workgroup> ties: array<u32, 256>;
var<workgroup> nans: array<u32, 256>;

struct RowMax {
    max: f32,
    ties: u32,
    nan: u32,
}

// One element into a running maximum, as `row_max` does.
fn max_step(acc: RowMax, z: f32) -> RowMax {
    var r = acc;
    if (is_nan_f32(z)) {
        r.nan = 1u;
    } else if (z > r.max) {
        r.max = z;
        r.ties = 1u;
    } else if (z == r.max) {
        r.ties = min(r.ties + 1u, 2u);
    }
    return r;
}

// Two running maxima of disjoint parts of a row into one. Exact and
// order-free: maxima compare exactly and tie counts are small integers.
fn max_merge(x: RowMax, y: RowMax) -> RowMax {
    var r = x;
    r.nan = x.nan | y.nan;
    if (y.max > x.max) {
        r.max = y.max;
        r.ties = y.ties;
    } else if (y.max == x.max) {
        r.ties = min(x.ties + y.ties, 2u);
    }
    return r;
}

fn sum_term(row: u32, i: u32) -> f32 {
    let n = params.n;
    let at = select(row * n, 0u, params.a_shared == 1u) + i;
    switch params.mode {
        case 1u: {
            return a[at] * b[select(row * n, 0u, params.b_shared == 1u) + i];
        }
        case 2u: {
            return exp_acc(a[at] - b[3u * row]);
        }
        default: {
            return a[at];
        }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = lid3.x;
    let group = params.first_group + wid.y * groups.x + wid.x;
    let row = group / params.blocks;
    let block = group % params.blocks;
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    let start = block * 256u * params.per_thread;
    let slot = row * params.blocks + block;
    if (params.mode >= 3u) {
        var acc = RowMax(inf_like(params.scale, true), 0u, 0u);
        for (var t = 0u; t < params.per_thread; t = t + 1u) {
            let i = start + t * 256u + lid;
            if (i < n) {
                if (params.mode == 3u) {
                    acc = max_step(acc, a[select(row * n, 0u, params.a_shared == 1u) + i]);
                } else {
                    let at = 3u * (row * n + i);
                    acc = max_merge(acc, RowMax(a[at], u32(a[at + 1u]), u32(a[at + 2u])));
                }
            }
        }
        maxima[lid] = acc.max;
        ties[lid] = acc.ties;
        nans[lid] = acc.nan;
        workgroupBarrier();
        for (var half = 128u; half > 0u; half = half >> 1u) {
            if (lid < half) {
                let merged = max_merge(
                    RowMax(maxima[lid], ties[lid], nans[lid]),
                    RowMax(maxima[lid + half], ties[lid + half], nans[lid + half]),
                );
                maxima[lid] = merged.max;
                ties[lid] = merged.ties;
                nans[lid] = merged.nan;
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            out[3u * slot] = maxima[0];
            out[3u * slot + 1u] = f32(min(ties[0], 2u));
            out[3u * slot + 2u] = f32(nans[0]);
        }
        return;
    }
    var acc = 0.0;
    for (var t = 0u; t < params.per_thread; t = t + 1u) {
        let i = start + t * 256u + lid;
        if (i < n) {
            acc = acc + sum_term(row, i);
        }
    }
    sums[lid] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half >> 1u) {
        if (lid < half) {
            sums[lid] = sums[lid] + sums[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[slot] = sums[0] * params.scale;
    }
}
