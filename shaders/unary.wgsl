// The bulk unary kernel: y = f(x) and dy = f'(x) for four elements per
// invocation, read and written as one vec4 each (software drivers pay per
// access, not per float), no loops (so no trip count for a driver to cut
// short). Buffers hold whole quads: a last, partial quad is computed in
// padding that no result includes.
// The registry prepends common.wgsl, trig.wgsl, activations.wgsl and a
// one-line `unary_vd(x, parameter)` that calls the chosen operation.

struct UnaryParams {
    // Quads (four elements) in this dispatch.
    n: u32,
    // Invocations per row of the 2-D grid: workgroups in x times 256.
    row_stride: u32,
    // alpha or the exponent; unused by operations without a parameter.
    parameter: f32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> xs: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> values: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> derivatives: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: UnaryParams;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.row_stride + gid.x;
    if (i >= params.n) {
        return;
    }
    let x = xs[i];
    let a = unary_vd(x.x, params.parameter);
    let b = unary_vd(x.y, params.parameter);
    let c = unary_vd(x.z, params.parameter);
    let d = unary_vd(x.w, params.parameter);
    values[i] = vec4<f32>(a.x, b.x, c.x, d.x);
    derivatives[i] = vec4<f32>(a.y, b.y, c.y, d.y);
}
