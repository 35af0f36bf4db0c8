// The bulk unary kernel: y = f(x) and dy = f'(x) for one element per
// invocation, no loops (so no trip count for a driver to cut short).
// The registry prepends common.wgsl, trig.wgsl, activations.wgsl and a
// one-line `unary_vd(x, parameter)` that calls the chosen operation.

struct UnaryParams {
    // Elements in this dispatch.
    n: u32,
    // Invocations per row of the 2-D grid: workgroups in x times 256.
    row_stride: u32,
    // alpha or the exponent; unused by operations without a parameter.
    parameter: f32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> derivatives: array<f32>;
@group(0) @binding(3) var<uniform> params: UnaryParams;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.row_stride + gid.x;
    if (i >= params.n) {
        return;
    }
    let vd = unary_vd(xs[i], params.parameter);
    values[i] = vd.x;
    derivatives[i] = vd.y;
}
