//! SVG throughput chart for `jacobench --plot FILE.svg`.
//!
//! The text report is exact but dense; this chart is for people who would
//! rather look than read. Each benchmark case becomes a group of horizontal
//! bars, one per execution path, with the hardware floor (bytes over copy
//! bandwidth) drawn across the group as a dark marker, so the distance between
//! a bar and the floor shows how much headroom is left.
//!
//! The x axis is log10 because the paths routinely differ by decades (a CPU
//! fallback next to a GPU-resident kernel). Everything is plain `std`: the SVG
//! is assembled as a string so the benchmark binary needs no plotting crate.

use std::fmt::{self, Write as _};

/// One case of a workload: its measured throughputs per execution path, and the floor.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotCase {
    /// Case name shown on the left of its group, e.g. `"sigmoid"`.
    pub case: String,
    /// `(path name, throughput)`, e.g. `("gpu-resident", 1.2e9)`. Bars keep this
    /// order; a path keeps the same colour in every group.
    pub paths: Vec<(String, f64)>,
    /// The best throughput the hardware allows (bytes over copy bandwidth).
    pub floor: Option<f64>,
}

/// Okabe–Ito palette, reordered so the first colours are the most distinct on
/// white. Black is left out because it is reserved for the floor marker.
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
];

const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const FLOOR_COLOUR: &str = "#1a1a1a";

const BASE_WIDTH: f64 = 960.0;
const MAX_WIDTH: f64 = 1600.0;
const MIN_PLOT_WIDTH: f64 = 360.0;
const MARGIN: f64 = 20.0;
const BAR_H: f64 = 18.0;
const BAR_GAP: f64 = 5.0;
const GROUP_PAD: f64 = 9.0;
const GROUP_GAP: f64 = 6.0;
const AXIS_H: f64 = 26.0;

/// Long case names would squeeze the plot to nothing; past this many
/// characters they are cut, and the full name stays in a tooltip.
const MAX_CASE_CHARS: usize = 40;

