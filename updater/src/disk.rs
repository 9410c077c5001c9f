//! The boot disk as the updater uses it: the whole disk (`/dev/vda`, or a
//! disk image file in tests) opened once, partitions addressed as byte
//! [`Region`]s from its GPT. Using the whole disk rather than partition
//! nodes means the host tests run exactly the node's code on an image file.
//!
//! The slot attributes are changed only through [`tandem_slot::table::modify`]
//! (read both copies, transition, write both copies, fsync).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tandem_contract::Partition;
use tandem_slot::{FileDisk, Gpt, Slot, SlotPair, TransitionError, table};

use crate::error::Error;

/// A byte range of an open file or block device: one partition.
#[derive(Clone, Debug)]
pub struct Region {
    file: Arc<File>,
    offset: u64,
    len: u64,
    name: String,
}

impl Region {
    /// `len` bytes of `file` from `offset`; `name` is for messages.
    pub fn new(file: Arc<File>, offset: u64, len: u64, name: &str) -> Region {
        Region {
            file,
            offset,
            len,
            name: name.to_string(),
        }
    }

    /// A whole file as a region (tests).
    pub fn whole(path: &Path, writable: bool) -> io::Result<Region> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        let len = file.metadata()?.len();
        Ok(Region::new(
            Arc::new(file),
            0,
            len,
            &path.display().to_string(),
        ))
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What it is, for messages (`/dev/vda partition 4`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, pos: u64, n: usize) -> io::Result<u64> {
        match pos.checked_add(n as u64) {
            Some(end) if end <= self.len => Ok(self.offset + pos),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes at {pos} are beyond the end of {} ({} bytes)",
                    n, self.name, self.len
                ),
            )),
        }
    }

    /// Fills `buf` from `pos`.
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = self.check(pos, buf.len())?;
        self.file.read_exact_at(buf, at)
    }

    /// Writes `buf` at `pos`.
    pub fn write_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        let at = self.check(pos, buf.len())?;
        self.file.write_all_at(buf, at)
    }

    /// Makes everything written durable (fsync of the file or device).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// A seekable stream over the region (for fatfs and sequential reads).
    pub fn cursor(&self) -> Cursor {
        Cursor {
            region: self.clone(),
            pos: 0,
        }
    }
}

/// A [`Region`] with a position: Read + Write + Seek.
#[derive(Debug)]
pub struct Cursor {
    region: Region,
    pos: u64,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.region.len.saturating_sub(self.pos)) as usize;
        let got = self
            .region
            .file
            .read_at(&mut buf[..n], self.region.offset + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Cursor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.region.len.saturating_sub(self.pos)) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("end of {}", self.region.name),
            ));
        }
        let put = self
            .region
            .file
            .write_at(&buf[..n], self.region.offset + self.pos)?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.region.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

/// The boot disk and its partition table.
#[derive(Debug)]
pub struct BootDisk {
    path: PathBuf,
    file: Arc<File>,
    gpt: Gpt,
}

impl BootDisk {
    /// Opens the whole disk (read-write when `writable`) and reads its GPT.
    pub fn open(path: &Path, writable: bool) -> Result<BootDisk, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|err| {
                if writable {
                    Error::Write {
                        path: path.into(),
                        err,
                    }
                } else {
                    Error::Read {
                        path: path.into(),
                        err,
                    }
                }
            })?;
        let mut dev = FileDisk::open_read_only(path).map_err(|err| Error::Read {
            path: path.into(),
            err,
        })?;
        let gpt = Gpt::read(&mut dev).map_err(|e| Error::Disk {
            what: "reading the partition table",
            disk: path.into(),
            msg: e.to_string(),
        })?;
        Ok(BootDisk {
            path: path.into(),
            file: Arc::new(file),
            gpt,
        })
    }

    /// The disk's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A partition of the layout as a region.
    pub fn partition(&self, part: Partition) -> Result<Region, Error> {
        let number = part.number();
        let e = self.gpt.partition(number).ok_or_else(|| Error::Disk {
            what: "finding a partition",
            disk: self.path.clone(),
            msg: format!("there is no partition {number}: not a Tandem disk"),
        })?;
        let bs = self.gpt.block_size;
        Ok(Region::new(
            self.file.clone(),
            e.first_lba * bs,
            e.num_blocks() * bs,
            &format!("{} partition {number} ({})", self.path.display(), e.name()),
        ))
    }

    /// A slot's partition, checked to be of the /usr type.
    pub fn slot(&self, slot: Slot) -> Result<Region, Error> {
        table::usr_entry(&self.gpt, slot).map_err(|e| Error::Disk {
            what: "finding the slot partitions",
            disk: self.path.clone(),
            msg: e.to_string(),
        })?;
        self.partition(slot.partition())
    }

    /// Both slots' attributes, read from the disk now.
    pub fn slots(&self) -> Result<SlotPair, Error> {
        let fail = |msg: String| Error::Disk {
            what: "reading the slot attributes",
            disk: self.path.clone(),
            msg,
        };
        let mut dev = FileDisk::open_read_only(&self.path).map_err(|e| fail(e.to_string()))?;
        let gpt = Gpt::read(&mut dev).map_err(|e| fail(e.to_string()))?;
        table::slot_pair(&gpt).map_err(|e| fail(e.to_string()))
    }

    /// Reads the table, applies `change`, writes both copies back (fsync'd)
    /// if anything changed. Returns what `change` returned and the pair as
    /// written.
    pub fn modify<T>(
        &self,
        what: &'static str,
        change: impl FnOnce(&mut SlotPair) -> Result<T, TransitionError>,
    ) -> Result<(T, SlotPair), Error> {
        let fail = |msg: String| Error::Disk {
            what,
            disk: self.path.clone(),
            msg,
        };
        let mut dev = FileDisk::open(&self.path).map_err(|e| fail(e.to_string()))?;
        table::modify(&mut dev, change).map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_stay_inside() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        std::fs::write(&p, vec![0u8; 100]).expect("write");
        let whole = Region::whole(&p, true).expect("open");
        let r = Region::new(whole.file.clone(), 10, 20, "part");
        r.write_at(0, b"abc").expect("write");
        assert!(r.write_at(18, b"abc").is_err());
        let mut buf = [0u8; 3];
        whole.read_at(10, &mut buf).expect("read");
        assert_eq!(&buf, b"abc");
        let mut c = r.cursor();
        c.seek(SeekFrom::End(-2)).expect("seek");
        assert_eq!(c.write(b"xyz").expect("write"), 2);
        assert!(c.write(b"z").is_err());
        let mut all = Vec::new();
        r.cursor().read_to_end(&mut all).expect("read");
        assert_eq!(all.len(), 20);
        assert_eq!(&all[18..], b"xy");
    }
}
