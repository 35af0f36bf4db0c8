//! Reductions along rows on the device (each sample's vector, or the
//! partial sums of a product split along its inner dimension), for rows of
//! any length that memory holds: a deterministic tree of stages
//! (shaders/rows.wgsl), each cutting every row into blocks of at most
//! `WORKGROUP * PER_THREAD` elements, one workgroup per (row, block). Every
//! loop in it runs a bounded number of times, whatever the length, so no
//! software driver cuts it short (lavapipe stops a loop after 65,535
//! iterations without an error). Logsumexp and the shift by the maximum
//! finish element-wise (shaders/rows_finish.wgsl).

use std::sync::Arc;

use super::context::GpuContext;
use super::jacobian::WORKGROUP;
use crate::error::Result;

/// The most elements one invocation adds before the tree: few enough that
/// a long row is spread over many workgroups, enough that the tree's
/// barriers are paid once per 4,096 elements.
pub(super) const PER_THREAD: usize = 16;

/// Rows up to this length are reduced by one invocation per row (the
/// kernels of `program.rs`): a row shorter than a workgroup would leave
/// most of a tree idle. Longer rows take the tree, which reads memory in
/// coalesced runs and spreads one row over many workgroups. The choice
/// depends on the length alone, so a sample's result never depends on the
/// batch it came in.
pub(super) const LOOP_UP_TO: usize = 1024;

/// What a tree reduces along each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowOp {
    /// The sum of the elements.
    Sum,
    /// The sum of products with a second row of the same length.
    Dot,
    /// The sum of exp(z - max), the maxima (from [`RowOp::Max`]) as the
    /// second operand.
    SumExp,
    /// The maximum, how many elements hold it (capped at 2) and whether any
    /// is NaN: three floats per row.
    Max,
}

impl RowOp {
    fn mode(self) -> u32 {
        match self {
            RowOp::Sum => 0,
            RowOp::Dot => 1,
            RowOp::SumExp => 2,
            RowOp::Max => 3,
        }
    }
}

/// Mode of shaders/rows.wgsl that merges the maxima of an earlier stage.
const MAX_MERGE: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    rows: u32,
    n: u32,
    blocks: u32,
    per_thread: u32,
    first_group: u32,
    mode: u32,
    a_shared: u32,
    b_shared: u32,
    scale: f32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FinishParams {
    total: u32,
    n: u32,
    row_stride: u32,
    mode: u32,
    a_shared: u32,
    pad: [u32; 3],
}

/// One stage of the tree: elements per invocation and blocks per row for
/// rows of `n` elements.
pub(super) fn stage_shape(n: usize) -> (usize, usize) {
    let per_thread = n.div_ceil(WORKGROUP).clamp(1, PER_THREAD);
    let blocks = n.div_ceil(WORKGROUP * per_thread).max(1);
    (per_thread, blocks)
}

/// The row lengths each stage of a tree over rows of `n` elements reduces:
/// `n`, then the partials per row of each stage until one is left.
#[cfg(test)]
pub(super) fn stages(n: usize) -> Vec<usize> {
    let mut lengths = vec![n];
    let mut length = n;
    loop {
        let (_, blocks) = stage_shape(length);
        if blocks == 1 {
            return lengths;
        }
        lengths.push(blocks);
        length = blocks;
    }
}

/// An operand of a row reduction: a buffer of rows, or one row shared by all.
#[derive(Clone, Copy)]
pub(super) struct RowOperand<'a> {
    pub(super) buffer: &'a wgpu::Buffer,
    pub(super) shared: bool,
}

