// The face-splitting product T of two shared matrices A (m x k) and B
// (k x n, or stored transposed as n x k): row kk of T (k x m*n) is the
// Kronecker product of column kk of A with row kk of B,
//     T[kk, i * n + j] = A[i, kk] * B[kk, j].
// With it, the per-sample chain diag(r_b) A diag(s_b) B diag(c_b), where
// only the diagonals vary by sample, is the one product S T over the whole
// batch (S holds each sample's s_b as a row), with r_b and c_b applied in
// the epilogue (matmul.wgsl, flag bit 6): C_b[i, j] = r_b[i] c_b[j]
// sum_kk s_b[kk] T[kk, i * n + j]. That product is as large in every
// dimension as the batch and the Jacobian, so the tiles of matmul.wgsl sit
// full even where m or n is smaller than a tile.

struct FaceSplitParams {
    m: u32,
    k: u32,
    n: u32,
    // Elements of T, k * m * n.
    total: u32,
    // Invocations per row of the 2-D grid.
    row_stride: u32,
    // Bit 3: B stored transposed; bit 5: products of the chain rule (a zero
    // factor gives zero against an infinite or NaN one), as in matmul.wgsl.
    flags: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> params: FaceSplitParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.y * params.row_stride + id.x;
    if (index >= params.total) {
        return;
    }
    let m = params.m;
    let k = params.k;
    let n = params.n;
    let kk = index / (m * n);
    let within = index % (m * n);
    let i = within / n;
    let j = within % n;
    let av = a[i * k + kk];
    var bv = 0.0;
    if ((params.flags & 8u) != 0u) {
        bv = b[j * k + kk];
    } else {
        bv = b[kk * n + j];
    }
    if ((params.flags & 32u) != 0u) {
        t[index] = chain_mul(av, bv);
    } else {
        t[index] = av * bv;
    }
}
