// The element-wise ends of the long-row reductions over logits (after
// rows.wgsl has found each row's maximum, and for logsumexp the sum of
// exp(z - max)), one element per invocation over a 2-D grid:
//   mode 0, logsumexp: lse = max + ln(total) per row, written by element 0,
//     and the local partial softmax(z) = exp(z - max) / total per element;
//   mode 1, the shift by the maximum: z - max per element.
// The same semantics as the one-invocation-per-row kernels `log_sum_exp`
// and `shift_max` of src/backend/gpu/program.rs and their f64 mirrors in
// src/program/eval.rs: at an infinite maximum held by one element, lse is
// that infinity, softmax one-hot and the shift 0 there and -Inf elsewhere;
// held by several (or all -Inf), or any element NaN, NaN.

struct FinishParams {
    // Elements in this dispatch: rows * n.
    total: u32,
    n: u32,
    row_stride: u32,
    mode: u32,
    a_shared: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: FinishParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
// Per row: maximum, ties (capped at 2) and NaN flag, from rows.wgsl.
@group(0) @binding(2) var<storage, read> maxima: array<f32>;
// Per row: the sum of exp(z - max) (logsumexp only).
@group(0) @binding(3) var<storage, read> totals: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_v: array<f32>;
// Per element: softmax (logsumexp only).
@group(0) @binding(5) var<storage, read_write> out_softmax: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.y * params.row_stride + gid.x;
    if (e >= params.total) {
        return;
    }
    let n = params.n;
    let row = e / n;
    let i = e % n;
    let z = a[select(row * n, 0u, params.a_shared == 1u) + i];
    let max = maxima[3u * row];
    let nan = maxima[3u * row + 2u] != 0.0;
    let infinite = is_inf_f32(max);
    // An infinite maximum held by several elements (or all -Inf) has no limit.
    let undefined = nan || (infinite && maxima[3u * row + 1u] > 1.0);
    if (params.mode == 1u) {
        var d = z - max;
        if (undefined) {
            d = nan_like(z);
        } else if (infinite) {
            d = select(inf_like(z, true), 0.0, z == max);
        }
        out_v[e] = d;
        return;
    }
    let total = totals[row];
    if (i == 0u) {
        if (nan) {
            out_v[row] = nan_like(max);
        } else if (infinite) {
            out_v[row] = max;
        } else {
            out_v[row] = max + ln_acc(total);
        }
    }
    if (nan || infinite) {
        let hot = select(0.0, 1.0, z == max);
        out_softmax[e] = select(hot, nan_like(max), undefined);
    } else {
        out_softmax[e] = exp_acc(z - max) / total;
    }
}
