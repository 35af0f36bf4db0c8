// Element-wise kernels of the structured Jacobian algebra, one element per
// invocation over a 2-D grid:
//   scale:  out[b,i,j] = r[b,i] * X[b,i,j] * c[b,j]   (X shared or per sample,
//           each scaling optional): diag * Shared, Dense * diag, and so on;
//   combine: out[b,i,j] = term(x) + term(y), each term Identity, Diagonal,
//           Shared or Dense, for sums at fan-in; with one operand absent it
//           densifies a structured Jacobian;
//   hadamard: out[b,i] = x[b,i] * y[b,i], for diag * diag.
// Selected by `mode`, so one pipeline serves every structure. Every
// product is one of the chain rule (chain_mul, from common.wgsl, which the
// registry puts first): a zero factor gives zero against an infinite one.

struct JacParams {
    // 0: scale, 1: combine, 2: hadamard.
    mode: u32,
    rows: u32,
    cols: u32,
    // Elements in this dispatch: samples * rows * cols (rows for hadamard).
    total: u32,
    row_stride: u32,
    // Structure of operand x and y: 0 absent, 1 identity, 2 diagonal, 3 shared, 4 dense.
    x_kind: u32,
    y_kind: u32,
    // For scale: bit 0 row scaling, bit 2 column scaling.
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: JacParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> col_scale: array<f32>;

// Operand `which` (0: x, 1: y) at (i, j) of `sample`. Branches rather than
// select(), which would read both buffers, one of them out of range.
fn load(which: u32, at: u32) -> f32 {
    if (which == 0u) {
        return x[at];
    }
    return y[at];
}

fn term(kind: u32, sample: u32, i: u32, j: u32, which: u32) -> f32 {
    let rows = params.rows;
    let cols = params.cols;
    switch kind {
        case 1u: {
            return select(0.0, 1.0, i == j);
        }
        case 2u: {
            if (i == j) {
                return load(which, sample * rows + i);
            }
            return 0.0;
        }
        case 3u: {
            return load(which, i * cols + j);
        }
        case 4u: {
            return load(which, (sample * rows + i) * cols + j);
        }
        default: {
            return 0.0;
        }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.y * params.row_stride + gid.x;
    if (e >= params.total) {
        return;
    }
    if (params.mode == 2u) {
        out[e] = chain_mul(x[e], y[e]);
        return;
    }
    let per_sample = params.rows * params.cols;
    let sample = e / per_sample;
    let within = e % per_sample;
    let i = within / params.cols;
    let j = within % params.cols;
    if (params.mode == 0u) {
        var v = 0.0;
        if (params.x_kind == 3u) {
            v = x[within];
        } else {
            v = x[e];
        }
        if ((params.flags & 1u) != 0u) {
            v = chain_mul(v, row_scale[sample * params.rows + i]);
        }
        if ((params.flags & 4u) != 0u) {
            v = chain_mul(v, col_scale[sample * params.cols + j]);
        }
        out[e] = v;
        return;
    }
    out[e] = term(params.x_kind, sample, i, j, 0u) + term(params.y_kind, sample, i, j, 1u);
}
