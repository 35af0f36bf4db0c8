//! Unit tests of the parent module.

use super::*;

fn case(name: &str, paths: &[(&str, f64)], floor: Option<f64>) -> PlotCase {
    PlotCase {
        case: name.to_string(),
        paths: paths.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        floor,
    }
}

fn sample() -> Vec<PlotCase> {
    vec![
        case(
            "sigmoid",
            &[
                ("gpu-resident", 1.2e9),
                ("gpu-end-to-end", 3e8),
                ("cpu", 5e7),
            ],
            Some(2e9),
        ),
        case("tanh", &[("gpu-resident", 9e8), ("cpu", 4e7)], None),
    ]
}

/// Minimal well-formedness check: tags balance, attributes are quoted,
/// and every `&` starts a known entity. Enough to catch broken escaping or
/// a mismatched close tag without pulling in an XML parser.
fn assert_well_formed(doc: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc;
    let mut roots = 0;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let after = &rest[lt + 1..];
        let gt = after.find('>').expect("unterminated tag");
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("close tag without open tag");
            assert_eq!(open, name.trim(), "mismatched close tag");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
        let name = &body[..name_end];
        assert!(!name.is_empty(), "empty tag name in <{tag}>");
        check_attributes(&body[name_end..]);
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    check_text(rest);
    assert!(rest.trim().is_empty(), "text after root element");
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    assert_eq!(roots, 1, "expected exactly one root element");
}

fn check_attributes(mut attrs: &str) {
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return;
        }
        let eq = attrs.find('=').expect("attribute without value");
        let name = attrs[..eq].trim();
        assert!(!name.is_empty() && !name.contains(char::is_whitespace));
        let value = &attrs[eq + 1..];
        assert!(value.starts_with('"'), "unquoted attribute {name}");
        let end = value[1..].find('"').expect("unterminated attribute");
        check_text(&value[1..1 + end]);
        attrs = &value[end + 2..];
    }
}

fn check_text(text: &str) {
    assert!(!text.contains('>') || text.trim().is_empty() || !text.contains('<'));
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| entity.starts_with(e)),
            "bare ampersand in {text:?}"
        );
    }
}

