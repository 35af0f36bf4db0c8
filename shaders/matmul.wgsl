// Batched, scaled matrix product for structured Jacobians:
//     C[b] = diag(r[b]) * A[b] * diag(s[b]) * B[b] * diag(c[b])
// where A and B are each either shared by the batch (stride 0) or one
// matrix per sample, and each diagonal scaling is optional. Folding the
// diagonals into the product means a chain such as diag(d2) W2 diag(d1) W1
// is one kernel that writes nothing in between.
//
// Each workgroup of 16 x 16 invocations computes a 64 x 64 block of C and
// each invocation a 4 x 4 register block of it. With one output per
// invocation, workgroup-memory reads rather than arithmetic bound the
// kernel; here every value read feeds four multiply-adds, and the reads are
// whole vec4s (one per operand per step of K). An invocation owns rows
// ly + 16i (so that a product with at most 16 rows leaves three of its four
// accumulators idle rather than three quarters of the invocations) and
// four adjacent columns (one vec4 of the B tile).
//
// The loop over K runs ceil(K / 16) times: the planner keeps that far
// below the 65,535 iterations a software driver executes.

const BLOCK: u32 = 64u;
const KTILE: u32 = 16u;
// vec4s per K row of a tile: 16, plus one so that the transposing stores
// of A (and of a transposed B) spread over the banks instead of landing
// 16 deep in one.
const PITCH: u32 = 17u;

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
    // X W^T with the samples as rows; bit 5: the products are the chain
    // rule's, where a zero factor gives zero even against an infinite or NaN
    // one (chain_mul, from common.wgsl), as for every Jacobian product; the
    // values of `W @ x` leave it clear and keep IEEE's 0 * Inf = NaN;
    // bit 6: C is a batch of face-split products (face_split.wgsl), each
    // row one sample's block_rows x block_cols matrix, and the row and
    // column scalings are per element of that matrix: element (row, q)
    // takes row_scale[row * block_rows + q / block_cols] and
    // col_scale[row * block_cols + q % block_cols].
    flags: u32,
    block_rows: u32,
    block_cols: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> mid_scale: array<f32>;
@group(0) @binding(6) var<storage, read> col_scale: array<f32>;

// Both tiles are K-major. tile_a[kk * PITCH + ly] holds A's rows ly, ly + 16,
// ly + 32 and ly + 48 at inner index kk; tile_b[kk * PITCH + q] holds B's
// columns 4q .. 4q + 3.
var<workgroup> tile_a: array<vec4<f32>, 272>;
var<workgroup> tile_b: array<vec4<f32>, 272>;

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
    // Uniform across the workgroup, so the unchecked loads never diverge;
    // only blocks on the edge of C pay for bounds checks.
    let inside = row0 + BLOCK <= m && col0 + BLOCK <= n;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    let steps = (k + KTILE - 1u) / KTILE;
    if (row0 + 16u >= m) {
        // At most 16 rows of C left (thin products such as 16 x 256 or
        // 8 x 8, common in Jacobian chains): only the first row of each
        // register block exists, so only it is accumulated.
        for (var step = 0u; step < steps; step = step + 1u) {
            stage(step, sample, row0, col0, inside, lid);
            workgroupBarrier();
            for (var t = 0u; t < KTILE; t = t + 1u) {
                let av = tile_a[t * PITCH + local.y];
                let bv = tile_b[t * PITCH + local.x];
                acc0 = fma(vec4<f32>(av.x), bv, acc0);
            }
            workgroupBarrier();
        }
    } else {
        for (var step = 0u; step < steps; step = step + 1u) {
            stage(step, sample, row0, col0, inside, lid);
            workgroupBarrier();
            for (var t = 0u; t < KTILE; t = t + 1u) {
                let av = tile_a[t * PITCH + local.y];
                let bv = tile_b[t * PITCH + local.x];
                acc0 = fma(vec4<f32>(av.x), bv, acc0);
                acc1 = fma(vec4<f32>(av.y), bv, acc1);
                acc2 = fma(vec4<f32>(av.z), bv, acc2);
                acc3 = fma(vec4<f32>(av.w), bv, acc3);
            }
            workgroupBarrier();
        }
    }

    let col = col0 + 4u * local.x;
    if ((params.flags & 32u) != 0u) {
        // The fused multiply-adds give NaN wherever a zero met an infinite
        // or NaN factor; only there do the chain rule's products differ, so
        // only there is the element summed again, one product at a time.
        // One test of the sum of all sixteen (NaN whenever one is) guards
        // the repair: a software driver runs a branch's body for every
        // invocation, masked, so the body must be small and run once.
        let probe = (acc0 + acc1) + (acc2 + acc3);
        if (is_nan_f32((probe.x + probe.y) + (probe.z + probe.w))) {
            var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
            for (var e = 0u; e < 16u; e = e + 1u) {
                let r = e / 4u;
                let q = e % 4u;
                let row = row0 + local.y + 16u * r;
                if (row < params.m && col + q < params.n && is_nan_f32(accs[r][q])) {
                    accs[r][q] = chain_element(sample, row, col + q);
                }
            }
            acc0 = accs[0];
            acc1 = accs[1];
            acc2 = accs[2];
            acc3 = accs[3];
        }
    }
    var cs = vec4<f32>(1.0);
    if ((params.flags & 68u) == 4u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            if (col + q < n) {
                cs[q] = col_scale[sample * n + col + q];
            }
        }
    }
    store_row(sample, row0 + local.y, col, times4(acc0, cs));
    store_row(sample, row0 + local.y + 16u, col, times4(acc1, cs));
    store_row(sample, row0 + local.y + 32u, col, times4(acc2, cs));
    store_row(sample, row0 + local.y + 48u, col, times4(acc3, cs));
}

