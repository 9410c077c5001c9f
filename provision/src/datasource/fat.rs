//! Reading files from a FAT file system in place with `fatfs`, without
//! mounting: a seed volume, or the OEM partition, a window of the boot disk.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The largest file read from a seed: user-data is a config, not a disk
/// image.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

/// `len` bytes of `file` from `offset`, read-only (fatfs wants `Write` as
/// well; writes fail).
#[derive(Debug)]
pub struct Window {
    file: File,
    offset: u64,
    len: u64,
    pos: u64,
}

impl Window {
    /// A window over `file`.
    pub fn new(file: File, offset: u64, len: u64) -> Window {
        Window {
            file,
            offset,
            len,
            pos: 0,
        }
    }

    /// The whole of `file` (a block device's size is where its end seeks to).
    pub fn whole(mut file: File) -> io::Result<Window> {
        let len = file.seek(SeekFrom::End(0))?;
        Ok(Window::new(file, 0, len))
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.seek(SeekFrom::Start(self.offset + self.pos))?;
        let got = self.file.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Window {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a datasource is read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = new;
        Ok(new)
    }
}

/// Reads files from a FAT file system.
pub struct Fat {
    fs: fatfs::FileSystem<Window>,
}

impl std::fmt::Debug for Fat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fat")
    }
}

impl Fat {
    /// Opens the file system in `window`.
    pub fn open(window: Window) -> io::Result<Fat> {
        Ok(Fat {
            fs: fatfs::FileSystem::new(window, fatfs::FsOptions::new())?,
        })
    }

    /// The file at `path` (`openstack/latest/user_data`; names compare
    /// without case, as FAT does), `None` if there is none.
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let file = match self.fs.root_dir().open_file(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        file.take(MAX_FILE + 1).read_to_end(&mut out)?;
        if out.len() as u64 > MAX_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} is larger than {MAX_FILE} bytes"),
            ));
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A FAT image file labelled `label` holding `files` (`dir/name`).
    pub(crate) fn image(path: &std::path::Path, label: &str, files: &[(&str, &[u8])]) {
        image_sized(path, label, files, 2 * 1024 * 1024, None);
    }

    fn image_sized(
        path: &std::path::Path,
        label: &str,
        files: &[(&str, &[u8])],
        size: u64,
        fat_type: Option<fatfs::FatType>,
    ) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("create image");
        file.set_len(size).expect("size");
        let mut name = [b' '; 11];
        name[..label.len()].copy_from_slice(label.as_bytes());
        let mut opts = fatfs::FormatVolumeOptions::new().volume_label(name);
        if let Some(t) = fat_type {
            opts = opts.fat_type(t);
        }
        fatfs::format_volume(&file, opts).expect("format");
        let fs = fatfs::FileSystem::new(&file, fatfs::FsOptions::new()).expect("open");
        for (p, bytes) in files {
            let mut dir = fs.root_dir();
            let parts: Vec<&str> = p.split('/').collect();
            for d in &parts[..parts.len() - 1] {
                dir = dir.create_dir(d).expect("mkdir");
            }
            let mut out = dir.create_file(parts[parts.len() - 1]).expect("create");
            out.write_all(bytes).expect("write");
        }
    }

    #[test]
    fn reads_files_in_a_window() {
        let dir = tempfile::tempdir().expect("tmp");
        let img = dir.path().join("fat.img");
        image(
            &img,
            "cidata",
            &[("user-data", b"#cloud-config\n"), ("a/b/c", b"x")],
        );
        // Put the file system at an offset, as a partition of a disk.
        let mut disk = vec![0u8; 4096];
        disk.extend(std::fs::read(&img).expect("read"));
        let disk_path = dir.path().join("disk");
        std::fs::write(&disk_path, &disk).expect("write");
        let len = disk.len() as u64 - 4096;
        let file = File::open(&disk_path).expect("open");
        let fat = Fat::open(Window::new(file, 4096, len)).expect("fat");
        assert_eq!(
            fat.read("USER-DATA").expect("read").as_deref(),
            Some(&b"#cloud-config\n"[..])
        );
        assert_eq!(fat.read("a/b/c").expect("read").as_deref(), Some(&b"x"[..]));
        assert_eq!(fat.read("meta-data").expect("read"), None);
        assert_eq!(fat.read("a/none/c").expect("read"), None);
    }

    #[test]
    fn reads_fat32_through_a_read_only_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let img = dir.path().join("fat32.img");
        let files: &[(&str, &[u8])] = &[("openstack/latest/user_data", b"#cloud-config\n")];
        image_sized(
            &img,
            "config-2",
            files,
            40 * 1024 * 1024,
            Some(fatfs::FatType::Fat32),
        );
        let head = std::fs::read(&img).expect("read");
        let label = crate::datasource::label::probe(&head).expect("label");
        assert_eq!(label.label, "config-2");
        let window = Window::whole(File::open(&img).expect("open")).expect("window");
        let fat = Fat::open(window).expect("fat");
        let got = fat.read("openstack/latest/user_data").expect("read");
        assert_eq!(got.as_deref(), Some(&b"#cloud-config\n"[..]));
        drop(fat);
        assert_eq!(std::fs::read(&img).expect("read"), head, "nothing written");
    }
}