fn bar_widths(svg: &str) -> Vec<f64> {
    svg.lines()
        .filter(|l| l.starts_with(r#"<rect class="bar""#))
        .map(|l| {
            let start = l.find(r#"width=""#).expect("bar has width") + 7;
            let len = l[start..].find('"').expect("closing quote");
            l[start..start + len].parse().expect("numeric width")
        })
        .collect()
}

#[test]
fn escapes_markup_characters() {
    assert_eq!(
        xml_escape(r#"a&b<c>"d"'e'"#),
        "a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos;"
    );
    assert_eq!(xml_escape("bell\u{7}"), "bell\u{FFFD}");
    let cases = vec![case("<script>&", &[("p\"'<>", 1e6)], Some(2e6))];
    let svg = throughput_svg("T & <b>", "sub \"x\" 'y'", "B/s", &cases);
    assert!(svg.contains("T &amp; &lt;b&gt;"));
    assert!(svg.contains("sub &quot;x&quot; &apos;y&apos;"));
    assert!(svg.contains("&lt;script&gt;&amp;"));
    assert!(svg.contains("p&quot;&apos;&lt;&gt;"));
    assert!(!svg.contains("<script>") && !svg.contains("<b>"));
    assert_well_formed(&svg);
}

#[test]
fn sample_is_well_formed_standalone_svg() {
    let svg = throughput_svg("jacobench", "adapter · 2026-01-01", "B/s", &sample());
    assert_well_formed(&svg);
    assert!(svg.starts_with("<svg "));
    for attr in [
        r#"xmlns="http://www.w3.org/2000/svg""#,
        "width=",
        "height=",
        "viewBox=",
    ] {
        assert!(svg.contains(attr), "missing {attr}");
    }
    assert!(svg.contains(r##"fill="#ffffff""##));
    assert!(svg.contains("1.20 GB/s"));
    assert!(svg.contains(">floor<"));
    assert_eq!(svg.matches(r#"class="floor""#).count(), 1);
}

#[test]
fn paths_keep_their_colour_across_groups() {
    let svg = throughput_svg("t", "s", "B/s", &sample());
    let colour_of = |path: &str| -> Vec<String> {
        svg.lines()
            .filter(|l| l.contains(&format!("<title>{path}: ")))
            .map(|l| {
                let start = l.find(r#"fill=""#).expect("fill") + 6;
                l[start..start + 7].to_string()
            })
            .collect()
    };
    let resident = colour_of("gpu-resident");
    let cpu = colour_of("cpu");
    assert_eq!(resident.len(), 2);
    assert_eq!(resident[0], resident[1]);
    assert_eq!(cpu[0], cpu[1]);
    assert_ne!(resident[0], cpu[0]);
}

#[test]
fn empty_input_says_no_data() {
    let svg = throughput_svg("empty", "", "B/s", &[]);
    assert_well_formed(&svg);
    assert!(svg.contains("no data"));
    assert!(svg.contains("viewBox="));
    assert!(svg.contains("xmlns="));
}

#[test]
fn non_finite_values_are_skipped_not_printed() {
    let cases = vec![
        case(
            "bad",
            &[
                ("a", f64::NAN),
                ("b", f64::INFINITY),
                ("c", f64::NEG_INFINITY),
                ("d", 0.0),
                ("e", -3.0),
                ("f", 1e6),
            ],
            Some(f64::NAN),
        ),
        case("worse", &[("a", f64::NAN)], Some(f64::INFINITY)),
        case("no paths", &[], Some(-1.0)),
    ];
    let svg = throughput_svg("t", "s", "B/s", &cases);
    assert_well_formed(&svg);
    assert!(!svg.contains("NaN"));
    assert!(!svg.to_lowercase().contains("inf"));
    assert_eq!(bar_widths(&svg).len(), 1);
    assert_eq!(svg.matches(": n/a<").count(), 6);
    assert!(svg.contains(">a: n/a<") && svg.contains(">floor n/a<"));

    let all_bad = vec![case("x", &[("a", f64::NAN)], None)];
    let svg = throughput_svg("t", "s", "B/s", &all_bad);
    assert_well_formed(&svg);
    assert!(!svg.contains("NaN"));
    assert!(bar_widths(&svg).is_empty());
}

#[test]
fn wider_bar_means_larger_value() {
    let values = [1e3, 1e5, 3e4, 2e7, 2.5e7, 999.0, 1e9];
    let paths: Vec<(String, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("p{i}"), *v))
        .collect();
    let cases = vec![PlotCase {
        case: "mono".into(),
        paths,
        floor: Some(5e9),
    }];
    let widths = bar_widths(&throughput_svg("t", "s", "", &cases));
    assert_eq!(widths.len(), values.len());
    for i in 0..values.len() {
        for j in 0..values.len() {
            // Coordinates are rounded to 0.1 px, so values a hair apart
            // may tie; they must never swap order.
            if values[i] < values[j] {
                assert!(widths[i] <= widths[j], "{} vs {}", values[i], values[j]);
            }
            if values[i] * 1.01 < values[j] {
                assert!(widths[i] < widths[j], "{} vs {}", values[i], values[j]);
            }
        }
    }
    assert!(widths.iter().all(|w| *w > 0.0));
}

#[test]
fn single_value_axis_spans_a_decade() {
    for v in [1e6, 5e6, 9.99e6, 1e-30, 1e300] {
        let svg = throughput_svg("t", "s", "B/s", &[case("one", &[("cpu", v)], None)]);
        assert_well_formed(&svg);
        let ticks = svg.matches(r#"class="tick""#).count() / 2;
        assert!(ticks >= 2, "{v}: {ticks} ticks");
        let widths = bar_widths(&svg);
        assert_eq!(widths.len(), 1);
        assert!(widths[0] > 0.0);
    }
}

#[test]
fn long_case_names_are_cut_on_char_boundaries() {
    let long = "ü".repeat(200);
    let svg = throughput_svg("t", "s", "B/s", &[case(&long, &[("cpu", 1e6)], None)]);
    assert_well_formed(&svg);
    assert!(svg.contains('…'));
    assert!(svg.contains(&long), "full name kept as tooltip");
    let shown = format!("{}…</text>", "ü".repeat(MAX_CASE_CHARS - 1));
    assert!(svg.contains(&shown), "visible name is the cut one");
}

#[test]
fn values_use_three_significant_digits() {
    assert_eq!(value_label(1.2e9, "B/s"), "1.20 GB/s");
    assert_eq!(value_label(5e7, "B/s"), "50.0 MB/s");
    assert_eq!(value_label(123_456.0, "B/s"), "123 kB/s");
    assert_eq!(value_label(999.7, "B/s"), "1.00 kB/s");
    assert_eq!(value_label(1000.0, ""), "1.00k");
    assert_eq!(value_label(7.0, "x"), "7.00 x");
    assert_eq!(value_label(2.5e-3, "s"), "2.50 ms");
    assert_eq!(value_label(1.5e30, ""), "1.50e30");
    assert_eq!(value_label(f64::NAN, "B/s"), "n/a");
    assert_eq!(decade_label(0), "1");
    assert_eq!(decade_label(7), "10M");
    assert_eq!(decade_label(9), "1G");
    assert_eq!(decade_label(-1), "100m");
    assert_eq!(decade_label(40), "1e40");
}
