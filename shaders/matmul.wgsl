// Batched, scaled matrix product for structured Jacobians:
//     C[b] = diag(r[b]) * A[b] * diag(s[b]) * B[b] * diag(c[b])
// where A and B are each either shared by the batch (stride 0) or one
// matrix per sample, and each diagonal scaling is optional. Folding the
// diagonals into the product means a chain such as diag(d2) W2 diag(d1) W1
// is one kernel that writes nothing in between.
//
// Each workgroup of 16 x 16 invocations computes a 64 x 64 block of C and
// each invocation a 4 x 4 register block of it: every value read from
// workgroup memory then feeds four multiply-adds instead of one, which is
// what bounds a one-output-per-invocation kernel. The invocation's rows
// and columns are strided by 16 rather than adjacent so that neighbouring
// invocations read neighbouring words of workgroup memory (no bank
// conflicts) and write neighbouring words of C (coalesced stores).
//
// The loop over K runs ceil(K / 16) times: the planner keeps that far
// below the 65,535 iterations a software driver executes.

const BLOCK: u32 = 64u;
const KTILE: u32 = 16u;
// One word of padding per K row keeps the transposing stores of A (and of
// a transposed B) from landing 16 deep in one bank.
const PITCH: u32 = 65u;

struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    // Samples in this dispatch (workgroups in z).
    samples: u32,
    // Elements between consecutive samples' A, B and C; 0 for a shared operand.
    a_stride: u32,
    b_stride: u32,
    c_stride: u32,
    // Bit 0: scale rows by r; bit 1: scale the inner dimension by s;
    // bit 2: scale columns by c; bit 3: B is stored transposed (n x k),
    // which turns a batch of matrix-vector products W x_b into one product
    // X W^T with the samples as rows.
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> mid_scale: array<f32>;
@group(0) @binding(6) var<storage, read> col_scale: array<f32>;

// Both tiles are stored K-major, [kk * PITCH + i], so the inner loop reads
// one contiguous run of each per step whatever the operands' layouts.
var<workgroup> tile_a: array<f32, 1040>;
var<workgroup> tile_b: array<f32, 1040>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m = params.m;
    let k = params.k;
    let n = params.n;
    let sample = group.z;
    let row0 = group.y * BLOCK;
    let col0 = group.x * BLOCK;
    let a_base = sample * params.a_stride;
    let b_base = sample * params.b_stride;
    let scale_mid = (params.flags & 2u) != 0u;
    let b_transposed = (params.flags & 8u) != 0u;
    // Uniform across the workgroup, so the unchecked loads below never
    // diverge; only blocks on the edge of C pay for bounds checks.
    let inside = row0 + BLOCK <= m && col0 + BLOCK <= n;

    // Row-major A and transposed B are read 16 consecutive K values per
    // row (a 64-byte run); plain B 64 consecutive columns per K row.
    let lk = lid & 15u;
    let lr = lid >> 4u;
    let bk = lid >> 6u;
    let bc = lid & 63u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    let steps = (k + KTILE - 1u) / KTILE;
    for (var step = 0u; step < steps; step = step + 1u) {
        let k0 = step * KTILE;
        let ka = k0 + lk;
        if (inside && k0 + KTILE <= k) {
            var s = 1.0;
            if (scale_mid) {
                s = mid_scale[sample * k + ka];
            }
            for (var j = 0u; j < 4u; j = j + 1u) {
                let r = lr + 16u * j;
                tile_a[lk * PITCH + r] = a[a_base + (row0 + r) * k + ka] * s;
            }
            if (b_transposed) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let cc = lr + 16u * j;
                    tile_b[lk * PITCH + cc] = b[b_base + (col0 + cc) * k + ka];
                }
            } else {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let kk = bk + 4u * j;
                    tile_b[kk * PITCH + bc] = b[b_base + (k0 + kk) * n + col0 + bc];
                }
            }
        } else {
            // Outside the matrices both operands load 0, so the padding
            // adds nothing even where the other operand holds inf or NaN.
            var s = 0.0;
            if (ka < k) {
                s = 1.0;
                if (scale_mid) {
                    s = mid_scale[sample * k + ka];
                }
            }
            for (var j = 0u; j < 4u; j = j + 1u) {
                let r = lr + 16u * j;
                var v = 0.0;
                if (ka < k && row0 + r < m) {
                    v = a[a_base + (row0 + r) * k + ka] * s;
                }
                tile_a[lk * PITCH + r] = v;
            }
            if (b_transposed) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let cc = lr + 16u * j;
                    var v = 0.0;
                    if (ka < k && col0 + cc < n) {
                        v = b[b_base + (col0 + cc) * k + ka];
                    }
                    tile_b[lk * PITCH + cc] = v;
                }
            } else {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    let kk = bk + 4u * j;
                    var v = 0.0;
                    if (k0 + kk < k && col0 + bc < n) {
                        v = b[b_base + (k0 + kk) * n + col0 + bc];
                    }
                    tile_b[kk * PITCH + bc] = v;
                }
            }
        }
        workgroupBarrier();
        for (var t = 0u; t < KTILE; t = t + 1u) {
            let ao = t * PITCH + local.y;
            let bo = t * PITCH + local.x;
            let bv = vec4<f32>(tile_b[bo], tile_b[bo + 16u], tile_b[bo + 32u], tile_b[bo + 48u]);
            acc0 = fma(vec4<f32>(tile_a[ao]), bv, acc0);
            acc1 = fma(vec4<f32>(tile_a[ao + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(tile_a[ao + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(tile_a[ao + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }

    var cs = vec4<f32>(1.0);
    if ((params.flags & 4u) != 0u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + local.x + 16u * j;
            if (col < n) {
                cs[j] = col_scale[sample * n + col];
            }
        }
    }
    store_row(sample, row0 + local.y, col0 + local.x, acc0 * cs);
    store_row(sample, row0 + local.y + 16u, col0 + local.x, acc1 * cs);
    store_row(sample, row0 + local.y + 32u, col0 + local.x, acc2 * cs);
    store_row(sample, row0 + local.y + 48u, col0 + local.x, acc3 * cs);
}

fn store_row(sample: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.m) {
        return;
    }
    var out = v;
    if ((params.flags & 1u) != 0u) {
        out = out * row_scale[sample * params.m + row];
    }
    let base = sample * params.c_stride + row * params.n;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + 16u * j < params.n) {
            c[base + col + 16u * j] = out[j];
        }
    }
}
