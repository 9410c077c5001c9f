//! Device-mapper without libdevmapper: the `struct dm_ioctl` buffers for
//! DM_DEV_CREATE, DM_TABLE_LOAD and DM_DEV_SUSPEND (resume), packed by hand so
//! the layout is tested on the host, and the dm-verity table of
//! docs/boot-chain.md.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The control node dm-mod registers (a misc device).
pub const CONTROL: &str = "/dev/mapper/control";

/// sizeof(struct dm_ioctl) in <linux/dm-ioctl.h>.
pub const DM_IOCTL_SIZE: usize = 312;
/// sizeof(struct dm_target_spec).
pub const TARGET_SPEC_SIZE: usize = 40;
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
/// Interface version we speak; the kernel accepts any minor >= ours.
const VERSION: [u32; 3] = [4, 0, 0];

/// Table is read-only (DM_READONLY_FLAG).
pub const READONLY_FLAG: u32 = 1 << 0;
/// Suspend rather than resume (DM_SUSPEND_FLAG).
pub const SUSPEND_FLAG: u32 = 1 << 1;

/// _IOWR(0xfd, nr, struct dm_ioctl).
const fn dm_iowr(nr: u64) -> u64 {
    (3 << 30) | ((DM_IOCTL_SIZE as u64) << 16) | (0xfd << 8) | nr
}
/// DM_DEV_CREATE.
pub const DM_DEV_CREATE: u64 = dm_iowr(3);
/// DM_DEV_SUSPEND (also resumes, without [`SUSPEND_FLAG`]).
pub const DM_DEV_SUSPEND: u64 = dm_iowr(6);
/// DM_TABLE_LOAD.
pub const DM_TABLE_LOAD: u64 = dm_iowr(9);
/// DM_TABLE_STATUS.
pub const DM_TABLE_STATUS: u64 = dm_iowr(12);
/// The answer did not fit the buffer (DM_BUFFER_FULL_FLAG).
const BUFFER_FULL_FLAG: u32 = 1 << 8;

/// The verity data and hash device: the whole /usr partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verity {
    /// `major:minor` of the partition (data and hash on the same device).
    pub device: (u32, u32),
    /// Filesystem size in 4096-byte blocks; the hash tree starts right after.
    pub data_blocks: u64,
    /// Root hash, hex.
    pub root_hash: String,
    /// Salt, hex, or `-`.
    pub salt: String,
}

impl Verity {
    /// Length of the mapped device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * 8
    }

    /// The target parameters (everything after `verity` in a table line).
    pub fn params(&self) -> String {
        let (maj, min) = self.device;
        let n = self.data_blocks;
        format!(
            "1 {maj}:{min} {maj}:{min} 4096 4096 {n} {n} sha256 {} {}",
            self.root_hash, self.salt
        )
    }

    /// The whole table line, as `dmsetup table` shows it.
    pub fn table(&self) -> String {
        format!("0 {} verity {}", self.sectors(), self.params())
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn put_str(buf: &mut [u8], at: usize, cap: usize, s: &str) -> Result<(), &'static str> {
    // Room for the terminating NUL; the buffer is zeroed already.
    if s.len() >= cap || s.contains('\0') {
        return Err("name too long or contains NUL");
    }
    buf[at..at + s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// A `struct dm_ioctl` header for device `name`, in a zeroed buffer of
/// `total` bytes (at least [`DM_IOCTL_SIZE`]).
pub fn header(name: &str, uuid: &str, flags: u32, total: usize) -> Result<Vec<u8>, &'static str> {
    let total = total.max(DM_IOCTL_SIZE);
    let mut b = vec![0u8; total];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut b, 4 * i, *v);
    }
    put_u32(&mut b, 12, total as u32); // data_size
    put_u32(&mut b, 16, DM_IOCTL_SIZE as u32); // data_start
    put_u32(&mut b, 28, flags);
    put_str(&mut b, 48, NAME_LEN, name)?;
    put_str(&mut b, 48 + NAME_LEN, UUID_LEN, uuid)?;
    Ok(b)
}

/// The DM_TABLE_LOAD buffer: header, one `struct dm_target_spec` and its
/// NUL-terminated parameter string, padded to 8 bytes.
pub fn table_load(
    name: &str,
    start: u64,
    length: u64,
    target: &str,
    params: &str,
) -> Result<Vec<u8>, &'static str> {
    let spec_len = (TARGET_SPEC_SIZE + params.len() + 1).next_multiple_of(8);
    let mut b = header(name, "", READONLY_FLAG, DM_IOCTL_SIZE + spec_len)?;
    put_u32(&mut b, 20, 1); // target_count
    let s = DM_IOCTL_SIZE;
    put_u64(&mut b, s, start);
    put_u64(&mut b, s + 8, length);
    put_u32(&mut b, s + 20, spec_len as u32); // next: offset of a following spec
    put_str(&mut b, s + 24, 16, target)?;
    if params.contains('\0') {
        return Err("parameters contain NUL");
    }
    b[s + TARGET_SPEC_SIZE..s + TARGET_SPEC_SIZE + params.len()].copy_from_slice(params.as_bytes());
    Ok(b)
}