// A product of the chain rule when flag bit 5 says so, else IEEE's.
fn times(a: f32, b: f32) -> f32 {
    if ((params.flags & 32u) == 0u) {
        return a * b;
    }
    return chain_mul(a, b);
}

// Element-wise products of the chain rule when flag bit 5 says so, else IEEE's.
fn times4(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    if ((params.flags & 32u) == 0u) {
        return a * b;
    }
    return vec4<f32>(
        chain_mul(a.x, b.x),
        chain_mul(a.y, b.y),
        chain_mul(a.z, b.z),
        chain_mul(a.w, b.w),
    );
}

// Element (row, col) of A diag(s) B for `sample`, each product by chain_mul.
// K is walked in blocks of KTILE so that no loop exceeds the 65,535
// iterations a software driver executes (the planner bounds K / KTILE).
fn chain_element(sample: u32, row: u32, col: u32) -> f32 {
    let k = params.k;
    let a_base = sample * params.a_stride + row * k;
    let b_base = sample * params.b_stride;
    let scale_mid = (params.flags & 2u) != 0u;
    let b_transposed = (params.flags & 8u) != 0u;
    var sum = 0.0;
    let steps = (k + KTILE - 1u) / KTILE;
    for (var step = 0u; step < steps; step = step + 1u) {
        for (var t = 0u; t < KTILE; t = t + 1u) {
            let kk = step * KTILE + t;
            if (kk < k) {
                var va = a[a_base + kk];
                if (scale_mid) {
                    va = chain_mul(va, mid_scale[sample * k + kk]);
                }
                var vb = 0.0;
                if (b_transposed) {
                    vb = b[b_base + col * k + kk];
                } else {
                    vb = b[b_base + kk * params.n + col];
                }
                sum = sum + chain_mul(va, vb);
            }
        }
    }
    return sum;
}

fn store_row(sample: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.m) {
        return;
    }
    var out = v;
    if ((params.flags & 64u) != 0u) {
        out = face_split_scaled(row, col, out);
    } else if ((params.flags & 1u) != 0u) {
        out = times4(out, vec4<f32>(row_scale[sample * params.m + row]));
    }
    let at = sample * params.c_stride + row * params.n + col;
    if (col + 4u <= params.n) {
        c[at] = out.x;
        c[at + 1u] = out.y;
        c[at + 2u] = out.z;
        c[at + 3u] = out.w;
    } else {
        for (var q = 0u; q < 4u; q = q + 1u) {
            if (col + q < params.n) {
                c[at + q] = out[q];
            }
        }
    }
}

