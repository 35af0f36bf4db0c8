// Batched, scaled matrix product for structured Jacobians:
//     C[b] = diag(r[b]) * A[b] * diag(s[b]) * B[b] * diag(c[b])
// where A and B are each either shared by the batch (stride 0) or one
// matrix per sample, and each diagonal scaling is optional. Folding the
// diagonals into the product means a chain such as diag(d2) W2 diag(d1) W1
// is one kernel that writes nothing in between.
//
// Each workgroup of 8 x 8 invocations computes a 64 x 64 block of C and
// each invocation an 8 x 8 register block of it. Workgroup-memory reads
// rather than arithmetic bound the kernel (on a software driver each is a
// loop over the SIMD lanes), so each read is a whole vec4 and feeds
// sixteen multiply-adds: per step of K an invocation reads two vec4s of
// A's tile and two of B's for 64 multiply-adds. It owns rows ly + 8j, so
// that a product with at most 8 rows leaves seven of its eight rows idle
// rather than most invocations, and columns 4lx .. 4lx + 3 and 32 more.
// On lavapipe this ran 1.6 times as fast as 4 x 4 blocks on 16 x 16
// invocations.
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

// Both tiles are K-major, 16 vec4s (plus padding) per step of K.
// tile_a[kk * PITCH + v], for slot v = 8h + y, holds A's rows y + 32h,
// y + 8 + 32h, y + 16 + 32h and y + 24 + 32h at inner index kk;
// tile_b[kk * PITCH + v] holds B's columns 4v .. 4v + 3.
var<workgroup> tile_a: array<vec4<f32>, 272>;
var<workgroup> tile_b: array<vec4<f32>, 272>;

@compute @workgroup_size(8, 8, 1)
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
    let ly = local.y;
    let lx = local.x;

    // lo_j and hi_j: row ly + 8j, columns 4lx .. 4lx + 3 and 32 more.
    var lo0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var lo4 = vec4<f32>(0.0);
    var lo5 = vec4<f32>(0.0);
    var lo6 = vec4<f32>(0.0);
    var lo7 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    var hi4 = vec4<f32>(0.0);
    var hi5 = vec4<f32>(0.0);
    var hi6 = vec4<f32>(0.0);
    var hi7 = vec4<f32>(0.0);

    let steps = (k + KTILE - 1u) / KTILE;
    if (row0 + 8u >= m) {
        // At most 8 rows of C left (thin products such as 8 x 512 in
        // Jacobian chains): only the first row of each register block
        // exists, so only it is accumulated.
        for (var step = 0u; step < steps; step = step + 1u) {
            stage(step, sample, row0, col0, inside, lid);
            workgroupBarrier();
            for (var t = 0u; t < KTILE; t = t + 1u) {
                let a0 = vec4<f32>(tile_a[t * PITCH + ly].x);
                lo0 = fma(a0, tile_b[t * PITCH + lx], lo0);
                hi0 = fma(a0, tile_b[t * PITCH + 8u + lx], hi0);
            }
            workgroupBarrier();
        }
    } else {
        for (var step = 0u; step < steps; step = step + 1u) {
            stage(step, sample, row0, col0, inside, lid);
            workgroupBarrier();
            for (var t = 0u; t < KTILE; t = t + 1u) {
                let a0 = tile_a[t * PITCH + ly];
                let a1 = tile_a[t * PITCH + 8u + ly];
                let b0 = tile_b[t * PITCH + lx];
                let b1 = tile_b[t * PITCH + 8u + lx];
                lo0 = fma(vec4<f32>(a0.x), b0, lo0);
                hi0 = fma(vec4<f32>(a0.x), b1, hi0);
                lo1 = fma(vec4<f32>(a0.y), b0, lo1);
                hi1 = fma(vec4<f32>(a0.y), b1, hi1);
                lo2 = fma(vec4<f32>(a0.z), b0, lo2);
                hi2 = fma(vec4<f32>(a0.z), b1, hi2);
                lo3 = fma(vec4<f32>(a0.w), b0, lo3);
                hi3 = fma(vec4<f32>(a0.w), b1, hi3);
                lo4 = fma(vec4<f32>(a1.x), b0, lo4);
                hi4 = fma(vec4<f32>(a1.x), b1, hi4);
                lo5 = fma(vec4<f32>(a1.y), b0, lo5);
                hi5 = fma(vec4<f32>(a1.y), b1, hi5);
                lo6 = fma(vec4<f32>(a1.z), b0, lo6);
                hi6 = fma(vec4<f32>(a1.z), b1, hi6);
                lo7 = fma(vec4<f32>(a1.w), b0, lo7);
                hi7 = fma(vec4<f32>(a1.w), b1, hi7);
            }
            workgroupBarrier();
        }
    }

    var accs = array<vec4<f32>, 16>(
        lo0, hi0, lo1, hi1, lo2, hi2, lo3, hi3,
        lo4, hi4, lo5, hi5, lo6, hi6, lo7, hi7,
    );
    let col = col0 + 4u * lx;
    if ((params.flags & 32u) != 0u) {
        // The fused multiply-adds give NaN wherever a zero met an infinite
        // or NaN factor; only there do the chain rule's products differ, so
        // only there is the element summed again, one product at a time.
        // One test of the sum of all 64 (NaN whenever one is) guards the
        // repair: a software driver runs a branch's body for every
        // invocation, masked, so the body must be small and run once.
        var probe = vec4<f32>(0.0);
        for (var e = 0u; e < 16u; e = e + 1u) {
            probe = probe + accs[e];
        }
        if (is_nan_f32((probe.x + probe.y) + (probe.z + probe.w))) {
            for (var e = 0u; e < 64u; e = e + 1u) {
                let slot = e / 4u;
                let q = e % 4u;
                let row = row0 + ly + 8u * (slot / 2u);
                let at = col + 32u * (slot % 2u) + q;
                if (row < m && at < n && is_nan_f32(accs[slot][q])) {
                    accs[slot][q] = chain_element(sample, row, at);
                }
            }
        }
    }
    var cs_lo = vec4<f32>(1.0);
    var cs_hi = vec4<f32>(1.0);
    if ((params.flags & 68u) == 4u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            if (col + q < n) {
                cs_lo[q] = col_scale[sample * n + col + q];
            }
            if (col + 32u + q < n) {
                cs_hi[q] = col_scale[sample * n + col + 32u + q];
            }
        }
    }
    for (var j = 0u; j < 8u; j = j + 1u) {
        let row = row0 + ly + 8u * j;
        store_row(sample, row, col, times4(accs[2u * j], cs_lo));
        store_row(sample, row, col + 32u, times4(accs[2u * j + 1u], cs_hi));
    }
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
        store(at, col, out.x);
        store(at + 1u, col + 1u, out.y);
        store(at + 2u, col + 2u, out.z);
        store(at + 3u, col + 3u, out.w);
    } else {
        for (var q = 0u; q < 4u; q = q + 1u) {
            if (col + q < params.n) {
                store(at + q, col + q, out[q]);
            }
        }
    }
}