/// Renders `cases` as a standalone SVG document (white background, fixed pixel
/// size and a matching `viewBox`).
///
/// `unit` is appended to every value label after an SI prefix, so pass the
/// base unit (`"B/s"`, `"elem/s"`), not a scaled one. Throughputs that are not
/// finite and positive get no bar and are labelled "n/a"; an empty `cases`
/// gives a small chart saying "no data".
pub fn throughput_svg(title: &str, subtitle: &str, unit: &str, cases: &[PlotCase]) -> String {
    let header_width = text_width(title, 18.0).max(text_width(subtitle, 13.0)) + 2.0 * MARGIN;
    if cases.is_empty() {
        return empty_svg(title, subtitle, header_width);
    }

    // Colours are assigned by first appearance so that the legend order matches
    // what the reader meets first in the chart.
    let mut path_names: Vec<&str> = Vec::new();
    for case in cases {
        for (name, _) in &case.paths {
            if !path_names.contains(&name.as_str()) {
                path_names.push(name);
            }
        }
    }
    let colour_of = |name: &str| {
        let idx = path_names.iter().position(|p| *p == name).unwrap_or(0);
        PALETTE[idx % PALETTE.len()]
    };

    let axis = LogAxis::covering(
        cases
            .iter()
            .flat_map(|c| c.paths.iter().map(|(_, v)| *v).chain(c.floor))
            .filter(|v| is_plottable(*v)),
    );

    let floor_labels: Vec<Option<String>> = cases
        .iter()
        .map(|c| c.floor.map(|f| format!("floor {}", value_label(f, unit))))
        .collect();
    let case_labels: Vec<String> = cases.iter().map(|c| truncate(&c.case)).collect();
    let left = case_labels
        .iter()
        .map(|l| text_width(l, 13.0))
        .chain(floor_labels.iter().flatten().map(|l| text_width(l, 11.0)))
        .fold(60.0, f64::max)
        + MARGIN
        + 14.0;
    let right = cases
        .iter()
        .flat_map(|c| c.paths.iter())
        .map(|(_, v)| text_width(&value_label(*v, unit), 11.0))
        .fold(40.0, f64::max)
        + MARGIN
        + 10.0;
    let width = (left + MIN_PLOT_WIDTH + right)
        .max(BASE_WIDTH)
        .max(header_width.min(MAX_WIDTH));
    let plot_left = left;
    let plot_right = width - right;
    let x_of = |v: f64| axis.x(v, plot_left, plot_right);

    let mut svg = Svg::default();

    // Legend: path swatches then the floor marker, wrapping onto new rows when
    // there are many paths.
    let legend_top = 64.0;
    let mut legend = Svg::default();
    let (mut lx, mut ly) = (MARGIN, legend_top);
    let any_floor = cases.iter().any(|c| c.floor.is_some_and(is_plottable));
    let items = path_names.iter().map(|n| (Some(colour_of(n)), *n));
    let floor_item = any_floor.then_some((None, "floor"));
    for (colour, name) in items.chain(floor_item) {
        let w = 18.0 + text_width(name, 12.0) + 22.0;
        if lx + w > width - MARGIN && lx > MARGIN {
            lx = MARGIN;
            ly += 20.0;
        }
        match colour {
            Some(c) => legend.put(format_args!(
                r#"<rect x="{}" y="{}" width="12" height="12" fill="{c}"/>"#,
                px(lx),
                px(ly)
            )),
            None => legend.put(format_args!(
                r#"<line x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="{FLOOR_COLOUR}" stroke-width="3"/>"#,
                px(ly - 2.0),
                px(ly + 14.0),
                x = px(lx + 6.0)
            )),
        }
        legend.put(format_args!(
            r##"<text x="{}" y="{}" font-size="12" fill="#222">{}</text>"##,
            px(lx + 18.0),
            px(ly + 10.5),
            xml_escape(name)
        ));
        lx += w;
    }

    // Tick labels sit both above and below the bars so a tall chart can be read
    // without scrolling back to one axis.
    let plot_top = ly + 20.0 + AXIS_H;
    let group_heights: Vec<f64> = cases
        .iter()
        .map(|c| {
            let bars = c.paths.len().max(1) as f64;
            let bars_h = bars * BAR_H + (bars - 1.0) * BAR_GAP;
            // Room for the name and the floor line under it, even with one bar.
            bars_h.max(34.0) + 2.0 * GROUP_PAD
        })
        .collect();
    let plot_bottom = plot_top
        + group_heights.iter().sum::<f64>()
        + GROUP_GAP * (cases.len().saturating_sub(1)) as f64;
    let height = plot_bottom + AXIS_H + 36.0;

    svg.open(width, height, title);
    header(&mut svg, title, subtitle);
    svg.buf.push_str(&legend.buf);

    // Alternate group bands first so gridlines are drawn over them.
    let mut y = plot_top;
    for (i, h) in group_heights.iter().enumerate() {
        if i % 2 == 0 {
            svg.put(format_args!(
                r##"<rect x="{}" y="{}" width="{}" height="{}" fill="#f4f5f7"/>"##,
                px(MARGIN),
                px(y - GROUP_GAP / 2.0),
                px(plot_right - MARGIN),
                px(h + GROUP_GAP)
            ));
        }
        y += h + GROUP_GAP;
    }

    // Minor gridlines only while there is room for them to mean something.
    if axis.span() <= 5 {
        for k in axis.lo..axis.hi {
            for m in 2..10 {
                let x = x_of(f64::from(m) * 10f64.powi(k));
                svg.put(format_args!(
                    r##"<line x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="#e3e3e3" stroke-width="1"/>"##,
                    px(plot_top),
                    px(plot_bottom),
                    x = px(x)
                ));
            }
        }
    }
    let step = axis.tick_step();
    let mut k = axis.lo;
    while k <= axis.hi {
        let x = px(x_of(10f64.powi(k)));
        let label = decade_label(k);
        svg.put(format_args!(
            r##"<line x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="#b8b8b8" stroke-width="1"/>"##,
            px(plot_top - 4.0),
            px(plot_bottom + 4.0)
        ));
        for ty in [plot_top - 8.0, plot_bottom + 17.0] {
            svg.put(format_args!(
                r##"<text class="tick" x="{x}" y="{}" font-size="11" fill="#444" text-anchor="middle">{}</text>"##,
                px(ty),
                xml_escape(&label)
            ));
        }
        k += step;
    }
    svg.put(format_args!(
        r##"<line x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="#666" stroke-width="1"/>"##,
        px(plot_top - 4.0),
        px(plot_bottom + 4.0),
        x = px(plot_left)
    ));
    let caption = if unit.is_empty() {
        "throughput (log scale)".to_string()
    } else {
        format!("throughput, {unit} (log scale)")
    };
    svg.put(format_args!(
        r##"<text x="{}" y="{}" font-size="12" fill="#444" text-anchor="middle">{}</text>"##,
        px((plot_left + plot_right) / 2.0),
        px(plot_bottom + 38.0),
        xml_escape(&caption)
    ));

    let mut y = plot_top;
    for ((case, h), (name, floor_label)) in cases
        .iter()
        .zip(&group_heights)
        .zip(case_labels.iter().zip(&floor_labels))
    {
        draw_group(
            &mut svg,
            case,
            Group {
                top: y,
                height: *h,
                name,
                floor_label: floor_label.as_deref(),
                unit,
                plot_left,
            },
            &x_of,
            &colour_of,
        );
        y += h + GROUP_GAP;
    }

    svg.close()
}

