//! A volume's file system label, read from its first bytes as blkid does
//! (for the two file systems a seed volume is made with), so no library or
//! udev database is needed this early.

/// How many bytes of a device [`probe`] needs: the ISO 9660 primary volume
/// descriptor is the 17th 2048-byte sector.
pub const PROBE_LEN: usize = ISO_PVD + 2048;

const ISO_PVD: usize = 16 * 2048;

/// The file systems a seed volume can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    /// ISO 9660 (a CD-ROM image: `cidata.iso`).
    Iso9660,
    /// FAT12, FAT16 or FAT32 (`mkfs.vfat -n cidata`).
    Fat,
}

/// A file system and its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Which file system.
    pub fs: Fs,
    /// The label, trailing spaces removed.
    pub label: String,
}

/// The label of the file system whose first bytes are `head` (up to
/// [`PROBE_LEN`]), if it is ISO 9660 or FAT and has one.
pub fn probe(head: &[u8]) -> Option<Label> {
    iso9660(head).or_else(|| fat(head))
}

fn iso9660(head: &[u8]) -> Option<Label> {
    let pvd = head.get(ISO_PVD..ISO_PVD + 72)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    text(&pvd[40..72]).map(|label| Label {
        fs: Fs::Iso9660,
        label,
    })
}

fn fat(head: &[u8]) -> Option<Label> {
    let boot = head.get(..512)?;
    if boot[510..512] != [0x55, 0xAA] {
        return None;
    }
    // The extended boot record sits after the FAT32-only fields on FAT32.
    let (sig, label) = if &boot[0x52..0x5A] == b"FAT32   " {
        (boot[0x42], &boot[0x47..0x52])
    } else if &boot[0x36..0x39] == b"FAT" {
        (boot[0x26], &boot[0x2B..0x36])
    } else {
        return None;
    };
    // 0x29: the label and file system type fields are present.
    if sig != 0x29 {
        return None;
    }
    let label = text(label)?;
    (label != "NO NAME").then_some(Label { fs: Fs::Fat, label })
}

fn text(bytes: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_end_matches([' ', '\0']);
    (!s.is_empty()).then(|| s.to_string())
}

/// Whether `label` is `wanted`, ignoring case as cloud-init does (a FAT
/// label is upper case on many tools).
pub fn matches(label: &Label, wanted: &str) -> bool {
    label.label.eq_ignore_ascii_case(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso_head(volid: &str) -> Vec<u8> {
        let mut head = vec![0u8; PROBE_LEN];
        head[ISO_PVD] = 1;
        head[ISO_PVD + 1..ISO_PVD + 6].copy_from_slice(b"CD001");
        let id = format!("{volid:<32}");
        head[ISO_PVD + 40..ISO_PVD + 72].copy_from_slice(id.as_bytes());
        head
    }

    fn fat_head(fat32: bool, label: &[u8; 11]) -> Vec<u8> {
        let mut head = vec![0u8; 512];
        head[510] = 0x55;
        head[511] = 0xAA;
        if fat32 {
            head[0x42] = 0x29;
            head[0x47..0x52].copy_from_slice(label);
            head[0x52..0x5A].copy_from_slice(b"FAT32   ");
        } else {
            head[0x26] = 0x29;
            head[0x2B..0x36].copy_from_slice(label);
            head[0x36..0x3E].copy_from_slice(b"FAT16   ");
        }
        head
    }

    #[test]
    fn iso_volume_identifier() {
        let l = probe(&iso_head("cidata")).expect("iso");
        assert_eq!(l.fs, Fs::Iso9660);
        assert_eq!(l.label, "cidata");
        assert!(matches(&l, "CIDATA"));
        assert!(!matches(&l, "config-2"));
        assert_eq!(probe(&iso_head("config-2")).expect("iso").label, "config-2");
    }

    #[test]
    fn fat_labels_at_both_offsets() {
        let l = probe(&fat_head(false, b"CIDATA     ")).expect("fat16");
        assert_eq!((l.fs, l.label.as_str()), (Fs::Fat, "CIDATA"));
        let l = probe(&fat_head(true, b"config-2   ")).expect("fat32");
        assert_eq!((l.fs, l.label.as_str()), (Fs::Fat, "config-2"));
        assert_eq!(probe(&fat_head(true, b"NO NAME    ")), None);
    }

    #[test]
    fn other_bytes_have_no_label() {
        assert_eq!(probe(&[]), None);
        assert_eq!(probe(&[0u8; PROBE_LEN]), None);
        let mut no_sig = fat_head(false, b"CIDATA     ");
        no_sig[510] = 0;
        assert_eq!(probe(&no_sig), None);
        // A short read of an ISO stops before its descriptor.
        assert_eq!(probe(&iso_head("cidata")[..4096]), None);
    }

    #[test]
    fn fatfs_formatted_volume_is_found() {
        let mut img = std::io::Cursor::new(vec![0u8; 2 * 1024 * 1024]);
        fatfs::format_volume(
            &mut img,
            fatfs::FormatVolumeOptions::new().volume_label(*b"cidata     "),
        )
        .expect("format");
        let l = probe(img.get_ref()).expect("label");
        assert_eq!((l.fs, l.label.as_str()), (Fs::Fat, "cidata"));
    }
}
