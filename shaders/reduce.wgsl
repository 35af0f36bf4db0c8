// Column sums of a rows x width matrix of partial sums, one workgroup per
// column: each invocation adds a strided share of the rows, then a fixed
// tree in workgroup memory adds the shares, so the result is the same on
// every run and every adapter. The planner keeps rows / 256 within the loop
// limit of software drivers.

struct ReduceParams {
    rows: u32,
    width: u32,
    // The first column this dispatch sums (a grid covers a limited number
    // of workgroups, so wide matrices take several dispatches).
    first: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<uniform> params: ReduceParams;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

var<workgroup> shares: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = lid3.x;
    let column = params.first + wid.y * groups.x + wid.x;
    let read_column = min(column, params.width - 1u);
    let trips = (params.rows + 255u) / 256u;
    var acc = 0.0;
    for (var k = 0u; k < trips; k = k + 1u) {
        let row = k * 256u + lid;
        if (row < params.rows) {
            acc = acc + partials[row * params.width + read_column];
        }
    }
    shares[lid] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half >> 1u) {
        if (lid < half) {
            shares[lid] = shares[lid] + shares[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u && column < params.width) {
        sums[params.out_offset + column] = shares[0];
    }
}