/// The `dev` field of a returned header, decoded (the kernel's
/// `huge_encode_dev`: minor low byte, major, minor high bits).
pub fn returned_dev(buf: &[u8]) -> Option<(u32, u32)> {
    let raw = u64::from_ne_bytes(buf.get(40..48)?.try_into().ok()?);
    let major = ((raw >> 8) & 0xfff) as u32;
    let minor = ((raw & 0xff) | ((raw >> 12) & 0xfff00)) as u32;
    Some((major, minor))
}

/// The status strings of a DM_TABLE_STATUS answer, one per target (for
/// dm-verity `V` when every block read so far verified, `C` once one did
/// not). `None` when the answer is malformed or did not fit.
pub fn parse_status(buf: &[u8]) -> Option<Vec<String>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    if u32_at(28)? & BUFFER_FULL_FLAG != 0 {
        return None;
    }
    let count = u32_at(20)?;
    let mut at = usize::try_from(u32_at(16)?).ok()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let text = buf.get(at + TARGET_SPEC_SIZE..)?;
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        out.push(String::from_utf8_lossy(&text[..end]).into_owned());
        // `next` is the offset of the following spec from the data start
        // for status answers (unlike table loads); the kernel sets it.
        let next = usize::try_from(u32_at(at + 20)?).ok()?;
        let start = usize::try_from(u32_at(16)?).ok()?;
        at = start.checked_add(next)?;
    }
    Some(out)
}

/// The status of device `name` (see [`parse_status`]).
pub fn status(name: &str) -> io::Result<Vec<String>> {
    let control = OpenOptions::new().read(true).write(true).open(CONTROL)?;
    let mut buf = header(name, "", 0, 16 * 1024)
        .map_err(|w| io::Error::new(io::ErrorKind::InvalidInput, w))?;
    dm_ioctl(&control, DM_TABLE_STATUS, &mut buf)?;
    parse_status(&buf).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed DM_TABLE_STATUS answer",
        )
    })
}

fn dm_ioctl(control: &File, request: u64, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: buf is a dm_ioctl header of data_size == buf.len() bytes, the
    // size the kernel reads and writes back.
    unsafe { crate::sys::ioctl_ptr(control.as_raw_fd(), request, buf.as_mut_ptr()) }?;
    Ok(())
}

/// Creates a read-only device-mapper device `name` with `table` (a single
/// target) and resumes it. Returns `/dev/dm-<minor>`, waiting for devtmpfs to
/// create the node (or creating it) and linking `/dev/mapper/<name>` to it.
pub fn create_readonly(
    name: &str,
    uuid: &str,
    length: u64,
    target: &str,
    params: &str,
) -> Result<PathBuf, Error> {
    let fail = |op: &'static str, err: io::Error| Error::DeviceMapper {
        op,
        name: name.to_string(),
        err,
    };
    let bad = |op: &'static str, why: &'static str| {
        fail(op, io::Error::new(io::ErrorKind::InvalidInput, why))
    };

    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL)
        .map_err(|e| fail("opening /dev/mapper/control", e))?;

    let mut create = header(name, uuid, 0, DM_IOCTL_SIZE).map_err(|w| bad("DM_DEV_CREATE", w))?;
    dm_ioctl(&control, DM_DEV_CREATE, &mut create).map_err(|e| fail("DM_DEV_CREATE", e))?;

    let mut load =
        table_load(name, 0, length, target, params).map_err(|w| bad("DM_TABLE_LOAD", w))?;
    dm_ioctl(&control, DM_TABLE_LOAD, &mut load).map_err(|e| fail("DM_TABLE_LOAD", e))?;

    let mut resume = header(name, "", 0, DM_IOCTL_SIZE).map_err(|w| bad("DM_DEV_SUSPEND", w))?;
    dm_ioctl(&control, DM_DEV_SUSPEND, &mut resume)
        .map_err(|e| fail("DM_DEV_SUSPEND (resume)", e))?;

    let (major, minor) = returned_dev(&resume)
        .or_else(|| returned_dev(&create))
        .ok_or_else(|| bad("DM_DEV_SUSPEND (resume)", "no device number returned"))?;
    let node = PathBuf::from(format!("/dev/dm-{minor}"));
    ensure_node(&node, major, minor).map_err(|e| fail("creating the device node", e))?;
    // Best effort: the friendly name is for people, the code uses dm-N.
    let _ = std::os::unix::fs::symlink(
        format!("../dm-{minor}"),
        Path::new("/dev/mapper").join(name),
    );
    Ok(node)
}

