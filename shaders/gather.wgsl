// Products with a selection (the local Jacobian of an index, a slice or an
// assembly) on the op-by-op path, as gathers rather than products with a
// matrix of zeros and ones: element (i, j) of a sample of the result is
// element (row_map[i], col_map[j]) of X, or zero where a map holds NONE.
// S X maps the rows by S's picks; X S maps the columns by the inverse of
// S's picks (each picked once). An unmapped side is read as it is. X is
// an identity, a diagonal (per sample), a matrix shared by the batch or one
// per sample. One invocation per element.

const NONE: u32 = 0xffffffffu;

struct GatherParams {
    // Elements in this dispatch: samples x rows x cols.
    total: u32,
    row_stride: u32,
    rows: u32,
    cols: u32,
    x_rows: u32,
    x_cols: u32,
    // 1 identity, 2 diagonal, 3 shared, 4 per sample.
    kind: u32,
    // Bit 0: rows are mapped by row_map; bit 1: columns by col_map.
    flags: u32,
}

@group(0) @binding(0) var<uniform> params: GatherParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> row_map: array<u32>;
@group(0) @binding(3) var<storage, read> col_map: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.y * params.row_stride + gid.x;
    if (e >= params.total) {
        return;
    }
    let per_sample = params.rows * params.cols;
    let sample = e / per_sample;
    let within = e - sample * per_sample;
    let i = within / params.cols;
    let j = within - i * params.cols;
    var r = i;
    if ((params.flags & 1u) != 0u) {
        r = row_map[i];
    }
    var c = j;
    if ((params.flags & 2u) != 0u) {
        c = col_map[j];
    }
    var v = 0.0;
    if (r != NONE && c != NONE) {
        switch params.kind {
            case 1u: {
                v = select(0.0, 1.0, r == c);
            }
            case 2u: {
                if (r == c) {
                    v = x[sample * params.x_rows + r];
                }
            }
            case 3u: {
                v = x[r * params.x_cols + c];
            }
            default: {
                v = x[(sample * params.x_rows + r) * params.x_cols + c];
            }
        }
    }
    out[e] = v;
}
