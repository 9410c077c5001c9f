//! The kernel: its EFI-stub image, its modules, and the load order of the
//! modules the initramfs and the system init need, resolved at build time
//! from each module's `depends=` (Debian ships no modules.dep).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// A kernel ready to be packed.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// `uname -r` of the kernel.
    pub release: String,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

impl Kernel {
    /// The kernel in an unpacked kernel package (`boot/vmlinuz-*`,
    /// `lib/modules/*`).
    pub fn from_package_root(root: &Path) -> Result<Kernel> {
        let boot = root.join("boot");
        let entries = std::fs::read_dir(&boot).io("read kernel package directory", &boot)?;
        let mut images: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .collect();
        images.sort();
        let vmlinuz = images.pop().ok_or_else(|| Error::Kernel {
            kernel: root.display().to_string(),
            message: "package has no boot/vmlinuz-*".into(),
        })?;
        let release = vmlinuz
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_start_matches("vmlinuz-")
                    .to_string()
            })
            .unwrap_or_default();
        let modules_dir = root.join("lib/modules").join(&release);
        Self::from_local(&vmlinuz, &modules_dir)
    }

    /// A kernel from local files; the release is the modules directory's name.
    pub fn from_local(vmlinuz: &Path, modules_dir: &Path) -> Result<Kernel> {
        let release = modules_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kernel = Kernel {
            release,
            vmlinuz: vmlinuz.to_path_buf(),
            modules_dir: modules_dir.to_path_buf(),
        };
        if !modules_dir.is_dir() {
            return Err(kernel.error(format!(
                "modules directory {} does not exist",
                modules_dir.display()
            )));
        }
        let head = read_head(vmlinuz, 4096)?;
        if !is_efi_application(&head) {
            return Err(kernel.error(format!(
                "{} is not an EFI application (no PE header): the kernel needs CONFIG_EFI_STUB",
                vmlinuz.display()
            )));
        }
        Ok(kernel)
    }

    fn error(&self, message: String) -> Error {
        Error::Kernel {
            kernel: self.release.clone(),
            message,
        }
    }

    /// Indexes the modules of this kernel.
    pub fn module_index(&self) -> Result<ModuleIndex> {
        ModuleIndex::scan(&self.modules_dir)
    }

    /// Load order for `wanted` (dependencies first); built-in modules are
    /// skipped. Names missing from the kernel are an error naming them all.
    pub fn load_order(&self, index: &ModuleIndex, wanted: &[String]) -> Result<Vec<String>> {
        index.load_order(wanted).map_err(|missing| {
            self.error(format!(
                "has no module {} (neither loadable nor built in): choose a kernel that provides it, or remove it from the definition",
                missing.join(", ")
            ))
        })
    }
}

fn read_head(path: &Path, n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).io("open kernel image", path)?;
    let mut buf = Vec::with_capacity(n);
    f.take(n as u64)
        .read_to_end(&mut buf)
        .io("read kernel image", path)?;
    Ok(buf)
}

/// Whether `head` starts a PE image (`MZ`, then `PE\0\0` at e_lfanew).
fn is_efi_application(head: &[u8]) -> bool {
    if head.len() < 0x40 || &head[..2] != b"MZ" {
        return false;
    }
    let pe = u32::from_le_bytes([head[0x3c], head[0x3d], head[0x3e], head[0x3f]]) as usize;
    head.get(pe..pe + 4) == Some(b"PE\0\0")
}

/// Module name as the kernel knows it: file stem with `-` → `_`.
pub fn module_name(name_or_file: &str) -> String {
    let base = name_or_file.rsplit('/').next().unwrap_or(name_or_file);
    base.trim_end_matches(".ko").replace('-', "_")
}

/// The loadable and built-in modules of one kernel.
#[derive(Clone, Debug, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// Module name → path relative to the modules directory.
    loadable: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Walks `dir` (`lib/modules/<release>`) for `.ko` files and reads
    /// `modules.builtin`.
    pub fn scan(dir: &Path) -> Result<ModuleIndex> {
        let mut index = ModuleIndex {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "ko")
                    && let Ok(rel) = p.strip_prefix(dir)
                {
                    let rel = rel.to_string_lossy().into_owned();
                    index.loadable.insert(module_name(&rel), rel);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("modules.builtin")) {
            index.builtin = text.lines().map(module_name).collect();
        }
        Ok(index)
    }

    /// An index from a list of (relative path) and built-in names, for tests.
    #[cfg(test)]
    fn from_parts(dir: &Path, loadable: &[&str], builtin: &[&str]) -> ModuleIndex {
        ModuleIndex {
            dir: dir.to_path_buf(),
            loadable: loadable
                .iter()
                .map(|p| (module_name(p), p.to_string()))
                .collect(),
            builtin: builtin.iter().map(|b| module_name(b)).collect(),
        }
    }

    /// The dependencies of a loadable module, from its `.modinfo`.
    fn depends(&self, rel: &str) -> Result<Vec<String>> {
        let path = self.dir.join(rel);
        let bytes = std::fs::read(&path).io("read kernel module", &path)?;
        let info = parse_modinfo(&bytes).map_err(|m| Error::Kernel {
            kernel: path.display().to_string(),
            message: m,
        })?;
        Ok(info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(',').filter(|d| !d.is_empty()).map(module_name))
            .collect())
    }

    /// Paths (relative to the modules directory) of `wanted` and everything
    /// they depend on, each after its dependencies. `Err` lists the names
    /// that are neither loadable nor built in.
    pub fn load_order(&self, wanted: &[String]) -> std::result::Result<Vec<String>, Vec<String>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        let mut missing = Vec::new();
        for w in wanted {
            self.visit(
                &module_name(w),
                &mut order,
                &mut done,
                &mut Vec::new(),
                &mut missing,
            );
        }
        if missing.is_empty() {
            Ok(order)
        } else {
            Err(missing)
        }
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
        missing: &mut Vec<String>,
    ) {
        if done.contains(name) || path.iter().any(|p| p == name) {
            return; // a dependency cycle is broken where it closes
        }
        let Some(rel) = self.loadable.get(name) else {
            if !self.builtin.contains(name) && !missing.iter().any(|m| m == name) {
                missing.push(name.to_string());
            }
            return;
        };
        path.push(name.to_string());
        match self.depends(rel) {
            Ok(deps) => {
                for d in deps {
                    self.visit(&d, order, done, path, missing);
                }
            }
            Err(e) => missing.push(format!("{name} (unreadable: {e})")),
        }
        path.pop();
        done.insert(name.to_string());
        order.push(rel.clone());
    }
}

