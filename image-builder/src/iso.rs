//! Tandem's ISO (`tandem iso`): live boot and install media, laid out as
//! [`tandem_contract::live`] says.
//!
//! [`create`] makes one from a build and a release key:
//! - an ESP image with the build's own bootloader, kernel, initramfs and
//!   slot A's `slot-a.conf`, read from the build's ESP, and a
//!   `loader.conf` that says `live yes`;
//! - the /usr slot image as it is;
//! - the install data: the disk image cut into chunks, with its install
//!   manifest signed by the release key.
//!
//! xorriso (the field's tool) puts them together as a hybrid ISO: El
//! Torito for CDs, and a GPT for USB sticks. [`customize`] writes an
//! unattended install into the ISO's embed area in place, as
//! `coreos-installer iso customize` does. [`show`] reads all of it back.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use repository::install::{DiskImage, InstallManifest};
use repository::keys::PrivateKey;
use repository::payload;
use repository::repo::{Envelope, FORMAT};
use tandem_contract::Partition;
use tandem_contract::esp::{self, LoaderConf, SlotFiles, Writer};
use tandem_contract::live::{self, DataHeader, Embedded, Span};
use tandem_contract::partition::types;
use tandem_slot::{FileDisk, Gpt, Slot};

use crate::build::fat::{self, Content, FatReader};
use crate::build::pipeline::outputs;
use crate::build::tools::Tool;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::release::{BuildDir, sign};

/// `xorriso`.
pub const XORRISO: Tool = Tool {
    program: "xorriso",
    package: "xorriso",
};

/// What [`create`] made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Created {
    /// The ISO.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its volume label.
    pub volume_id: String,
    /// The install manifest it carries.
    pub manifest: InstallManifest,
}