// The epilogue: what is stored for element `at` of C, in column `col`.
// The forward pass's products of a layer (src/backend/gpu/products.rs,
// `epilogue_source`) replace this function with one that adds a bias and
// applies an activation, storing its derivative beside the value.
fn store(at: u32, col: u32, v: f32) {
    c[at] = v;
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

// Stages A[row0 .., k0 ..] diag(s) and B[k0 .., col0 ..] in workgroup memory,
// four vec4s of each tile per invocation. For A and a transposed B,
// neighbouring invocations take neighbouring K (contiguous in memory); for
// a plain B, neighbouring columns.
fn stage(step: u32, sample: u32, row0: u32, col0: u32, inside: bool, lid: u32) {
    let m = params.m;
    let k = params.k;
    let n = params.n;
    let a_base = sample * params.a_stride;
    let b_base = sample * params.b_stride;
    let scale_mid = (params.flags & 2u) != 0u;
    let b_transposed = (params.flags & 8u) != 0u;
    let k0 = step * KTILE;
    let lk = lid & 15u;
    let lq = lid >> 4u;
    let ka = k0 + lk;
    var s = 0.0;
    if (ka < k) {
        s = 1.0;
        if (scale_mid) {
            s = mid_scale[sample * k + ka];
        }
    }
    if (inside && k0 + KTILE <= k) {
        for (var p = 0u; p < 4u; p = p + 1u) {
            // Slot v = 8h + y: rows y + 8j + 32h of A, columns 4v + j of B.
            let v = lq + 4u * p;
            let first = row0 + (v & 7u) + 32u * (v >> 3u);
            let at = a_base + first * k + ka;
            let a8 = 8u * k;
            tile_a[lk * PITCH + v] = s * vec4<f32>(a[at], a[at + a8], a[at + 2u * a8], a[at + 3u * a8]);
            if (b_transposed) {
                let bt = b_base + (col0 + 4u * v) * k + ka;
                tile_b[lk * PITCH + v] = vec4<f32>(b[bt], b[bt + k], b[bt + 2u * k], b[bt + 3u * k]);
            } else {
                // K row k0 + v, columns 4lk .. 4lk + 3.
                let bt = b_base + (k0 + v) * n + col0 + 4u * lk;
                tile_b[v * PITCH + lk] = vec4<f32>(b[bt], b[bt + 1u], b[bt + 2u], b[bt + 3u]);
            }
        }
    } else {
        // Outside the matrices both operands load 0, so the padding adds
        // nothing even where the other operand holds inf or NaN.
        for (var p = 0u; p < 4u; p = p + 1u) {
            let v = lq + 4u * p;
            let first = row0 + (v & 7u) + 32u * (v >> 3u);
            var va = vec4<f32>(0.0);
            var vb = vec4<f32>(0.0);
            for (var j = 0u; j < 4u; j = j + 1u) {
                if (ka < k && first + 8u * j < m) {
                    va[j] = s * a[a_base + (first + 8u * j) * k + ka];
                }
                if (b_transposed) {
                    let cb = col0 + 4u * v + j;
                    if (ka < k && cb < n) {
                        vb[j] = b[b_base + cb * k + ka];
                    }
                } else {
                    let cb = col0 + 4u * lk + j;
                    if (k0 + v < k && cb < n) {
                        vb[j] = b[b_base + (k0 + v) * n + cb];
                    }
                }
            }
            tile_a[lk * PITCH + v] = va;
            if (b_transposed) {
                tile_b[lk * PITCH + v] = vb;
            } else {
                tile_b[v * PITCH + lk] = vb;
            }
        }
    }
}