// Elements col .. col + 3 of row `row` of a batch of face-split products
// (flag bit 6), each scaled by its sample's column and then row scaling.
fn face_split_scaled(row: u32, col: u32, v: vec4<f32>) -> vec4<f32> {
    var out = v;
    // One division a quad: lavapipe has no vector integer division.
    var i = col / params.block_cols;
    var j = col - i * params.block_cols;
    for (var q = 0u; q < 4u; q = q + 1u) {
        if (col + q < params.n) {
            if ((params.flags & 4u) != 0u) {
                out[q] = times(out[q], col_scale[row * params.block_cols + j]);
            }
            if ((params.flags & 1u) != 0u) {
                out[q] = times(out[q], row_scale[row * params.block_rows + i]);
            }
        }
        j = j + 1u;
        if (j == params.block_cols) {
            j = 0u;
            i = i + 1u;
        }
    }
    return out;
}

// Stages A[row0 .., k0 ..] diag(s) and B[k0 .., col0 ..] in workgroup memory.
// Each invocation reads a 64-byte run along a row of A (or of a transposed
// B) with its 15 neighbours, and 4 adjacent columns of a plain B.
fn stage(step: u32, sample: u32, row0: u32, col0: u32, inside: bool, lid: u32) {
    let m = params.m;
    let k = params.k;
    let n = params.n;
    let a_base = sample * params.a_stride;
    let b_base = sample * params.b_stride;
    let scale_mid = (params.flags & 2u) != 0u;
    let b_transposed = (params.flags & 8u) != 0u;
    let k0 = step * KTILE;
    // For A and a transposed B, neighbouring invocations take neighbouring
    // K (contiguous in memory) and each writes one whole vec4 of a tile:
    // rows lr + 16j of A, columns 4lr + j of B.
    let lk = lid & 15u;
    let lr = lid >> 4u;
    let ka = k0 + lk;
    // For a plain B the columns are contiguous instead: K row k0 + lr,
    // columns 4lk .. 4lk + 3.
    let kb = k0 + lr;
    let a_row = a_base + (row0 + lr) * k + ka;
    if (inside && k0 + KTILE <= k) {
        var s = 1.0;
        if (scale_mid) {
            s = mid_scale[sample * k + ka];
        }
        let a16 = 16u * k;
        tile_a[lk * PITCH + lr] = s * vec4<f32>(
            a[a_row],
            a[a_row + a16],
            a[a_row + 2u * a16],
            a[a_row + 3u * a16],
        );
        if (b_transposed) {
            let at = b_base + (col0 + 4u * lr) * k + ka;
            tile_b[lk * PITCH + lr] = vec4<f32>(b[at], b[at + k], b[at + 2u * k], b[at + 3u * k]);
        } else {
            let at = b_base + kb * n + col0 + 4u * lk;
            tile_b[lr * PITCH + lk] = vec4<f32>(b[at], b[at + 1u], b[at + 2u], b[at + 3u]);
        }
    } else {
        // Outside the matrices both operands load 0, so the padding adds
        // nothing even where the other operand holds inf or NaN.
        var s = 0.0;
        if (ka < k) {
            s = 1.0;
            if (scale_mid) {
                s = mid_scale[sample * k + ka];
            }
        }
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j = j + 1u) {
            if (ka < k && row0 + lr + 16u * j < m) {
                va[j] = s * a[a_row + 16u * j * k];
            }
            if (b_transposed) {
                let cb = col0 + 4u * lr + j;
                if (ka < k && cb < n) {
                    vb[j] = b[b_base + cb * k + ka];
                }
            } else {
                let cb = col0 + 4u * lk + j;
                if (kb < k && cb < n) {
                    vb[j] = b[b_base + kb * n + cb];
                }
            }
        }
        tile_a[lk * PITCH + lr] = va;
        if (b_transposed) {
            tile_b[lk * PITCH + lr] = vb;
        } else {
            tile_b[lr * PITCH + lk] = vb;
        }
    }
}