/// The ISO's volume label: image and version, as ISO 9660 allows (at most
/// 32 upper-case letters, digits and `_`).
pub fn volume_id(image: &str, version: &str) -> String {
    let text: String = format!("{image}_{version}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    text.chars().take(32).collect()
}

/// Makes `out` from the build in `build_dir`, its install manifest signed
/// with `key`.
pub fn create(
    build_dir: &Path,
    key: &PrivateKey,
    out: &Path,
    progress: &mut Progress,
) -> Result<Created> {
    let build = BuildDir::load(build_dir)?;
    let m = &build.manifest;
    let work = out.with_extension("iso-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).io("create", &work)?;
    let result = assemble(&build, key, out, &work, progress);
    let _ = std::fs::remove_dir_all(&work);
    let manifest = result?;
    let size = std::fs::metadata(out).io("read", out)?.len();
    Ok(Created {
        path: out.to_path_buf(),
        size,
        volume_id: volume_id(&m.image.name, &m.image.version),
        manifest,
    })
}

fn assemble(
    build: &BuildDir,
    key: &PrivateKey,
    out: &Path,
    work: &Path,
    progress: &mut Progress,
) -> Result<InstallManifest> {
    let m = &build.manifest;
    let esp_img = work.join("esp.img");
    progress.step("live ESP (bootloader, kernel, initramfs)", |_| {
        live_esp(build, &esp_img)
    })?;
    let data_img = work.join("install-data.img");
    let manifest = progress.step("install data (disk image, zstd, signed)", |step| {
        install_data(build, key, &data_img, |done, total| {
            step.detail(&format!("{} of {} MiB", done >> 20, total >> 20));
        })
    })?;
    let root = work.join("root");
    std::fs::create_dir_all(&root).io("create", &root)?;
    let readme = format!(
        "Tandem {} {} ({}): live and install media.\n\
         Boot it (CD or USB stick), then install with `tandemctl install <disk>`.\n\
         Its partitions: 2 boot (ESP), 3 live /usr (dm-verity), 4 install data.\n",
        m.image.name, m.image.version, m.image.channel
    );
    std::fs::write(root.join("README.txt"), readme).io("write", &root)?;
    let partial = out.with_extension("iso.partial");
    let _ = std::fs::remove_file(&partial);
    progress.step("ISO (xorriso)", |_| {
        let mut cmd = XORRISO.command();
        cmd.env("SOURCE_DATE_EPOCH", m.source_date_epoch.to_string())
            .args(xorriso_args(
                &volume_id(&m.image.name, &m.image.version),
                &esp_img,
                &build.file(outputs::USR),
                &data_img,
                &partial,
                &root,
            ));
        XORRISO.run(&mut cmd).map(|_| ())
    })?;
    std::fs::rename(&partial, out).io("rename", &partial)?;
    Ok(manifest)
}

/// xorriso's arguments: the ESP as appended partition 2 and the El Torito
/// image, then /usr and the install data, all in the GPT.
fn xorriso_args(
    volume_id: &str,
    esp: &Path,
    usr: &Path,
    data: &Path,
    out: &Path,
    root: &Path,
) -> Vec<String> {
    let guid = |g: tandem_contract::guid::Guid| g.to_string();
    let p = |n: u32| n.to_string();
    let d = |path: &Path| path.display().to_string();
    vec![
        "-as".into(),
        "mkisofs".into(),
        "-quiet".into(),
        "-V".into(),
        volume_id.into(),
        "-R".into(),
        "-J".into(),
        "-o".into(),
        d(out),
        "-e".into(),
        format!(
            "--interval:appended_partition_{}:all::",
            live::ESP_PARTITION
        ),
        "-no-emul-boot".into(),
        "-append_partition".into(),
        p(live::ESP_PARTITION),
        "0xef".into(),
        d(esp),
        "-append_partition".into(),
        p(live::USR_PARTITION),
        guid(types::LIVE_USR),
        d(usr),
        "-append_partition".into(),
        p(live::DATA_PARTITION),
        guid(types::INSTALL_DATA),
        d(data),
        "-appended_part_as_gpt".into(),
        "-partition_offset".into(),
        "16".into(),
        d(root),
    ]
}

/// The live ESP: the build's own boot files, and `live yes`.
fn live_esp(build: &BuildDir, path: &Path) -> Result<()> {
    let disk = build.file(outputs::DISK);
    let part = build
        .manifest
        .disk
        .partitions
        .iter()
        .find(|p| p.number == Partition::Esp.number())
        .ok_or_else(|| Error::BuildDir {
            path: build.path.clone(),
            message: "build.json records no ESP: build again".into(),
        })?;
    let esp_fs = FatReader::open(&disk, part.offset, part.size)?;
    let slot = SlotFiles::of(Slot::A);
    let read = |name: &str| {
        esp_fs.read(name).map_err(|cause| Error::BadDisk {
            path: disk.clone(),
            message: format!("cannot read {name} from its ESP: {cause}"),
        })
    };
    let bootloader = read(esp::BOOTLOADER)?;
    let kernel = read(&slot.kernel)?;
    let initrd = read(&slot.initrd)?;
    let conf = read(&slot.conf)?;
    let loader = esp::parse_loader_conf(&read(esp::LOADER_CONF)?).value;
    let loader = LoaderConf {
        live: true,
        ..loader
    }
    .render(Writer::Builder);
    let used = (bootloader.len() + kernel.len() + initrd.len() + conf.len()) as u64;
    // FAT overhead and slack, in whole MiB.
    let size = (used + used / 10 + (2 << 20)).div_ceil(1 << 20) << 20;
    let files = [
        (esp::BOOTLOADER.to_string(), Content::Bytes(&bootloader)),
        (
            esp::LOADER_CONF.to_string(),
            Content::Bytes(loader.as_bytes()),
        ),
        (slot.kernel, Content::Bytes(&kernel)),
        (slot.initrd, Content::Bytes(&initrd)),
        (slot.conf, Content::Bytes(&conf)),
    ];
    let vol = fat::Volume {
        size,
        label: "TANDEM-LIVE",
        volume_id: 0x7a4d_0150,
        fat32: false,
        epoch: build.manifest.source_date_epoch,
    };
    fat::build(path, vol, &files)
}

/// The install data partition's image: header, empty embed area, signed
/// manifest, payload. Returns the manifest.
fn install_data(
    build: &BuildDir,
    key: &PrivateKey,
    path: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<InstallManifest> {
    let disk = build.file(outputs::DISK);
    let want = build.artifact(outputs::DISK)?.clone();
    // The payload first, in a file of its own: the manifest's size is known
    // only once it is made.
    let payload_path = path.with_extension("payload");
    let input = File::open(&disk).io("open", &disk)?;
    let out = File::create(&payload_path).io("create", &payload_path)?;
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let enc = payload::encode(input, &mut writer, &payload::Options::default(), |done| {
        progress(done, want.size)
    })
    .map_err(|cause| Error::Payload {
        image: disk.clone(),
        cause,
    })?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .io("write", &payload_path)?;
    if enc.image_sha256 != want.sha256 || enc.image_size != want.size {
        return Err(build.modified_error(
            outputs::DISK,
            &format!("sha256 {} ({} bytes)", enc.image_sha256, enc.image_size),
            &format!("sha256 {} ({} bytes)", want.sha256, want.size),
        ));
    }
    let img = &build.manifest.image;
    let manifest = InstallManifest {
        format: FORMAT,
        image: img.name.clone(),
        arch: img.arch.clone(),
        version: build.version.clone(),
        channel: img.channel.clone(),
        disk: DiskImage {
            size: enc.image_size,
            sha256: enc.image_sha256.clone(),
            payload: enc.payload_ref("install-data:payload"),
            chunk_size: enc.chunk_size,
            chunks: enc.chunks.clone(),
        },
    };
    manifest.check().map_err(|detail| Error::Release {
        message: format!("internal error: the install manifest is inconsistent: {detail}"),
    })?;
    let envelope = sign(&manifest, key, "install manifest")?;
    let manifest_bytes = serde_json::to_vec(&envelope).map_err(|e| Error::Release {
        message: format!("cannot serialise the install manifest: {e}"),
    })?;
    let length = manifest_bytes.len() as u64;
    let payload_offset = (live::MANIFEST_OFFSET + length).div_ceil(1 << 20) << 20;
    let header = DataHeader {
        format: live::FORMAT,
        manifest: Span {
            offset: live::MANIFEST_OFFSET,
            length,
        },
        payload: Span {
            offset: payload_offset,
            length: enc.payload_size,
        },
    };
    let bad = |e: live::LiveError| Error::Release {
        message: format!("cannot lay out the install data: {e}"),
    };
    let header = header.render().map_err(bad)?;
    let embed = Embedded::default().render().map_err(bad)?;
    let mut f = File::create(path).io("create", path)?;
    f.write_all(&header)
        .and_then(|()| f.write_all(&embed))
        .and_then(|()| f.write_all(&manifest_bytes))
        .and_then(|()| f.seek(SeekFrom::Start(payload_offset)).map(|_| ()))
        .and_then(|()| {
            let mut p = File::open(&payload_path)?;
            std::io::copy(&mut p, &mut f).map(|_| ())
        })
        .io("write", path)?;
    // xorriso pads partitions to 2 KiB blocks; whole MiB keeps them aligned.
    let end = f.stream_position().io("write", path)?;
    f.set_len(end.div_ceil(1 << 20) << 20).io("write", path)?;
    let _ = std::fs::remove_file(&payload_path);
    Ok(manifest)
}

/// The install data partition of an ISO file: its byte offset and size.
fn data_partition(iso: &Path) -> Result<(u64, u64)> {
    let bad = |message: String| Error::BadDisk {
        path: iso.into(),
        message,
    };
    let mut disk = FileDisk::open_read_only(iso).io("open", iso)?;
    let gpt = Gpt::read(&mut disk).map_err(|e| {
        bad(format!(
            "no readable partition table ({e}): not an ISO made by `tandem iso create`"
        ))
    })?;
    match gpt.partition(live::DATA_PARTITION) {
        Some(e) if e.type_guid == types::INSTALL_DATA => Ok((
            e.first_lba * gpt.block_size,
            e.num_blocks() * gpt.block_size,
        )),
        _ => Err(bad(format!(
            "partition {} is not Tandem's install data: not an ISO made by `tandem iso create`",
            live::DATA_PARTITION
        ))),
    }
}

fn read_span(file: &mut File, iso: &Path, at: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.read_exact(&mut buf))
        .io("read", iso)?;
    Ok(buf)
}

/// What an ISO carries, for `tandem iso show`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Shown {
    /// The install manifest (not verified: the host has no trust store).
    pub manifest: InstallManifest,
    /// Ids of the keys that signed it.
    pub signed_by: Vec<String>,
    /// The embed area.
    pub embedded: Embedded,
}

/// Reads an ISO's install data.
pub fn show(iso: &Path) -> Result<Shown> {
    let (offset, size) = data_partition(iso)?;
    let mut f = File::open(iso).io("open", iso)?;
    let bad = |message: String| Error::BadDisk {
        path: iso.into(),
        message,
    };
    let header = DataHeader::parse(&read_span(&mut f, iso, offset, live::HEADER_SIZE)?)
        .map_err(|e| bad(e.to_string()))?;
    if header.manifest.offset + header.manifest.length > size {
        return Err(bad("the install manifest runs past its partition".into()));
    }
    let bytes = read_span(
        &mut f,
        iso,
        offset + header.manifest.offset,
        header.manifest.length,
    )?;
    let env: Envelope = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the install manifest is not readable: {e}")))?;
    let manifest: InstallManifest = serde_json::from_str(&env.signed)
        .map_err(|e| bad(format!("the install manifest is not readable: {e}")))?;
    let area = read_span(&mut f, iso, offset + live::EMBED_OFFSET, live::EMBED_SIZE)?;
    let embedded = Embedded::parse(&area).map_err(|e| bad(e.to_string()))?;
    Ok(Shown {
        manifest,
        signed_by: env.signatures.iter().map(|s| s.key_id.clone()).collect(),
        embedded,
    })
}

/// Writes `embedded` into the ISO's embed area, in place, and syncs.
pub fn customize(iso: &Path, embedded: &Embedded) -> Result<()> {
    let (offset, _) = data_partition(iso)?;
    let area = embedded.render().map_err(|e| Error::Release {
        message: format!("cannot embed the settings: {e}"),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(iso)
        .io("open for writing", iso)?;
    f.seek(SeekFrom::Start(offset + live::EMBED_OFFSET))
        .and_then(|_| f.write_all(&area))
        .and_then(|()| f.sync_all())
        .io("write the embed area of", iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_are_iso_9660_d_characters() {
        assert_eq!(volume_id("tandem-minimal", "1.0.0"), "TANDEM_MINIMAL_1_0_0");
        assert_eq!(volume_id(&"x".repeat(40), "1").len(), 32);
    }

    #[test]
    fn partitions_are_appended_in_the_contract_s_order() {
        let a = xorriso_args(
            "V",
            Path::new("e"),
            Path::new("u"),
            Path::new("d"),
            Path::new("o"),
            Path::new("r"),
        )
        .join(" ");
        assert!(a.contains("-append_partition 2 0xef e"), "{a}");
        assert!(
            a.contains("-append_partition 3 6F908C3F-9E42-478D-990B-D69FC12B33BA u"),
            "{a}"
        );
        assert!(a.contains("--interval:appended_partition_2:all::"), "{a}");
        assert!(a.ends_with(" r"), "{a}");
    }
}
