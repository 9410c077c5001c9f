//! The initramfs: the static `tandem-init` as `/init`, the modules it needs
//! to reach a verified /usr and their load list, packed as a zstd-compressed
//! newc cpio (layout in docs/boot-chain.md).

use std::path::Path;

use crate::build::cpio::CpioWriter;
use crate::error::{IoContext, Result};

/// zstd level: fast to build, and decompression speed hardly depends on it.
const ZSTD_LEVEL: i32 = 9;

/// Builds the compressed initramfs.
///
/// `modules` are paths relative to `modules_dir`, already in load order.
pub fn build(
    init_binary: &Path,
    modules_dir: &Path,
    release: &str,
    modules: &[String],
    mtime: u32,
) -> Result<Vec<u8>> {
    let init = std::fs::read(init_binary).io("read", init_binary)?;
    let mut w = CpioWriter::new(Vec::with_capacity(init.len() * 2), mtime);
    let cpio_err = |e| crate::error::Error::Io {
        action: "write initramfs archive",
        path: init_binary.into(),
        cause: e,
    };
    for d in [
        "dev",
        "etc",
        "etc/tandem",
        "proc",
        "run",
        "sys",
        "sysroot",
        "lib",
        "lib/modules",
    ] {
        w.dir(d, 0o755).map_err(cpio_err)?;
    }
    // The kernel opens /dev/console for /init before devtmpfs is mounted.
    w.char_device("dev/console", 0o600, 5, 1)
        .map_err(cpio_err)?;
    w.file("init", 0o755, &init).map_err(cpio_err)?;

    let base = format!("lib/modules/{release}");
    let mut dirs: Vec<String> = vec![base.clone()];
    let mut list =
        String::from("# modules for the initramfs, dependencies first (written by tandem build)\n");
    for rel in modules {
        let mut parent = String::new();
        for part in rel
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent = if parent.is_empty() {
                part.to_string()
            } else {
                format!("{parent}/{part}")
            };
            let d = format!("{base}/{parent}");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        list.push_str(rel);
        list.push('\n');
    }
    for d in &dirs {
        w.dir(d, 0o755).map_err(cpio_err)?;
    }
    for rel in modules {
        let src = modules_dir.join(rel);
        let data = std::fs::read(&src).io("read module", &src)?;
        w.file(&format!("{base}/{rel}"), 0o644, &data)
            .map_err(cpio_err)?;
    }
    w.file("etc/tandem/modules.load", 0o644, list.as_bytes())
        .map_err(cpio_err)?;
    let archive = w.finish().map_err(cpio_err)?;
    zstd::bulk::compress(&archive, ZSTD_LEVEL).io("compress initramfs", init_binary)
}