struct Group<'a> {
    top: f64,
    height: f64,
    name: &'a str,
    floor_label: Option<&'a str>,
    unit: &'a str,
    plot_left: f64,
}

fn draw_group(
    svg: &mut Svg,
    case: &PlotCase,
    g: Group<'_>,
    x_of: &dyn Fn(f64) -> f64,
    colour_of: &dyn Fn(&str) -> &'static str,
) {
    let mid = g.top + g.height / 2.0;
    let name_y = if g.floor_label.is_some() {
        mid - 2.0
    } else {
        mid + 4.5
    };
    let tooltip = if g.name == case.case {
        String::new()
    } else {
        format!("<title>{}</title>", xml_escape(&case.case))
    };
    svg.put(format_args!(
        r##"<text x="{}" y="{}" font-size="13" font-weight="bold" fill="#111" text-anchor="end">{tooltip}{}</text>"##,
        px(g.plot_left - 10.0),
        px(name_y),
        xml_escape(g.name)
    ));
    if let Some(label) = g.floor_label {
        svg.put(format_args!(
            r##"<text x="{}" y="{}" font-size="11" fill="#555" text-anchor="end">{}</text>"##,
            px(g.plot_left - 10.0),
            px(mid + 12.0),
            xml_escape(label)
        ));
    }

    // Bars and their labels are collected separately so every label is drawn
    // after the floor marker; its white halo then keeps it legible where the
    // marker crosses it.
    let mut labels = Svg::default();
    let mut by = g.top + GROUP_PAD;
    for (path, value) in &case.paths {
        let text_y = px(by + BAR_H / 2.0 + 4.0);
        if is_plottable(*value) {
            let end = x_of(*value);
            let label = value_label(*value, g.unit);
            svg.put(format_args!(
                r#"<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                px(g.plot_left),
                px(by),
                px(end - g.plot_left),
                px(BAR_H),
                colour_of(path),
                xml_escape(path),
                xml_escape(&label)
            ));
            labels.put(format_args!(
                r##"<text x="{}" y="{text_y}" font-size="11" fill="#222" stroke="#fff" stroke-width="3" paint-order="stroke" stroke-linejoin="round">{}</text>"##,
                px(end + 5.0),
                xml_escape(&label)
            ));
        } else {
            // A failed or skipped measurement still shows up, so a missing bar
            // is never mistaken for a tiny one; with no bar there is no colour
            // to tie it to the legend, hence the path name.
            labels.put(format_args!(
                r##"<text x="{}" y="{text_y}" font-size="11" font-style="italic" fill="#777">{}: n/a</text>"##,
                px(g.plot_left + 5.0),
                xml_escape(path)
            ));
        }
        by += BAR_H + BAR_GAP;
    }

    if let Some(floor) = case.floor.filter(|f| is_plottable(*f)) {
        let x = px(x_of(floor));
        svg.put(format_args!(
            r#"<line class="floor" x1="{x}" x2="{x}" y1="{}" y2="{}" stroke="{FLOOR_COLOUR}" stroke-width="3"><title>floor</title></line>"#,
            px(g.top + 2.0),
            px(g.top + g.height - 2.0)
        ));
    }
    svg.buf.push_str(&labels.buf);
}

