//! `tandem build`: definition in, disk image and per-slot artefacts out.
//!
//! Everything is made in a work directory inside the output directory and
//! moved into place at the end, `build.json` last: an interrupted build
//! never leaves a complete-looking result.

use std::path::{Path, PathBuf};

use tandem_contract::Partition;
use tandem_contract::cmdline::UsrVerity;
use tandem_contract::esp::{self, LoaderConf, SlotConf, SlotFiles, Writer};
use tandem_contract::etc;
use tandem_contract::os_release::OsRelease;
use tandem_contract::service::{
    EXEC_LAUNCHER, Restart, RunsOn, ServiceFile, ServiceFileError, ServiceType, StdioMode,
};
use tandem_slot::{GptPrio, Slot, verity};

use crate::build::apt;
use crate::build::definition::{self, Definition, KernelSource};
use crate::build::disk;
use crate::build::ext4::{self, Node};
use crate::build::fat::{self, Content};
use crate::build::initrd;
use crate::build::kernel::Kernel;
use crate::build::layout::{self, DiskPlan, Identity};
use crate::build::lockfile::{self, Change, Lock};
use crate::build::maintscripts::{self, Finding};
use crate::build::manifest::{self, Artifact, BuildManifest, NoteKind, PackageNote};
use crate::build::resolve::{self, Resolved};
use crate::build::root::{self, RootTree};
use crate::build::tmpfiles;
use crate::build::users;
use crate::build::usr_tree;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// PID 1 (initramfs /init and system init) in the artefacts directory.
pub const INIT_BINARY: &str = "tandem-init";
/// The node's tools and daemons (tandemctl, tandem-updated, tandem-agent)
/// in the artefacts directory: a multi-call binary chosen by `argv[0]`.
pub const NODE_BINARY: &str = "tandem-node";
/// Bootloader in the artefacts directory.
pub const BOOTLOADER: &str = "BOOTX64.EFI";

/// File names in the output directory.
pub mod outputs {
    /// The disk image.
    pub const DISK: &str = "disk.raw";
    /// The /usr slot image: file system + verity tree.
    pub const USR: &str = "usr.img";
    /// The kernel.
    pub const KERNEL: &str = "vmlinuz";
    /// The initramfs.
    pub const INITRD: &str = "initrd";
    /// The manifest.
    pub const MANIFEST: &str = "build.json";
}

/// How to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Output directory (created if needed).
    pub out_dir: PathBuf,
    /// Directory with `tandem-init` (static musl) and `BOOTX64.EFI`.
    pub artifacts_dir: PathBuf,
    /// Cache for downloaded packages.
    pub cache_dir: PathBuf,
    /// Timestamp for everything in the image.
    pub source_date_epoch: i64,
    /// Keep the work directory for debugging.
    pub keep_work: bool,
    /// The packages must be exactly those of the definition's lock file
    /// (checked before anything is downloaded); the lock file is never
    /// written.
    pub locked: bool,
}

/// What the build left for the caller to report.
#[derive(Debug)]
pub struct BuildResult {
    /// The manifest as written.
    pub manifest: BuildManifest,
    /// Things worth knowing that were not errors (replaced package files,
    /// applets linked, …). What packages ask for that the build does not do
    /// is in the manifest's `notes`.
    pub notes: Vec<String>,
    /// What became of the lock file.
    pub lock: LockReport,
}

/// The lock file after a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockReport {
    /// The lock file.
    pub path: PathBuf,
    /// What happened to it.
    pub outcome: LockOutcome,
}

/// What a build did to the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    /// It lists what the build used.
    Unchanged,
    /// There was none; it was written with this many packages.
    Created(usize),
    /// It was rewritten: these packages moved.
    Updated(Vec<Change>),
    /// It could not be read and was written anew.
    Replaced {
        /// Packages written.
        packages: usize,
        /// Why the old one was unusable.
        reason: String,
    },
}

/// Builds the image described by `def`.
pub fn build(
    def: &Definition,
    opts: &BuildOptions,
    progress: &mut Progress,
) -> Result<BuildResult> {
    let init_bin = opts.artifacts_dir.join(INIT_BINARY);
    let node_bin = opts.artifacts_dir.join(NODE_BINARY);
    let bootloader = opts.artifacts_dir.join(BOOTLOADER);
    for (what, path) in [
        ("init binary tandem-init", &init_bin),
        ("node binary tandem-node", &node_bin),
        ("bootloader BOOTX64.EFI", &bootloader),
    ] {
        if !path.is_file() {
            return Err(Error::ArtifactMissing {
                what,
                path: path.clone(),
            });
        }
    }
    std::fs::create_dir_all(&opts.out_dir).io("create output directory", &opts.out_dir)?;
    let work = opts.out_dir.join(".work");
    if work.exists() {
        std::fs::remove_dir_all(&work).io("remove old work directory", &work)?;
    }
    usr_tree::mkdirs(&work)?;
    let result = Builder {
        def,
        opts,
        work: &work,
        notes: Vec::new(),
    }
    .run(&init_bin, &bootloader, progress);
    if !opts.keep_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

struct Builder<'a> {
    def: &'a Definition,
    opts: &'a BuildOptions,
    work: &'a Path,
    notes: Vec<String>,
}

