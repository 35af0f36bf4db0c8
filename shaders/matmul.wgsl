// Batched, scaled matrix product for structured Jacobians:
//     C[b] = diag(r[b]) * A[b] * diag(s[b]) * B[b] * diag(c[b])
// where A and B are each either shared by the batch (stride 0) or one
// matrix per sample, and each diagonal scaling is optional. Folding the
// diagonals into the product means a chain such as diag(d2) W2 diag(d1) W1
// is one kernel that writes nothing in between.
//
// 16 x 16 tiles through workgroup memory; each invocation computes one
// element of C. The loop over K runs ceil(K / 16) times: the planner keeps
// that far below the 65,535 iterations a software driver executes.

const TILE: u32 = 16u;

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

var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let sample = group.z;
    let row = group.y * TILE + local.y;
    let col = group.x * TILE + local.x;
    let a_base = sample * params.a_stride;
    let b_base = sample * params.b_stride;
    let scale_mid = (params.flags & 2u) != 0u;
    var sum = 0.0;
    let steps = (params.k + TILE - 1u) / TILE;
    for (var step = 0u; step < steps; step = step + 1u) {
        // Each invocation loads one element of each tile; outside the
        // matrices it loads 0, which adds nothing.
        let ka = step * TILE + local.x;
        var va = 0.0;
        if (row < params.m && ka < params.k) {
            va = a[a_base + row * params.k + ka];
            if (scale_mid) {
                va = va * mid_scale[sample * params.k + ka];
            }
        }
        tile_a[local.y][local.x] = va;
        let kb = step * TILE + local.y;
        var vb = 0.0;
        if (kb < params.k && col < params.n) {
            if ((params.flags & 8u) != 0u) {
                vb = b[b_base + col * params.k + kb];
            } else {
                vb = b[b_base + kb * params.n + col];
            }
        }
        tile_b[local.y][local.x] = vb;
        workgroupBarrier();
        for (var t = 0u; t < TILE; t = t + 1u) {
            sum = sum + tile_a[local.y][t] * tile_b[t][local.x];
        }
        workgroupBarrier();
    }
    if (row < params.m && col < params.n) {
        if ((params.flags & 1u) != 0u) {
            sum = sum * row_scale[sample * params.m + row];
        }
        if ((params.flags & 4u) != 0u) {
            sum = sum * col_scale[sample * params.n + col];
        }
        c[sample * params.c_stride + row * params.n + col] = sum;
    }
}