fn empty_svg(title: &str, subtitle: &str, header_width: f64) -> String {
    let width = header_width.clamp(480.0, MAX_WIDTH);
    let height = 160.0;
    let mut svg = Svg::default();
    svg.open(width, height, title);
    header(&mut svg, title, subtitle);
    svg.put(format_args!(
        r##"<text x="{}" y="110" font-size="16" fill="#777" text-anchor="middle">no data</text>"##,
        px(width / 2.0)
    ));
    svg.close()
}

fn header(svg: &mut Svg, title: &str, subtitle: &str) {
    svg.put(format_args!(
        r##"<text x="{MARGIN}" y="28" font-size="18" font-weight="bold" fill="#111">{}</text>"##,
        xml_escape(title)
    ));
    svg.put(format_args!(
        r##"<text x="{MARGIN}" y="48" font-size="13" fill="#555">{}</text>"##,
        xml_escape(subtitle)
    ));
}

/// String builder for the document; writing into a `String` cannot fail, so
/// the `fmt::Result` is dropped in one place rather than at every element.
#[derive(Default)]
struct Svg {
    buf: String,
}

impl Svg {
    fn put(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.buf.write_fmt(args);
        self.buf.push('\n');
    }

    fn open(&mut self, width: f64, height: f64, title: &str) {
        let (w, h) = (px(width.ceil()), px(height.ceil()));
        self.put(format_args!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}">"#
        ));
        self.put(format_args!("<title>{}</title>", xml_escape(title)));
        self.put(format_args!(
            r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##
        ));
    }

    fn close(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

/// Log10 axis over whole decades.
struct LogAxis {
    lo: i32,
    hi: i32,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = f64>) -> Self {
        let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !(min.is_finite() && max.is_finite()) {
            // Nothing measurable: any decade will do, the bars all read "n/a".
            return Self { lo: 0, hi: 1 };
        }
        // Starting the axis at least 0.3 decade below the smallest value keeps
        // its bar visibly longer than zero; otherwise a value right on a
        // decade would get no bar at all.
        let lo = (min.log10() - 0.3).floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        // Round the span up to whole tick steps so the right edge always
        // carries a label.
        let mut axis = Self { lo, hi };
        let step = axis.tick_step();
        axis.hi = lo + (axis.span() + step - 1) / step * step;
        axis
    }

    fn span(&self) -> i32 {
        self.hi - self.lo
    }

    /// Decades between labelled ticks, so a chart spanning many decades keeps
    /// its labels apart.
    fn tick_step(&self) -> i32 {
        ((self.span() + 9) / 10).max(1)
    }

    fn x(&self, v: f64, left: f64, right: f64) -> f64 {
        let t = (v.log10() - f64::from(self.lo)) / f64::from(self.span());
        if t.is_finite() {
            left + t.clamp(0.0, 1.0) * (right - left)
        } else {
            left
        }
    }
}