/// The `key=value` strings of an ELF64 module's `.modinfo` section.
pub fn parse_modinfo(elf: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let bad = |what: &str| format!("not a valid ELF64 kernel module ({what})");
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(bad("header"));
    }
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(|b: [u8; 8]| u64::from_le_bytes(b) as usize)
    };
    let shoff = u64_at(0x28).ok_or_else(|| bad("section table"))?;
    let shentsize = u16_at(0x3a).ok_or_else(|| bad("section table"))?;
    let shnum = u16_at(0x3c).ok_or_else(|| bad("section table"))?;
    let shstrndx = u16_at(0x3e).ok_or_else(|| bad("section table"))?;
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(base)?, u64_at(base + 0x18)?, u64_at(base + 0x20)?))
    };
    let (_, str_off, str_size) = section(shstrndx).ok_or_else(|| bad("section names"))?;
    let names = elf
        .get(str_off..str_off.saturating_add(str_size))
        .ok_or_else(|| bad("section names"))?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i).ok_or_else(|| bad("section header"))?;
        let name = names
            .get(name_off..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            let data = elf
                .get(off..off.saturating_add(size))
                .ok_or_else(|| bad(".modinfo"))?;
            return Ok(data
                .split(|&b| b == 0)
                .filter_map(|kv| std::str::from_utf8(kv).ok())
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect());
        }
    }
    Err(bad("no .modinfo section"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a .modinfo section holding `info`.
    fn fake_module(info: &str) -> Vec<u8> {
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        let info_off = elf.len();
        elf.extend_from_slice(info.as_bytes());
        let str_off = elf.len();
        elf.extend_from_slice(shstr);
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut s = vec![0u8; 64];
            s[..4].copy_from_slice(&name.to_le_bytes());
            s[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            s[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&s);
        };
        sh(0, 0, 0);
        sh(1, info_off, info.len());
        sh(10, str_off, shstr.len());
        elf
    }

    #[test]
    fn modinfo_is_read_from_the_section() {
        let m = fake_module("license=GPL\0depends=dm-bufio,dm-mod\0name=dm_verity\0");
        let info = parse_modinfo(&m).expect("parses");
        assert!(info.contains(&("depends".into(), "dm-bufio,dm-mod".into())));
        assert!(parse_modinfo(b"not elf").is_err());
        assert!(parse_modinfo(&m[..70]).is_err());
    }

    #[test]
    fn load_order_puts_dependencies_first_and_skips_builtins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mods = [
            (
                "kernel/md/dm-verity.ko",
                "depends=dm-bufio,dm-mod,reed_solomon\0",
            ),
            ("kernel/md/dm-bufio.ko", "depends=dm-mod\0"),
            ("kernel/md/dm-mod.ko", "depends=\0"),
            ("kernel/fs/erofs.ko", "depends=\0"),
        ];
        for (rel, info) in mods {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, fake_module(info)).expect("write");
        }
        let index = ModuleIndex::from_parts(
            dir.path(),
            &mods.map(|(r, _)| r),
            &[
                "kernel/lib/reed_solomon/reed_solomon.ko",
                "kernel/drivers/block/virtio_blk.ko",
            ],
        );
        let order = index
            .load_order(&["dm-verity".into(), "virtio_blk".into(), "erofs".into()])
            .expect("all found");
        assert_eq!(
            order,
            [
                "kernel/md/dm-mod.ko",
                "kernel/md/dm-bufio.ko",
                "kernel/md/dm-verity.ko",
                "kernel/fs/erofs.ko"
            ]
        );
        assert_eq!(
            index.load_order(&["nope".into(), "erofs".into(), "nope".into()]),
            Err(vec!["nope".to_string()])
        );
    }

    #[test]
    fn pe_detection() {
        let mut head = vec![0u8; 0x100];
        head[..2].copy_from_slice(b"MZ");
        head[0x3c] = 0x80;
        head[0x80..0x84].copy_from_slice(b"PE\0\0");
        assert!(is_efi_application(&head));
        head[0x81] = b'X';
        assert!(!is_efi_application(&head));
    }
}
