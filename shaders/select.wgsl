// The values of a selection (an index, a slice or an assembly) on the
// op-by-op path: element i of a sample is element `start + i` of `a` below
// `split`, and element `i - split` of `b` from there on (an assembly's
// second part). Operands shared by the batch (params) have stride 0. One
// invocation per element.

struct SelectParams {
    total: u32,
    row_stride: u32,
    size: u32,
    a_size: u32,
    b_size: u32,
    a_shared: u32,
    b_shared: u32,
    start: u32,
    split: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: SelectParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.y * params.row_stride + gid.x;
    if (e >= params.total) {
        return;
    }
    let sample = e / params.size;
    let i = e % params.size;
    if (i < params.split) {
        out_v[e] = a[select(sample * params.a_size, 0u, params.a_shared == 1u) + params.start + i];
    } else {
        out_v[e] = b[select(sample * params.b_size, 0u, params.b_shared == 1u) + i - params.split];
    }
}