fn is_plottable(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

const SI_PREFIXES: [&str; 17] = [
    "y", "z", "a", "f", "p", "n", "µ", "m", "", "k", "M", "G", "T", "P", "E", "Z", "Y",
];

/// The SI prefix for `10^exp3`, where `exp3` is a multiple of three.
fn si_prefix(exp3: i32) -> Option<&'static str> {
    let idx = usize::try_from(exp3 / 3 + 8).ok()?;
    if exp3 % 3 != 0 {
        return None;
    }
    SI_PREFIXES.get(idx).copied()
}

/// Three significant digits with an SI prefix, e.g. `1.20 GB/s`.
fn value_label(v: f64, unit: &str) -> String {
    if !is_plottable(v) {
        return "n/a".to_string();
    }
    let (number, prefix) = three_sig(v);
    if unit.is_empty() {
        format!("{number}{prefix}")
    } else {
        format!("{number} {prefix}{unit}")
    }
}

/// Splits a positive finite `v` into a 3-significant-digit mantissa and an SI
/// prefix; outside the prefix range it falls back to scientific notation.
fn three_sig(v: f64) -> (String, &'static str) {
    let mut exp3 = (v.log10().floor() as i32).div_euclid(3) * 3;
    if si_prefix(exp3).is_none() {
        return (format!("{v:.2e}"), "");
    }
    let mut m = v / 10f64.powi(exp3);
    // log10 is not exact near powers of ten; renormalise into [1, 1000).
    if m >= 1000.0 {
        m /= 1000.0;
        exp3 += 3;
    } else if m < 1.0 {
        m *= 1000.0;
        exp3 -= 3;
    }
    let mut text = match m {
        m if m >= 100.0 => format!("{m:.0}"),
        m if m >= 10.0 => format!("{m:.1}"),
        m => format!("{m:.2}"),
    };
    // 999.7 rounds to "1000"; it should read "1.00 k" instead.
    if text.len() > 3 && !text.contains('.') {
        m /= 1000.0;
        exp3 += 3;
        text = format!("{m:.2}");
    }
    match si_prefix(exp3) {
        Some(prefix) => (text, prefix),
        None => (format!("{v:.2e}"), ""),
    }
}

/// Tick label for `10^k`: `1`, `10`, `100`, `1k`, ... `100G`, and `1e30` once
/// the SI prefixes run out.
fn decade_label(k: i32) -> String {
    let exp3 = k.div_euclid(3) * 3;
    match si_prefix(exp3) {
        Some(prefix) => {
            let zeros = "0".repeat(usize::try_from(k - exp3).unwrap_or(0));
            format!("1{zeros}{prefix}")
        }
        None => format!("1e{k}"),
    }
}

/// Cuts a case name to `MAX_CASE_CHARS` characters (not bytes, so multi-byte
/// names are never split mid-character).
fn truncate(name: &str) -> String {
    if name.chars().count() <= MAX_CASE_CHARS {
        return name.to_string();
    }
    let mut cut: String = name.chars().take(MAX_CASE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Rough rendered width; there is no font metrics in `std`, and a slightly
/// generous estimate only costs a little whitespace.
fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * font_size * 0.62
}

/// Escapes text for use in element content and attribute values. Characters
/// XML 1.0 forbids outright (most C0 controls) are replaced, since a single one
/// would make the whole file unreadable to strict parsers.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Coordinates with one decimal keep the file small; sub-pixel detail beyond
/// that is invisible. Non-finite input cannot reach here by construction, but
/// it must never leak "NaN" into the document.
fn px(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.1}");
        match s.strip_suffix(".0") {
            Some(whole) if whole != "-0" => whole.to_string(),
            Some(_) => "0".to_string(),
            None => s,
        }
    } else {
        "0".to_string()
    }
}

#[cfg(test)]
mod tests;
