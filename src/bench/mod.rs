//! Support for the benchmark binary `jacobench`: timing, the measured
//! ceilings, and the SVG plot.

pub mod plot;
