//! Every WGSL source is parsed and validated by naga, with no adapter: each
//! library file in the context a kernel uses it in, and the full kernel of
//! every operation.

use chainrule::UnaryOp;
use chainrule::shaders;

fn validate(label: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(source)));
}

#[test]
fn every_library_file_validates_in_order() {
    // Each file may use those before it, as the registry concatenates them.
    let mut prefix = String::new();
    for (name, source) in shaders::FILES.iter().take(4) {
        prefix.push_str(source);
        prefix.push('\n');
        validate(name, &prefix);
    }
}

#[test]
fn standalone_kernels_validate() {
    for (name, source) in &shaders::FILES[5..] {
        validate(name, &shaders::with_common(source));
    }
}

#[test]
fn every_unary_kernel_validates() {
    for op in UnaryOp::catalogue() {
        validate(&op.to_string(), &shaders::unary_kernel(op));
    }
}

#[test]
fn registry_lists_every_file_in_the_folder() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&folder)
        .expect("shaders/ exists")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wgsl"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = shaders::FILES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every file in shaders/ is in the registry");
}