/// Waits briefly for devtmpfs to create a block node, then creates it.
fn ensure_node(node: &Path, major: u32, minor: u32) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if node.exists() {
            return Ok(());
        }
        crate::sys::sleep(Duration::from_millis(5));
    }
    crate::sys::mknod_block(node, major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // _IOWR(0xfd, nr, 312 bytes): DM_VERSION is the well-known 0xc138fd00.
        assert_eq!(DM_DEV_CREATE, 0xC138_FD03);
        assert_eq!(DM_DEV_SUSPEND, 0xC138_FD06);
        assert_eq!(DM_TABLE_LOAD, 0xC138_FD09);
        assert_eq!(DM_TABLE_STATUS, 0xC138_FD0C);
    }

    #[test]
    fn verity_table_is_the_contract() {
        let v = Verity {
            device: (254, 3),
            data_blocks: 1000,
            root_hash: "ab".repeat(32),
            salt: "cd".repeat(32),
        };
        assert_eq!(
            v.table(),
            format!(
                "0 8000 verity 1 254:3 254:3 4096 4096 1000 1000 sha256 {} {}",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
    }

    #[test]
    fn header_layout() {
        let b = header("usr", "TANDEM-USR-A", SUSPEND_FLAG, 0).expect("fits");
        assert_eq!(b.len(), DM_IOCTL_SIZE);
        assert_eq!([u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8)], [4, 0, 0]);
        assert_eq!(u32_at(&b, 12), 312);
        assert_eq!(u32_at(&b, 16), 312);
        assert_eq!(u32_at(&b, 28), SUSPEND_FLAG);
        assert_eq!(&b[48..52], b"usr\0");
        assert_eq!(&b[176..189], b"TANDEM-USR-A\0");
    }

    #[test]
    fn names_must_fit() {
        assert!(header(&"x".repeat(127), "", 0, 0).is_ok());
        assert!(header(&"x".repeat(128), "", 0, 0).is_err());
        assert!(header("a\0b", "", 0, 0).is_err());
    }

    #[test]
    fn table_load_layout() {
        let params = "1 254:3 254:3 4096 4096 8 8 sha256 00 -";
        let b = table_load("usr", 0, 64, "verity", params).expect("fits");
        assert_eq!(b.len() % 8, 0);
        assert_eq!(u32_at(&b, 12) as usize, b.len());
        assert_eq!(u32_at(&b, 20), 1, "target_count");
        assert_eq!(u32_at(&b, 28), READONLY_FLAG);
        let s = DM_IOCTL_SIZE;
        assert_eq!(u64_at(&b, s), 0);
        assert_eq!(u64_at(&b, s + 8), 64);
        assert_eq!(u32_at(&b, s + 20) as usize, b.len() - s);
        assert_eq!(&b[s + 24..s + 31], b"verity\0");
        let p = &b[s + TARGET_SPEC_SIZE..];
        assert_eq!(&p[..params.len()], params.as_bytes());
        assert_eq!(p[params.len()], 0, "NUL-terminated");
    }

    #[test]
    fn status_answers_are_parsed() {
        // What the kernel returns for one verity target that saw corruption.
        let mut b = header("usr", "", 0, 1024).expect("header");
        put_u32(&mut b, 20, 1);
        let s = DM_IOCTL_SIZE;
        put_u64(&mut b, s + 8, 1000);
        put_str(&mut b, s + 24, 16, "verity").expect("type");
        b[s + TARGET_SPEC_SIZE] = b'C';
        assert_eq!(parse_status(&b), Some(vec!["C".to_string()]));
        put_u32(&mut b, 28, BUFFER_FULL_FLAG);
        assert_eq!(parse_status(&b), None);
        assert_eq!(parse_status(&b[..20]), None);
    }

    #[test]
    fn decodes_returned_dev() {
        let mut b = header("usr", "", 0, 0).expect("fits");
        // huge_encode_dev(MKDEV(254, 0)) and (254, 300)
        put_u64(&mut b, 40, 254 << 8);
        assert_eq!(returned_dev(&b), Some((254, 0)));
        let minor: u64 = 300;
        put_u64(
            &mut b,
            40,
            (minor & 0xff) | (254 << 8) | ((minor & !0xff) << 12),
        );
        assert_eq!(returned_dev(&b), Some((254, 300)));
    }
}