impl Builder<'_> {
    fn run(
        mut self,
        init_bin: &Path,
        bootloader: &Path,
        progress: &mut Progress,
    ) -> Result<BuildResult> {
        let def = self.def;
        let ids = Identity::new(&def.image.name, &def.image.version);
        let plan = layout::plan(&def.partitions, &ids);
        let epoch = self.opts.source_date_epoch;
        let usr = self.work.join("usr");
        usr_tree::mkdirs(&usr)?;

        // Kernel and packages: resolve, hold against the lock, then fetch.
        let cache = apt::Cache::new(self.opts.cache_dir.clone());
        let kernel_package = match def.kernel_source() {
            KernelSource::Package(name) => Some(name),
            KernelSource::Local { .. } => None,
        };
        let resolution = progress.step("resolve packages (apt)", |_| {
            resolve::resolve(
                &cache,
                self.work,
                kernel_package.as_deref(),
                &def.usr.packages,
            )
        })?;
        let lock = Lock::of(&resolution);
        let lock_path = lockfile::path_for(&def.path);
        let lock_outcome = self.hold_to_lock(&lock_path, &lock)?;
        let (kernel, kernel_pkg) = progress.step("kernel", |s| {
            self.kernel(&cache, &usr, resolution.kernel.clone(), s)
        })?;
        let (packages, package_notes) = progress.step("packages", |s| {
            self.packages(&cache, &usr, &resolution.packages, s)
        })?;
        let index = kernel.module_index()?;
        let initramfs_modules = kernel.load_order(&index, &def.kernel.initramfs_modules)?;
        let system_modules = kernel.load_order(&index, &def.kernel.system_modules)?;

        // The rest of /usr.
        progress.step("usr tree", |_| self.populate_usr(&usr, &system_modules))?;
        progress.step("users and groups", |_| {
            users::install(def, &usr, &mut self.notes)
        })?;

        // /usr file system and its hash tree.
        let usr_img = self.work.join(outputs::USR);
        let fs_size = progress.step("usr file system (mkfs.erofs)", |_| {
            crate::build::erofs::build(&usr_img, &usr, &ids.uuid("usr"), epoch)
        })?;
        let salt = ids.verity_salt();
        let tree = progress.step("dm-verity hash tree", |s| {
            append_verity(&usr_img, fs_size, &salt, s)
        })?;
        let usr_size = fs_size + tree.tree.len() as u64;
        let usr_part = plan.partition(Slot::A.partition()).map_or(0, |p| p.size());
        if usr_size > usr_part {
            return Err(too_large(
                "/usr file system with its hash tree",
                usr_size,
                &plan,
                Slot::A.partition(),
            ));
        }

        // Boot files.
        let initrd_path = self.work.join(outputs::INITRD);
        progress.step("initramfs", |_| {
            let bytes = initrd::build(
                init_bin,
                &usr.join("lib/modules").join(&kernel.release),
                &kernel.release,
                &initramfs_modules,
                epoch_u32(epoch),
            )?;
            std::fs::write(&initrd_path, bytes).io("write", &initrd_path)
        })?;
        let kernel_out = self.work.join(outputs::KERNEL);
        std::fs::copy(&kernel.vmlinuz, &kernel_out).io("copy kernel to", &kernel_out)?;
        let slot_conf = slot_conf(&def.image.version, &tree, &salt).render(Writer::Builder);
        let esp = self.work.join("esp.img");
        progress.step("EFI system partition", |_| {
            self.esp(
                &esp,
                &plan,
                &ids,
                bootloader,
                &kernel_out,
                &initrd_path,
                &slot_conf,
            )
        })?;
        let oem = self.work.join("oem.img");
        progress.step("OEM partition", |_| self.oem(&oem, &plan, &ids))?;
        let root = self.work.join("root.img");
        let root_notes =
            progress.step("ROOT file system", |_| self.root(&root, &usr, &plan, &ids))?;
        self.notes.extend(root_notes);

        // The disk.
        let disk_path = self.work.join(outputs::DISK);
        let contents = [
            disk::Content {
                part: Partition::Esp,
                image: Some(&esp),
                attributes: 0,
            },
            disk::Content {
                part: Slot::A.partition(),
                image: Some(&usr_img),
                attributes: GptPrio::new(1, 0, true).0,
            },
            disk::Content {
                part: Slot::B.partition(),
                image: None,
                attributes: GptPrio::new(0, 0, false).0,
            },
            disk::Content {
                part: Partition::Oem,
                image: Some(&oem),
                attributes: 0,
            },
            disk::Content {
                part: Partition::Root,
                image: Some(&root),
                attributes: 0,
            },
        ];
        let disk_sha256 = progress.step("disk image", |_| {
            disk::assemble(&disk_path, &plan, &contents)
        })?;

        // Manifest, then publish.
        let outputs_list = [
            outputs::DISK,
            outputs::USR,
            outputs::KERNEL,
            outputs::INITRD,
        ];
        let artifacts = progress.step("checksums", |_| {
            outputs_list
                .iter()
                .map(|name| {
                    let p = self.work.join(name);
                    let size = std::fs::metadata(&p).io("stat", &p)?.len();
                    let sha256 = if *name == outputs::DISK {
                        disk_sha256.clone()
                    } else {
                        apt::sha256_file(&p)?
                    };
                    Ok((name.to_string(), Artifact { size, sha256 }))
                })
                .collect::<Result<_>>()
        })?;
        let manifest = BuildManifest {
            format: manifest::FORMAT,
            image: manifest::ImageInfo {
                name: def.image.name.clone(),
                version: def.image.version.clone(),
                channel: def.image.channel.clone(),
                arch: def.image.arch.clone(),
            },
            source_date_epoch: epoch,
            kernel: manifest::KernelInfo {
                release: kernel.release.clone(),
                package: kernel_pkg,
                initramfs_modules,
                system_modules,
            },
            packages,
            notes: package_notes,
            disk: disk_info(&plan, &contents),
            usr: manifest::UsrInfo {
                file: outputs::USR.into(),
                filesystem: "erofs".into(),
                fs_size,
                size: usr_size,
                verity: manifest::VerityInfo {
                    root_hash: verity::hex(&tree.root),
                    salt: verity::hex(&salt),
                    algorithm: "sha256".into(),
                    data_blocks: tree.data_blocks,
                    hash_offset: fs_size,
                },
            },
            artifacts,
        };
        publish(self.work, &self.opts.out_dir, &outputs_list, &manifest)?;
        // The lock file last: only a build that succeeded moves it.
        if lock_outcome != LockOutcome::Unchanged {
            let definition = def.path.file_name().map_or_else(
                || "the definition".into(),
                |n| n.to_string_lossy().into_owned(),
            );
            lockfile::write(&lock_path, &lock, &definition)?;
        }
        Ok(BuildResult {
            manifest,
            notes: self.notes,
            lock: LockReport {
                path: lock_path,
                outcome: lock_outcome,
            },
        })
    }

    /// Compares the resolution with the lock file. With `--locked` a
    /// difference or a missing lock file is an error (before anything is
    /// downloaded); otherwise it says what writing the lock will change.
    fn hold_to_lock(&self, path: &Path, lock: &Lock) -> Result<LockOutcome> {
        let old = match lockfile::read(path) {
            Ok(old) => old,
            Err(e) if self.opts.locked => return Err(e),
            Err(e) => {
                return Ok(LockOutcome::Replaced {
                    packages: lock.packages.len(),
                    reason: e.to_string(),
                });
            }
        };
        let Some(old) = old else {
            if self.opts.locked {
                return Err(Error::LockMissing {
                    path: path.to_path_buf(),
                });
            }
            return Ok(LockOutcome::Created(lock.packages.len()));
        };
        let changes = lockfile::diff(&old, lock);
        if changes.is_empty() {
            return Ok(LockOutcome::Unchanged);
        }
        if self.opts.locked {
            return Err(Error::LockMismatch {
                path: path.to_path_buf(),
                name: path.file_name().map_or_else(
                    || "the lock file".into(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                changes: changes
                    .iter()
                    .map(|c| format!("  {c}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        Ok(LockOutcome::Updated(changes))
    }

    fn kernel(
        &mut self,
        cache: &apt::Cache,
        usr: &Path,
        package: Option<apt::PackageInfo>,
        step: &crate::progress::Step,
    ) -> Result<(Kernel, Option<manifest::PackageRef>)> {
        let modules_root = usr.join("lib/modules");
        usr_tree::mkdirs(&modules_root)?;
        if let Some(info) = package {
            step.detail(&format!(
                "{} {} ({} MiB)",
                info.name,
                info.version,
                info.size >> 20
            ));
            let root = cache.unpacked(&info)?;
            let k = Kernel::from_package_root(&root)?;
            let dest = modules_root.join(&k.release);
            usr_tree::copy_tree(&k.modules_dir, &dest)?;
            let pkg = manifest::PackageRef {
                name: info.name,
                version: info.version,
                sha256: info.sha256,
            };
            return Ok((
                Kernel {
                    modules_dir: dest,
                    ..k
                },
                Some(pkg),
            ));
        }
        let KernelSource::Local {
            vmlinuz,
            modules_dir,
        } = self.def.kernel_source()
        else {
            unreachable!("a kernel package is always resolved before this step");
        };
        let k = Kernel::from_local(&vmlinuz, &modules_dir)?;
        let dest = modules_root.join(&k.release);
        usr_tree::copy_tree(&modules_dir, &dest)?;
        Ok((
            Kernel {
                modules_dir: dest,
                ..k
            },
            None,
        ))
    }

    /// Unpacks the packages into /usr in name order, sets up their
    /// alternatives and declares their /var files; returns the manifest's
    /// package list and what the packages ask for that the build does not do.
    fn packages(
        &mut self,
        cache: &apt::Cache,
        usr: &Path,
        resolved: &[Resolved],
        step: &crate::progress::Step,
    ) -> Result<(Vec<manifest::Package>, Vec<PackageNote>)> {
        let mut list = Vec::new();
        let mut notes: Vec<PackageNote> = Vec::new();
        let mut alternatives = Vec::new();
        let mut findings: Vec<(String, Finding)> = Vec::new();
        let mut var: Vec<(String, usr_tree::VarEntry)> = Vec::new();
        let mut sorted: Vec<&Resolved> = resolved.iter().collect();
        sorted.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        let needed: Vec<&apt::PackageInfo> = sorted
            .iter()
            .map(|r| &r.info)
            .filter(|p| cache.needs_deb(p))
            .collect();
        if !needed.is_empty() {
            step.detail(&format!("downloading {} packages", needed.len()));
            cache.fetch_all(&needed)?;
        }
        for r in sorted {
            let info = &r.info;
            step.detail(&info.name);
            let root = cache.unpacked(info)?;
            let outside = usr_tree::merge_package(&info.name, &root, usr, &mut self.notes)?;
            var.extend(outside.var.into_iter().map(|e| (info.name.clone(), e)));
            for (top, files) in outside.skipped {
                notes.push(PackageNote {
                    package: info.name.clone(),
                    kind: NoteKind::Outside,
                    message: outside_message(&info.name, &top, files),
                });
            }
            let control = cache.control(info)?;
            let script = |name: &str| {
                std::fs::read(control.join(name))
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            let (pre, post) = (script("preinst"), script("postinst"));
            let sysusers = usr_tree::ships_sysusers(&root);
            for f in maintscripts::classify(pre.as_deref(), post.as_deref(), sysusers) {
                match f {
                    Finding::Alternative(a) => alternatives.push((info.name.clone(), a)),
                    f => findings.push((info.name.clone(), f)),
                }
            }
            list.push(manifest::Package {
                name: info.name.clone(),
                version: info.version.clone(),
                arch: info.arch.clone(),
                sha256: info.sha256.clone(),
                size: info.size,
                installed_size: info.installed_size,
                reason: r.reason,
            });
        }
        // Users and groups base-passwd's masters already have, or that the
        // definition declares, are fine; so are /etc files it provides.
        let mut known = base_accounts(usr);
        known.extend(self.def.users.iter().map(|u| u.name.clone()));
        known.extend(self.def.groups.iter().map(|g| g.name.clone()));
        let provided: Vec<&str> = self
            .def
            .usr
            .files
            .iter()
            .map(|f| f.target.as_str())
            .collect();
        for (package, f) in findings {
            match &f {
                Finding::User { name: Some(n), .. } if known.contains(n) => continue,
                Finding::ConfigFile { target, .. } if provided.contains(&target.as_str()) => {
                    continue;
                }
                _ => {}
            }
            let kind = match f {
                Finding::User { .. } => NoteKind::User,
                Finding::ConfigFile { .. } => NoteKind::ConfigFile,
                Finding::Alternative(_) => NoteKind::Alternative,
                Finding::Command { .. } => NoteKind::Script,
            };
            if let Some(message) = f.message(&package) {
                notes.push(PackageNote {
                    package,
                    kind,
                    message,
                });
            }
        }
        let (linked, alt_notes) = usr_tree::apply_alternatives(usr, &alternatives)?;
        if linked > 0 {
            self.notes.push(format!(
                "linked {linked} alternatives in /usr (highest priority)"
            ));
        }
        notes.extend(alt_notes);
        let existing: Vec<String> = tandem_contract::root::DIRS
            .iter()
            .filter(|(p, _)| *p == "var" || p.starts_with("var/"))
            .map(|(p, _)| format!("/{p}"))
            .collect();
        let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
        let entries: Vec<usr_tree::VarEntry> = var.iter().map(|(_, e)| e.clone()).collect();
        let (conf, unusable) = tmpfiles::render(&entries, &existing);
        if !conf.is_empty() {
            write_file(&usr.join(tmpfiles::PACKAGES_CONF), conf.as_bytes(), 0o644)?;
        }
        for path in unusable {
            let package = var
                .iter()
                .find(|(_, e)| e.path() == path)
                .map_or_else(String::new, |(p, _)| p.clone());
            notes.push(PackageNote {
                message: format!(
                    "{package} ships {path}, whose name cannot be written in tmpfiles.d: it is in /usr/share/factory but not created on the node; create it with [[root.files]] if {package} needs it"
                ),
                package,
                kind: NoteKind::Outside,
            });
        }
        notes.sort();
        notes.dedup();
        Ok((list, notes))
    }

    fn populate_usr(&mut self, usr: &Path, system_modules: &[String]) -> Result<()> {
        let def = self.def;
        let tandem_lib = usr.join("lib/tandem");
        usr_tree::mkdirs(&tandem_lib)?;
        // The init is in the initramfs only: PID 1 goes on from there.
        let node_bin = self.opts.artifacts_dir.join(NODE_BINARY);
        let dst = tandem_lib.join(NODE_BINARY);
        std::fs::copy(&node_bin, &dst).io("copy node binary to", &dst)?;
        usr_tree::set_mode(&dst, 0o755)?;
        usr_tree::link_if_absent(&usr.join("bin/tandemctl"), "../lib/tandem/tandem-node")?;
        if def.usr.busybox_applets {
            let n = usr_tree::busybox_applets(usr)?;
            self.notes.push(format!("linked {n} busybox applets"));
        }
        for f in &def.usr.files {
            let rel = definition::usr_files_destination(&f.target).unwrap_or_default();
            usr_tree::copy_entry(f, &def.resolve(&f.source), &usr.join(rel))?;
        }
        let img = &def.image;
        write_file(
            &usr.join("lib/os-release"),
            OsRelease {
                image: &img.name,
                version: &img.version,
                channel: &img.channel,
                arch: &img.arch,
            }
            .render()
            .as_bytes(),
            0o644,
        )?;
        let mut list = String::from(
            "# modules the system init loads, dependencies first (written by tandem build)\n",
        );
        for m in system_modules {
            list.push_str(m);
            list.push('\n');
        }
        write_file(&tandem_lib.join("modules.load"), list.as_bytes(), 0o644)?;
        let sysctl = def
            .kernel
            .sysctl_file()
            .map_err(|message| Error::DefinitionValue {
                path: def.path.clone(),
                field: "kernel.sysctl".into(),
                message,
            })?;
        if let Some(text) = sysctl {
            let rel = tandem_contract::sysctl::IMAGE_FILE.trim_start_matches("/usr/");
            let dst = usr.join(rel);
            usr_tree::mkdirs(dst.parent().unwrap_or(usr))?;
            write_file(&dst, text.as_bytes(), 0o644)?;
        }
        let trust = tandem_lib.join("trust");
        usr_tree::mkdirs(&trust)?;
        for key in &def.update.trusted_keys {
            let src = def.resolve(key);
            let name = src
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| "key.pub".into());
            let dst = trust.join(name);
            std::fs::copy(&src, &dst).io("copy trusted key to", &dst)?;
            usr_tree::set_mode(&dst, 0o644)?;
        }
        // The update engine and the reboot agent: roles of the node binary,
        // chosen by the name it is started as, run as image services.
        write_file(
            &tandem_lib.join("update.toml"),
            update_toml(&def.update).as_bytes(),
            0o644,
        )?;
        let service_file = |service: &str, text: std::result::Result<String, ServiceFileError>| {
            let text = text.map_err(|err| Error::ServiceFile {
                service: service.to_string(),
                err,
            })?;
            write_file(
                &tandem_lib.join("services").join(format!("{service}.toml")),
                text.as_bytes(),
                0o644,
            )
        };
        for (role, service) in NODE_SERVICES {
            usr_tree::link_if_absent(&tandem_lib.join(role), NODE_BINARY)?;
            service_file(service, service_toml(role))?;
        }
        service_file(INSTALL_SERVICE, install_service_toml())?;
        // The services' launcher (PID 1 starts it for services with
        // commands before their program, environment files, expansion or
        // users by name), another role of the node binary.
        // The provisioning step PID 1 runs at every boot (cloud-config).
        for role in [EXEC_LAUNCHER, tandem_contract::provision::PROGRAM] {
            usr_tree::link_if_absent(&usr.join(role.trim_start_matches("/usr/")), NODE_BINARY)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn esp(
        &self,
        path: &Path,
        plan: &DiskPlan,
        ids: &Identity,
        bootloader: &Path,
        kernel: &Path,
        initrd: &Path,
        slot_conf: &str,
    ) -> Result<()> {
        let part = plan.partition(Partition::Esp).map_or(0, |p| p.size());
        // Room for both slots' kernel and initramfs, plus 10 %: an update
        // must never find the ESP full (Flatcar's 128 MiB ESP did).
        let per_slot = file_size(kernel)? + file_size(initrd)? + slot_conf.len() as u64;
        let need = (file_size(bootloader)? + 2 * per_slot) * 11 / 10 + (2 << 20);
        if need > part {
            return Err(too_large(
                "two slots' kernel and initramfs",
                need,
                plan,
                Partition::Esp,
            ));
        }
        let loader_conf = LoaderConf {
            timeout: self.def.boot.timeout,
            options: self.def.boot.cmdline.join(" "),
            live: false,
        }
        .render(Writer::Builder);
        let slot = SlotFiles::of(Slot::A);
        let files = [
            (esp::BOOTLOADER.to_string(), Content::File(bootloader)),
            (
                esp::LOADER_CONF.to_string(),
                Content::Bytes(loader_conf.as_bytes()),
            ),
            (slot.kernel, Content::File(kernel)),
            (slot.initrd, Content::File(initrd)),
            (slot.conf, Content::Bytes(slot_conf.as_bytes())),
        ];
        let vol = fat::Volume {
            size: part,
            label: Partition::Esp.label(),
            volume_id: ids.volume_id("esp"),
            fat32: true,
            epoch: self.opts.source_date_epoch,
        };
        fat::build(path, vol, &files)
    }

    fn oem(&self, path: &Path, plan: &DiskPlan, ids: &Identity) -> Result<()> {
        let oem = &self.def.oem;
        let cmdline = if oem.cmdline.is_empty() {
            String::new()
        } else {
            format!(
                "# extra kernel arguments (written by tandem build)\n{}\n",
                oem.cmdline.join(" ")
            )
        };
        let sources: Vec<PathBuf> = oem
            .files
            .iter()
            .map(|f| self.def.resolve(&f.source))
            .collect();
        let mut files: Vec<fat::FatFile<'_>> = Vec::new();
        if !cmdline.is_empty() {
            files.push((esp::OEM_CMDLINE.into(), Content::Bytes(cmdline.as_bytes())));
        }
        for (f, src) in oem.files.iter().zip(&sources) {
            if src.is_dir() {
                return Err(Error::DefinitionValue {
                    path: self.def.path.clone(),
                    field: "oem.files".into(),
                    message: format!(
                        "{}: directories are not supported on OEM; list the files",
                        src.display()
                    ),
                });
            }
            files.push((
                f.target.trim_start_matches('/').to_string(),
                Content::File(src),
            ));
        }
        let size = plan.partition(Partition::Oem).map_or(0, |p| p.size());
        let vol = fat::Volume {
            size,
            label: Partition::Oem.label(),
            volume_id: ids.volume_id("oem"),
            fat32: false,
            epoch: self.opts.source_date_epoch,
        };
        fat::build(path, vol, &files)
    }

    /// ROOT: its layout, the definition's files, then what a node's first
    /// boot would add (the factory /etc, the accounts, the homes), so that
    /// the first boot only checks. Returns the notes of that last part.
    fn root(
        &self,
        path: &Path,
        usr: &Path,
        plan: &DiskPlan,
        ids: &Identity,
    ) -> Result<Vec<String>> {
        let mut tree = RootTree::default();
        for (p, m) in tandem_contract::root::DIRS {
            tree.put(Node::dir(format!("/{p}"), *m));
        }
        for (link, target) in tandem_contract::root::LINKS {
            tree.put(Node::symlink(format!("/{link}"), *target));
        }
        for f in &self.def.root.files {
            let src = self.def.resolve(&f.source);
            if src.is_dir() {
                return Err(Error::DefinitionValue {
                    path: self.def.path.clone(),
                    field: "root.files".into(),
                    message: format!(
                        "{}: directories are not supported on ROOT; list the files",
                        src.display()
                    ),
                });
            }
            // Parents first, then the file (default mode 0644).
            let mut parent = String::new();
            for part in f
                .target
                .trim_start_matches('/')
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |(_, p)| p)
            {
                parent = format!("{parent}/{part}");
                if !matches!(tree.get(&parent).map(|n| &n.kind), Some(ext4::Kind::Dir(_))) {
                    tree.put(Node::dir(parent.clone(), 0o755));
                }
            }
            tree.put(Node::file(
                f.target.clone(),
                src,
                f.mode_bits().unwrap_or(0o644),
            ));
        }
        let mut notes = Vec::new();
        let factory = usr.join(etc::FACTORY_ETC.trim_start_matches("/usr/"));
        root::copy_factory(&mut tree, &factory, &mut notes)?;
        root::add_accounts(&mut tree, usr, &self.work.join("root-etc"), &mut notes)?;
        let size = plan.partition(Partition::Root).map_or(0, |p| p.size());
        ext4::build(
            path,
            size,
            Partition::Root.label(),
            &ids.uuid("root"),
            self.opts.source_date_epoch,
            tree.nodes(),
        )?;
        Ok(notes)
    }
}

/// What to do about a package's top-level directory that is not in the image.
fn outside_message(package: &str, top: &str, files: usize) -> String {
    let what = format!(
        "{package} ships {files} file{} under /{top}, which is not in the image",
        if files == 1 { "" } else { "s" }
    );
    match top {
        "boot" => format!(
            "{what}: Tandem boots the kernel of [kernel] from the EFI system partition; if {package} is a kernel, name it in [kernel] package"
        ),
        _ => format!(
            "{what} (only /usr, /etc and /var are): if {package} needs them, place them under /usr with [[usr.files]] or on ROOT with [[root.files]]"
        ),
    }
}

/// Names in base-passwd's fixed users and groups, as unpacked in /usr.
fn base_accounts(usr: &Path) -> std::collections::BTreeSet<String> {
    ["passwd.master", "group.master"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(usr.join("share/base-passwd").join(f)).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.split(':').next())
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Node roles installed as image services: (link in /usr/lib/tandem to
/// the node binary, service name).
pub const NODE_SERVICES: [(&str, &str); 2] =
    [("tandem-updated", "updater"), ("tandem-agent", "agent")];

/// `/usr/lib/tandem/update.toml`: the update engine's defaults from the
/// definition's `[update]`. No channel: a node follows the channel of the
/// image it was first installed with (os-release `TANDEM_CHANNEL`, recorded
/// by the engine on first start), so an image promoted from another channel
/// does not move it.
pub fn update_toml(update: &crate::build::definition::UpdateSection) -> String {
    // Every value is checked when the definition is loaded: no quotes or
    // backslashes to escape.
    let mut s = String::from(
        "# Update engine defaults (written by tandem build from the image definition).\n\
         # Override any of them in /etc/tandem/update.toml.\n",
    );
    if let Some(server) = &update.server {
        s.push_str(&format!("server = \"{server}\"\n"));
    }
    s.push_str(&format!(
        "check-interval = \"{}\"\nreboot-strategy = \"{}\"\nallow-downgrade = false\n",
        update.check_interval,
        update.reboot_strategy.as_str()
    ));
    s
}

/// `/usr/lib/tandem/services/<service>.toml` for a node role, written
/// through the contract's [`ServiceFile`] (so PID 1 reads what is
/// written). Both roles talk to the network (etcd, the update server), so
/// they start once it is configured.
/// A live boot has no slot to update: they run on installed nodes only.
pub fn service_toml(role: &str) -> std::result::Result<String, ServiceFileError> {
    written_service(ServiceFile {
        exec: vec![format!("/usr/lib/tandem/{role}")],
        restart: Some(Restart::Always),
        stdio: Some(StdioMode::Log),
        runs_on: Some(RunsOn::Installed),
        after_network: Some(true),
        ..ServiceFile::default()
    })
}

/// The unattended installer's service: on a live boot from a Tandem ISO,
/// `tandemctl install --unattended` installs what `tandem iso customize`
/// embedded (and does nothing when nothing is), its progress on the
/// console.
pub const INSTALL_SERVICE: &str = "install";

/// [`INSTALL_SERVICE`]'s file.
pub fn install_service_toml() -> std::result::Result<String, ServiceFileError> {
    written_service(ServiceFile {
        description: Some("unattended install embedded in this ISO (tandem iso customize)".into()),
        kind: Some(ServiceType::Oneshot),
        exec: vec![
            "/usr/bin/tandemctl".into(),
            "install".into(),
            "--unattended".into(),
        ],
        stdio: Some(StdioMode::Console),
        runs_on: Some(RunsOn::Live),
        ..ServiceFile::default()
    })
}

fn written_service(file: ServiceFile) -> std::result::Result<String, ServiceFileError> {
    Ok(format!(
        "# written by tandem build; replace it with /etc/tandem/services/ to change it\n{}",
        file.render()?
    ))
}

/// `slot-<x>.conf` for a slot holding `version` with `tree`.
pub fn slot_conf(version: &str, tree: &verity::HashTree, salt: &[u8]) -> SlotConf {
    SlotConf::new(
        version,
        &UsrVerity {
            root_hash: verity::hex(&tree.root),
            salt: verity::hex(salt),
            data_blocks: tree.data_blocks,
        },
    )
}

fn append_verity(
    usr_img: &Path,
    fs_size: u64,
    salt: &[u8],
    step: &crate::progress::Step,
) -> Result<verity::HashTree> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(usr_img)
        .io("open", usr_img)?;
    let blocks = fs_size / verity::BLOCK_SIZE as u64;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &f);
    let tree = verity::build(&mut reader, blocks, salt, |done| {
        step.detail(&format!("{} of {} MiB", done >> 20, fs_size >> 20));
    })
    .io("hash", usr_img)?;
    use std::io::{Seek, Write};
    f.seek(std::io::SeekFrom::Start(fs_size))
        .io("seek", usr_img)?;
    f.write_all(&tree.tree).io("append hash tree to", usr_img)?;
    Ok(tree)
}

fn disk_info(plan: &DiskPlan, contents: &[disk::Content<'_>]) -> manifest::DiskInfo {
    manifest::DiskInfo {
        file: outputs::DISK.into(),
        size: plan.size(),
        block_size: layout::BLOCK,
        guid: plan.disk_guid.to_string(),
        partitions: plan
            .partitions
            .iter()
            .map(|p| manifest::PartitionInfo {
                number: p.number,
                label: p.label.into(),
                type_guid: p.type_guid.to_string(),
                guid: p.guid.to_string(),
                offset: p.offset(),
                size: p.size(),
                attributes: format!(
                    "{:#018x}",
                    contents
                        .iter()
                        .find(|c| c.part == p.part)
                        .map_or(0, |c| c.attributes)
                ),
            })
            .collect(),
    }
}

/// Moves outputs into `out`: the old manifest goes first, the new one last.
fn publish(work: &Path, out: &Path, names: &[&str], manifest: &BuildManifest) -> Result<()> {
    let manifest_path = out.join(outputs::MANIFEST);
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).io("remove old", &manifest_path)?;
    }
    for name in names {
        let dst = out.join(name);
        std::fs::rename(work.join(name), &dst).io("move output to", &dst)?;
    }
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Io {
        action: "serialise",
        path: manifest_path.clone(),
        cause: std::io::Error::other(e),
    })?;
    let tmp = work.join(outputs::MANIFEST);
    write_file(&tmp, &json, 0o644)?;
    std::fs::rename(&tmp, &manifest_path).io("move output to", &manifest_path)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        usr_tree::mkdirs(parent)?;
    }
    std::fs::write(path, bytes).io("write", path)?;
    usr_tree::set_mode(path, mode)
}

fn file_size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).io("stat", p)?.len())
}

fn too_large(what: &str, need: u64, plan: &DiskPlan, part: Partition) -> Error {
    let part = plan.partition(part);
    Error::TooLarge {
        what: what.into(),
        partition: part.map_or("?", |p| p.label).into(),
        key: part.map_or("?", |p| p.size_key).into(),
        need: need.div_ceil(1 << 20),
        have: part.map_or(0, |p| p.size() >> 20),
    }
}

fn epoch_u32(epoch: i64) -> u32 {
    u32::try_from(epoch.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::definition::{RebootStrategy, UpdateSection};

    fn keys(text: &str) -> Vec<(String, toml::Value)> {
        let table: toml::Table = toml::from_str(text).expect("valid TOML");
        table.into_iter().collect()
    }

    #[test]
    fn update_toml_has_exactly_the_engine_keys() {
        let mut u = UpdateSection::default();
        let without = keys(&update_toml(&u));
        let names: Vec<&str> = without.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["allow-downgrade", "check-interval", "reboot-strategy"]
        );
        assert_eq!(without[1].1.as_str(), Some("1h"));
        assert_eq!(without[2].1.as_str(), Some("reboot"));
        assert_eq!(without[0].1.as_bool(), Some(false));
        u.server = Some("http://10.0.2.2:8080/".into());
        u.reboot_strategy = RebootStrategy::Fleetlock;
        let with = update_toml(&u);
        assert!(
            with.contains("server = \"http://10.0.2.2:8080/\"\ncheck-interval"),
            "{with}"
        );
        assert!(with.contains("reboot-strategy = \"fleetlock\""), "{with}");
    }

    #[test]
    fn node_services() {
        let s = keys(&service_toml("tandem-updated").expect("valid"));
        assert_eq!(s.len(), 5);
        let text = service_toml("tandem-agent").expect("valid");
        assert!(text.contains(
            "exec = [\"/usr/lib/tandem/tandem-agent\"]\nrestart = \"always\"\nstdio = \"log\"\nruns_on = \"installed\"\nafter_network = true\n"
        ), "{text}");
        let spec = tandem_contract::service::parse(&text).expect("PID 1 reads it");
        assert_eq!(spec.exec, ["/usr/lib/tandem/tandem-agent"]);
        assert!(spec.after_network && !spec.needs_launcher());
        assert!(!spec.runs_on.allows(true) && spec.runs_on.allows(false));
        let install = tandem_contract::service::parse(&install_service_toml().expect("valid"))
            .expect("PID 1 reads it");
        assert_eq!(install.kind, ServiceType::Oneshot);
        assert!(install.runs_on.allows(true) && !install.runs_on.allows(false));
    }
}
