//! What the firmware's DMI tables say about the machine
//! (`/sys/class/dmi/id`): enough to skip a platform's datasource fast on
//! machines that are not that platform.

use std::path::Path;

/// The DMI fields used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dmi {
    /// `sys_vendor` (`QEMU`, `Amazon EC2`).
    pub sys_vendor: String,
    /// `product_name`.
    pub product_name: String,
    /// `product_version` (`4.11.amazon` on Xen-based EC2).
    pub product_version: String,
    /// `product_uuid` (readable by root only).
    pub product_uuid: String,
    /// `board_vendor`.
    pub board_vendor: String,
    /// `bios_vendor`.
    pub bios_vendor: String,
}

impl Dmi {
    /// Reads the fields under `sys` (`/sys`); a missing one is empty.
    pub fn read(sys: &Path) -> Dmi {
        let dir = sys.join("class/dmi/id");
        let field = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Dmi {
            sys_vendor: field("sys_vendor"),
            product_name: field("product_name"),
            product_version: field("product_version"),
            product_uuid: field("product_uuid"),
            board_vendor: field("board_vendor"),
            bios_vendor: field("bios_vendor"),
        }
    }

    /// A QEMU machine (whose fw_cfg may carry user-data).
    pub fn is_qemu(&self) -> bool {
        [&self.sys_vendor, &self.product_name]
            .iter()
            .any(|f| f.to_ascii_lowercase().contains("qemu"))
    }

    /// An EC2 instance: Nitro says `Amazon EC2` as vendor; Xen-based ones
    /// say `Xen` but have `amazon` in the version and a UUID starting with
    /// `ec2`, in either byte order (cloud-init's `identify_aws`).
    pub fn is_ec2(&self) -> bool {
        let amazon = [
            &self.sys_vendor,
            &self.board_vendor,
            &self.bios_vendor,
            &self.product_version,
        ]
        .iter()
        .any(|f| f.to_ascii_lowercase().contains("amazon"));
        amazon || uuid_is_ec2(&self.product_uuid)
    }
}

/// `ec2…`, or a UUID whose first field, little-endian, reads `ec2…`
/// (firmware that stores the UUID in the other byte order).
fn uuid_is_ec2(uuid: &str) -> bool {
    let u = uuid.to_ascii_lowercase();
    if u.starts_with("ec2") {
        return true;
    }
    let first = u.split('-').next().unwrap_or("");
    if first.len() != 8 || !first.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let swapped: String = (0..4).rev().map(|i| &first[2 * i..2 * i + 2]).collect();
    swapped.starts_with("ec2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_tells_platforms_apart() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("class/dmi/id");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("sys_vendor"), "QEMU\n").expect("write");
        let d = Dmi::read(tmp.path());
        assert_eq!(d.sys_vendor, "QEMU");
        assert!(d.is_qemu());
        assert!(!d.is_ec2());
        assert_eq!(Dmi::read(&tmp.path().join("none")), Dmi::default());
    }

    #[test]
    fn ec2_signs() {
        let nitro = Dmi {
            sys_vendor: "Amazon EC2".into(),
            ..Dmi::default()
        };
        assert!(nitro.is_ec2());
        let xen = Dmi {
            sys_vendor: "Xen".into(),
            product_version: "4.11.amazon".into(),
            ..Dmi::default()
        };
        assert!(xen.is_ec2());
        for uuid in [
            "EC2E1916-9099-7CAF-FD21-012345ABCDEF",
            "45E12AEC-DCD1-B213-94ED-012345ABCDEF",
        ] {
            let d = Dmi {
                product_uuid: uuid.into(),
                ..Dmi::default()
            };
            assert!(d.is_ec2(), "{uuid}");
        }
        let other = Dmi {
            sys_vendor: "QEMU".into(),
            product_uuid: "12345678-1234-1234-1234-123456789abc".into(),
            ..Dmi::default()
        };
        assert!(!other.is_ec2());
    }
}
