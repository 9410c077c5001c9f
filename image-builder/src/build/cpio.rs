//! A writer for the newc ("070701") cpio format the kernel unpacks as its
//! initramfs. Every entry is owned by root with one fixed mtime, so the
//! archive depends only on its contents and their order.

use std::io::{self, Write};

/// Writes a newc archive to `W`.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    mtime: u32,
    written: u64,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> CpioWriter<W> {
    /// A writer stamping every entry with `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u32) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            mtime,
            written: 0,
        }
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | mode, 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | mode, 1, (0, 0), data)
    }

    /// A symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | mode, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino
        };
        self.next_ino += 1;
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name}: larger than 4 GiB")))?;
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{maj:08x}{min:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = if name == "TRAILER!!!" { 0 } else { self.mtime },
            maj = 0,
            min = 0,
            rmaj = rdev.0,
            rmin = rdev.1,
            namesize = name.len() + 1,
            check = 0,
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_newc() {
        let mut w = CpioWriter::new(Vec::new(), 0x1234);
        w.dir("dev", 0o755).expect("dir");
        w.file("init", 0o755, b"hello").expect("file");
        let out = w.finish().expect("finish");
        assert!(out.starts_with(b"070701"));
        // header 110 + "dev\0" = 114 → padded to 116.
        assert_eq!(&out[110..114], b"dev\0");
        assert_eq!(&out[116..122], b"070701");
        let second = &out[116..];
        assert_eq!(&second[6 + 5 * 8..6 + 6 * 8], b"00001234", "mtime");
        assert_eq!(&second[6 + 6 * 8..6 + 7 * 8], b"00000005", "size");
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(out.len() % 4, 0);
    }

    /// The archive lists with GNU cpio. `cpio` is no build dependency but a
    /// test one: `cargo xtask setup` installs it, and without it this test
    /// fails saying so rather than passing unchecked.
    #[test]
    fn gnu_cpio_lists_it() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        w.dir("etc", 0o755).expect("dir");
        w.file("etc/a", 0o644, b"x").expect("file");
        w.symlink("link", "etc/a").expect("link");
        let archive = w.finish().expect("finish");
        let mut child = match std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot run GNU cpio ({e}): this test needs it; run `cargo xtask setup` \
                 (or `apt-get install cpio`)"
            ),
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&archive)
            .expect("feed");
        let out = child.wait_with_output().expect("cpio");
        assert!(out.status.success(), "cpio -t failed: {}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "etc\netc/a\nlink\n");
    }
}
