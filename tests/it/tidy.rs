//! Structural rules that keep the code the shape ARCHITECTURE.md describes.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("reading a source folder")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The decision core stays pure: no I/O crate or module is named in `src/ingest/`.
#[test]
fn ingest_core_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let forbidden = [
        "tokio",
        "sqlx",
        "async_imap",
        "lettre",
        "std::fs",
        "std::net",
        "std::process",
    ];
    for file in rust_files(&root.join("src/ingest")) {
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        for name in forbidden {
            assert!(
                !text.contains(name),
                "{} names {name}: the core must stay pure",
                file.display()
            );
        }
    }
}

/// Every source file appears in the code map, so the map stays true.
#[test]
fn architecture_maps_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for file in rust_files(&root.join("src")) {
        let relative = file
            .strip_prefix(root.join("src"))
            .expect("under src")
            .display()
            .to_string();
        assert!(
            map.contains(&relative),
            "ARCHITECTURE.md does not mention src/{relative}"
        );
    }
}