impl GpuContext {
    /// Reduces each of `rows` rows of `n` elements of `a` (with `b` for
    /// [`RowOp::Dot`], the maxima for [`RowOp::SumExp`]), scaling the result
    /// by `scale`: one float per row, three for [`RowOp::Max`], written
    /// into `target` where given.
    pub(super) fn reduce_rows(
        &self,
        op: RowOp,
        (a, b): (RowOperand<'_>, Option<RowOperand<'_>>),
        (rows, n): (usize, usize),
        scale: f32,
        target: Option<&Arc<wgpu::Buffer>>,
    ) -> Result<Arc<wgpu::Buffer>> {
        let kernel = self.kernel_sync("rows/tree stage", crate::shaders::ROWS)?;
        let width = if op == RowOp::Max { 3 } else { 1 };
        let mut input: Option<Arc<wgpu::Buffer>> = None;
        let mut length = n;
        loop {
            let (per_thread, blocks) = stage_shape(length);
            let out = match target {
                Some(target) if blocks == 1 => Arc::clone(target),
                _ => self.pooled(rows * blocks * width),
            };
            let first_stage = input.is_none();
            let mode = match (first_stage, op) {
                (true, op) => op.mode(),
                (false, RowOp::Max) => MAX_MERGE,
                (false, _) => RowOp::Sum.mode(),
            };
            let (a_buffer, a_shared) = match &input {
                Some(partials) => (partials.as_ref(), false),
                None => (a.buffer, a.shared),
            };
            let (b_buffer, b_shared) = match (first_stage, b) {
                (true, Some(b)) => (b.buffer, b.shared),
                _ => (self.dummy.as_ref(), false),
            };
            let groups = rows * blocks;
            let max = self.limits.max_workgroups_per_dimension as usize;
            let per_dispatch = max * max;
            let mut first = 0;
            while first < groups {
                let count = (groups - first).min(per_dispatch);
                let x = count.min(max);
                let y = count.div_ceil(x);
                let params = RowParams {
                    rows: rows as u32,
                    n: length as u32,
                    blocks: blocks as u32,
                    per_thread: per_thread as u32,
                    first_group: first as u32,
                    mode,
                    a_shared: u32::from(a_shared),
                    b_shared: u32::from(b_shared),
                    scale: if blocks == 1 { scale } else { 1.0 },
                    pad: [0; 3],
                };
                let uniform = self.uniform(&params);
                self.dispatch(
                    &kernel,
                    &[&uniform, a_buffer, b_buffer, &out],
                    (x as u32, y as u32, 1),
                    "rows tree stage",
                );
                first += count;
            }
            if blocks == 1 {
                return Ok(out);
            }
            input = Some(out);
            length = blocks;
        }
    }

    /// Logsumexp of each of `rows` rows of `n` logits into `lse` (one per
    /// row) and its partials softmax(z) into `softmax` (rows x n); with
    /// `softmax` absent, the shift z - max(z) into `lse` (rows x n).
    pub(super) fn finish_logits(
        &self,
        z: RowOperand<'_>,
        (rows, n): (usize, usize),
        lse: &wgpu::Buffer,
        softmax: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let maxima = self.reduce_rows(RowOp::Max, (z, None), (rows, n), 1.0, None)?;
        let totals = match softmax {
            Some(_) => Some(self.reduce_rows(
                RowOp::SumExp,
                (
                    z,
                    Some(RowOperand {
                        buffer: &maxima,
                        shared: false,
                    }),
                ),
                (rows, n),
                1.0,
                None,
            )?),
            None => None,
        };
        // The shift binds no totals and writes no softmax; distinct
        // placeholders keep a read and a read-write binding apart.
        let unused = self.pooled(1);
        let kernel = self.kernel_sync("rows/finish logits", crate::shaders::ROWS_FINISH)?;
        let total = rows * n;
        let grid = self.grid_1d(total);
        let params = FinishParams {
            total: total as u32,
            n: n as u32,
            row_stride: grid.0 * WORKGROUP as u32,
            mode: u32::from(softmax.is_none()),
            a_shared: u32::from(z.shared),
            pad: [0; 3],
        };
        let uniform = self.uniform(&params);
        let totals = totals.as_deref().unwrap_or(self.dummy.as_ref());
        self.dispatch(
            &kernel,
            &[
                &uniform,
                z.buffer,
                &maxima,
                totals,
                lse,
                softmax.unwrap_or(&unused),
            ],
            grid,
            "rows finish logits",
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_is_bounded_and_the_tree_ends_in_one_partial() {
        for n in [
            0usize,
            1,
            255,
            256,
            4096,
            4097,
            65_535,
            70_000,
            1_280_000,
            1 << 30,
        ] {
            let lengths = stages(n);
            for &length in &lengths {
                let (per_thread, blocks) = stage_shape(length);
                assert!((1..=PER_THREAD).contains(&per_thread), "{n}: bounded loop");
                assert!(
                    blocks * WORKGROUP * per_thread >= length,
                    "{n}: covers the row"
                );
            }
            let last = *lengths.last().expect("one stage at least");
            assert_eq!(stage_shape(last).1, 1, "{n}: ends in one partial");
        }
        assert_eq!(stages(1_280_000), vec![1_280_000, 313]);
        assert_eq!(stages(1 << 30).len(), 3);
    }
}
