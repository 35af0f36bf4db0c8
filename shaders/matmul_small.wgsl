// The same product as matmul.wgsl,
//     C[b] = diag(r[b]) * A[b] * diag(s[b]) * B[b] * diag(c[b]),
// for many small matrices (vector-Jacobian products, outer products, 1 x n
// rows): one invocation per element of C over a 2-D grid, a plain loop over
// K. Tiles of 64 x 64 would leave almost every invocation idle on a 1 x 16
// result. The planner bounds K far below the 65,535 iterations a software
// driver executes.

struct SmallParams {
    m: u32,
    k: u32,
    n: u32,
    // Elements of C in this dispatch, samples * m * n (times chunks when K
    // is split).
    total: u32,
    a_stride: u32,
    b_stride: u32,
    row_stride: u32,
    // As in matmul.wgsl: bit 0 row scale, bit 1 inner scale, bit 2 column
    // scale, bit 3 B stored transposed; and bit 4 A stored transposed
    // (k x m), which makes G^T X over a batch of rows one product; bit 5
    // as in matmul.wgsl, products of the chain rule.
    flags: u32,
    // Products per chunk when K is split, else 0; and the number of chunks.
    k_chunk: u32,
    chunks: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> params: SmallParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> mid_scale: array<f32>;
@group(0) @binding(6) var<storage, read> col_scale: array<f32>;

// A product of two factors: of the chain rule (a zero factor gives zero
// whatever the other, chain_mul from common.wgsl) when flag bit 5 says so,
// else IEEE's, as for the values of `W @ x`.
fn times(a: f32, b: f32) -> f32 {
    if ((params.flags & 32u) != 0u) {
        return chain_mul(a, b);
    }
    return a * b;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.y * params.row_stride + gid.x;
    if (e >= params.total) {
        return;
    }
    let chunks = max(params.chunks, 1u);
    let element = e / chunks;
    let per_sample = params.m * params.n;
    let sample = element / per_sample;
    let within = element % per_sample;
    let row = within / params.n;
    let col = within % params.n;
    let a_transposed = (params.flags & 16u) != 0u;
    let a_base = sample * params.a_stride;
    let b_base = sample * params.b_stride;
    let scale_mid = (params.flags & 2u) != 0u;
    let transposed = (params.flags & 8u) != 0u;
    var k0 = 0u;
    var trips = params.k;
    if (params.k_chunk > 0u) {
        k0 = (e % chunks) * params.k_chunk;
        trips = min(params.k_chunk, params.k - k0);
    }
    var sum = 0.0;
    for (var t = 0u; t < trips; t = t + 1u) {
        let kk = k0 + t;
        var va = 0.0;
        if (a_transposed) {
            va = a[a_base + kk * params.m + row];
        } else {
            va = a[a_base + row * params.k + kk];
        }
        if (scale_mid) {
            va = times(va, mid_scale[sample * params.k + kk]);
        }
        var vb = 0.0;
        if (transposed) {
            vb = b[b_base + col * params.k + kk];
        } else {
            vb = b[b_base + kk * params.n + col];
        }
        sum = sum + times(va, vb);
    }
    if ((params.flags & 1u) != 0u) {
        sum = times(sum, row_scale[sample * params.m + row]);
    }
    if ((params.flags & 4u) != 0u) {
        sum = times(sum, col_scale[sample * params.n + col]);
    }
    c[e] = sum;
}
