//! `modules.load`: the kernel modules to load, in order (docs/boot-chain.md).
//!
//! One module per line, a path relative to `/lib/modules/<uname -r>/`
//! (`/usr/lib/modules/…` on the system), optionally followed by module
//! parameters; `#` starts a comment. Loading is `finit_module`; a module that
//! is already loaded (EEXIST) counts as loaded.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, ModuleListError};

/// One line of `modules.load`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleLine {
    /// Path relative to the modules directory.
    pub path: String,
    /// Module parameters, space separated (`soft_margin=30`), possibly empty.
    pub params: String,
}

impl ModuleLine {
    /// The module's name as the kernel knows it (`dm-verity.ko` → `dm_verity`).
    pub fn name(&self) -> String {
        let file = self.path.rsplit('/').next().unwrap_or(&self.path);
        let stem = file.split('.').next().unwrap_or(file);
        stem.replace('-', "_")
    }

    /// Whether this is a watchdog driver (or the watchdog core).
    pub fn is_watchdog(&self) -> bool {
        self.path.starts_with("kernel/drivers/watchdog/")
    }
}

/// Parses the text of a `modules.load` file.
pub fn parse(text: &str) -> Result<Vec<ModuleLine>, ModuleListError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (path, params) = match line.split_once(char::is_whitespace) {
            Some((p, rest)) => (p, rest.trim()),
            None => (line, ""),
        };
        // Stay inside the modules directory: relative, no `..`.
        let escapes = Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes || !path.ends_with(".ko") {
            return Err(ModuleListError {
                line: i + 1,
                text: raw.to_string(),
                reason: "expected a relative path ending in .ko, without ..",
            });
        }
        let params = params.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push(ModuleLine {
            path: path.to_string(),
            params,
        });
    }
    Ok(out)
}

/// The list with watchdog drivers moved to the front (order otherwise kept),
/// so that a hang while loading the rest is already covered by the watchdog.
pub fn watchdog_first(list: Vec<ModuleLine>) -> Vec<ModuleLine> {
    let (mut first, rest): (Vec<_>, Vec<_>) = list.into_iter().partition(ModuleLine::is_watchdog);
    first.extend(rest);
    first
}

/// Outcome of loading one module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// The module was inserted now.
    Inserted,
    /// It was loaded already (EEXIST).
    AlreadyLoaded,
}

/// Where the kernel lists loaded modules (and built-in ones with parameters).
pub const SYS_MODULE: &str = "/sys/module";

/// Loads one module from `base` with `finit_module`, unless the kernel
/// already has it: `finit_module` would read and signature-check the whole
/// file before answering EEXIST, which costs tens of milliseconds per module
/// under emulation (the system stage's list repeats the initramfs's
/// dependencies).
pub fn load(base: &Path, module: &ModuleLine) -> Result<Loaded, Error> {
    if Path::new(SYS_MODULE).join(module.name()).exists() {
        return Ok(Loaded::AlreadyLoaded);
    }
    let path = base.join(&module.path);
    let fail = |err: io::Error| Error::Module {
        path: path.clone(),
        err,
    };
    let file = File::open(&path).map_err(fail)?;
    let params = crate::sys::cstr(&module.params).map_err(fail)?;
    // SAFETY: finit_module(fd, const char *params, int flags) with a valid fd
    // and a NUL-terminated string that outlive the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if ret == 0 {
        return Ok(Loaded::Inserted);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(Loaded::AlreadyLoaded);
    }
    Err(fail(err))
}

/// Reads and parses the list at `list_path`.
pub fn read_list(list_path: &Path) -> Result<Vec<ModuleLine>, Error> {
    let text = std::fs::read_to_string(list_path).map_err(|err| Error::Read {
        path: list_path.to_path_buf(),
        err,
    })?;
    parse(&text).map_err(|e| Error::ModuleList {
        path: list_path.to_path_buf(),
        err: e,
    })
}

/// The modules directory for the running kernel under `root`
/// (`/lib/modules/<release>` or `/usr/lib/modules/<release>`).
pub fn modules_dir(root: &Path) -> io::Result<PathBuf> {
    Ok(root.join(crate::sys::kernel_release()?))
}

/// Loads every module in order; failures are collected rather than fatal,
/// because a module can legitimately refuse a machine (a CPU-specific crypto
/// driver) and whatever truly depended on it fails later with its own error.
pub fn load_all(base: &Path, list: &[ModuleLine]) -> Vec<Error> {
    list.iter().filter_map(|m| load(base, m).err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_params_and_comments() {
        let text = "# initramfs modules\n\
                    kernel/drivers/watchdog/softdog.ko soft_margin=30   soft_noboot=0\n\
                    \n\
                    kernel/drivers/block/virtio_blk.ko # the disk\n\
                    \tkernel/drivers/md/dm-verity.ko\n";
        let list = parse(text).expect("valid");
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].path, "kernel/drivers/watchdog/softdog.ko");
        assert_eq!(list[0].params, "soft_margin=30 soft_noboot=0");
        assert_eq!(list[1].params, "");
        assert_eq!(list[2].name(), "dm_verity");
    }

    #[test]
    fn refuses_paths_outside_the_directory() {
        for bad in [
            "/lib/modules/x/a.ko",
            "../a.ko",
            "kernel/../../a.ko",
            "kernel/a.o",
        ] {
            let err = parse(&format!("{bad}\n")).expect_err(bad);
            assert_eq!(err.line, 1);
        }
        let err = parse("kernel/a.ko\nkernel/b\n").expect_err("no .ko");
        assert_eq!(err.line, 2);
    }

    #[test]
    fn watchdog_drivers_go_first_in_order() {
        let list = parse(
            "kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/watchdog/watchdog.ko\n\
             kernel/drivers/block/virtio_blk.ko\n\
             kernel/drivers/watchdog/softdog.ko\n",
        )
        .expect("valid");
        let names: Vec<_> = watchdog_first(list).iter().map(ModuleLine::name).collect();
        assert_eq!(names, ["watchdog", "softdog", "virtio_ring", "virtio_blk"]);
    }

    #[test]
    fn missing_module_is_an_error_naming_the_path() {
        let m = ModuleLine {
            path: "kernel/none.ko".into(),
            params: String::new(),
        };
        let err = load(Path::new("/nonexistent"), &m).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/kernel/none.ko"),
            "{err}"
        );
    }
}
