//! Loading a kernel module a datasource needs (`qemu_fw_cfg`) from the
//! running kernel's modules directory. The image ships no `modules.dep`, so
//! the file is found by name.

use std::path::{Path, PathBuf};

use initramfs::modules::{self, ModuleLine};

/// Loads `name` (`qemu_fw_cfg`) from `dir` (`/usr/lib/modules/<release>`).
pub fn load(dir: &Path, name: &str) -> Result<(), String> {
    let file = find(dir, &format!("{name}.ko"), 0)
        .ok_or_else(|| format!("{name}.ko is not under {}", dir.display()))?;
    let rel = file
        .strip_prefix(dir)
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .into_owned();
    modules::load(
        dir,
        &ModuleLine {
            path: rel,
            params: String::new(),
        },
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The file named `file` under `dir`, depth-first, a few levels deep.
fn find(dir: &Path, file: &str, depth: u32) -> Option<PathBuf> {
    if depth > 8 {
        return None;
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in &entries {
        if e.file_name().to_str() == Some(file) {
            return Some(e.path());
        }
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| find(&e.path(), file, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_module_file_by_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path().join("kernel/drivers/firmware");
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join("qemu_fw_cfg.ko"), b"").expect("write");
        assert_eq!(
            find(tmp.path(), "qemu_fw_cfg.ko", 0),
            Some(d.join("qemu_fw_cfg.ko"))
        );
        let err = load(tmp.path(), "isofs").expect_err("absent");
        assert!(err.contains("isofs.ko is not under"), "{err}");
    }
}
