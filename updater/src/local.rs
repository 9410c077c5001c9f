//! Repositories on local media, for updates without a network
//! (`tandemctl update apply --from <dir-or-device>`): a directory (a
//! mounted stick, a copy made by `tandem release mirror`), or a FAT volume
//! read in place (a USB stick or disk image made by `tandem release
//! export`: no mount, no `vfat` module needed). They are read like a
//! server, and what they hold is checked exactly as what a server sends:
//! the signed pointer, then every byte against it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Cursor, Region};
use crate::error::Error;
use crate::http::Fetch;
use tandem_slot::BlockDevice;

/// Opens the repository at `source`: a directory, or a block device or
/// image file holding a FAT file system.
pub fn open(source: &Path) -> Result<Box<dyn Fetch + Send>, Error> {
    let meta = std::fs::metadata(source).map_err(|e| Error::Offline {
        source_path: source.to_path_buf(),
        msg: e.to_string(),
    })?;
    if meta.is_dir() {
        return Ok(Box::new(Dir::new(source)));
    }
    Ok(Box::new(FatVolume::open(source)?))
}

/// A repository in a local directory.
#[derive(Debug)]
pub struct Dir {
    root: PathBuf,
}

impl Dir {
    /// The repository whose root is `root`.
    pub fn new(root: &Path) -> Dir {
        Dir {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, path: &str) -> Result<PathBuf, Error> {
        if !repository::repo::safe_path(path) {
            return Err(Error::Http {
                url: self.url(path),
                msg: "not a plain relative path".into(),
            });
        }
        Ok(self.root.join(path))
    }

    fn io(&self, path: &str, e: std::io::Error) -> Error {
        Error::Http {
            url: self.url(path),
            msg: e.to_string(),
        }
    }
}

impl Fetch for Dir {
    fn url(&self, path: &str) -> String {
        self.root
            .join(path.trim_start_matches('/'))
            .display()
            .to_string()
    }

    fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, Error> {
        let f = std::fs::File::open(self.path(path)?).map_err(|e| self.io(path, e))?;
        read_max(f, max).map_err(|e| self.io(path, e))
    }

    fn range(&mut self, path: &str, start: u64, end: u64) -> Result<Box<dyn Read + Send>, Error> {
        let mut f = std::fs::File::open(self.path(path)?).map_err(|e| self.io(path, e))?;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| self.io(path, e))?;
        Ok(Box::new(f.take(end.saturating_sub(start))))
    }
}

/// At most `max` bytes of `r`; more is an error.
fn read_max(r: impl Read, max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "more than {max} bytes: not what a repository holds"
        )));
    }
    Ok(out)
}

/// A repository on a FAT volume (a whole device or image file, no
/// partition table), read in place. The file system is opened for each
/// request (fatfs's is not `Send`; opening reads one sector).
#[derive(Debug)]
pub struct FatVolume {
    region: Region,
    name: String,
}

impl FatVolume {
    /// Opens the FAT file system on `source` (read-only).
    pub fn open(source: &Path) -> Result<FatVolume, Error> {
        let bad = |msg: String| Error::Offline {
            source_path: source.to_path_buf(),
            msg,
        };
        let file = std::fs::File::open(source).map_err(|e| bad(e.to_string()))?;
        // A file's length or a device's size, as the slot code reads it.
        let geometry =
            tandem_slot::FileDisk::open_read_only(source).map_err(|e| bad(e.to_string()))?;
        let len = geometry.num_blocks() * geometry.block_size();
        let name = source.display().to_string();
        let v = FatVolume {
            region: Region::new(Arc::new(file), 0, len, &name),
            name,
        };
        v.fs().map_err(|e| {
            bad(format!(
                "not a directory nor a FAT volume ({e}): give a stick made by `tandem release export`, or a directory holding a repository"
            ))
        })?;
        Ok(v)
    }

    fn fs(&self) -> std::io::Result<fatfs::FileSystem<Cursor>> {
        fatfs::FileSystem::new(self.region.cursor(), fatfs::FsOptions::new())
    }

    fn io(&self, path: &str, e: std::io::Error) -> Error {
        Error::Http {
            url: self.url(path),
            msg: e.to_string(),
        }
    }
}

impl Fetch for FatVolume {
    fn url(&self, path: &str) -> String {
        format!("{}:/{}", self.name, path.trim_start_matches('/'))
    }

    fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, Error> {
        let fs = self.fs().map_err(|e| self.io(path, e))?;
        let f = fs
            .root_dir()
            .open_file(path)
            .map_err(|e| self.io(path, e))?;
        read_max(f, max).map_err(|e| self.io(path, e))
    }

    fn range(&mut self, path: &str, start: u64, end: u64) -> Result<Box<dyn Read + Send>, Error> {
        // fatfs's files borrow the file system: the range is read here.
        let fs = self.fs().map_err(|e| self.io(path, e))?;
        let mut f = fs
            .root_dir()
            .open_file(path)
            .map_err(|e| self.io(path, e))?;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| self.io(path, e))?;
        let mut buf = Vec::new();
        f.take(end.saturating_sub(start))
            .read_to_end(&mut buf)
            .map_err(|e| self.io(path, e))?;
        Ok(Box::new(std::io::Cursor::new(buf)))
    }
}
