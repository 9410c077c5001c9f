//! Reading files from an ISO 9660 image in user space: no `isofs` module,
//! no mount point, nothing to unmount when something fails. Seeds are made
//! with long names (`user-data`, `openstack/latest/meta_data.json`), which
//! plain ISO 9660 cannot hold, so names come from the Joliet tree when there
//! is one, else from Rock Ridge `NM` entries, else from the ISO name itself
//! (`USER_DATA.;1`, compared loosely).

use std::io::{self, Read, Seek, SeekFrom};

use super::fat::MAX_FILE;

const SECTOR: u64 = 2048;
/// A directory larger than this is not a seed's.
const MAX_DIR: u32 = 1024 * 1024;

/// A directory or file: where its bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    lba: u32,
    len: u32,
    dir: bool,
}

/// Which tree's names to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Names {
    Joliet,
    /// ISO names, or Rock Ridge names where present.
    Primary,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_at<R: Read + Seek>(dev: &mut R, pos: u64, len: usize) -> io::Result<Vec<u8>> {
    dev.seek(SeekFrom::Start(pos))?;
    let mut buf = vec![0u8; len];
    dev.read_exact(&mut buf)?;
    Ok(buf)
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

/// The root directories of the trees the image has, Joliet first.
fn roots<R: Read + Seek>(dev: &mut R) -> io::Result<Vec<(Names, Extent)>> {
    let mut primary = None;
    let mut joliet = None;
    // Descriptors start at sector 16 and end with type 255; bound the walk.
    for n in 16..16 + 64 {
        let d = read_at(dev, n * SECTOR, SECTOR as usize)?;
        if &d[1..6] != b"CD001" {
            return Err(invalid(format!("sector {n} is not a volume descriptor")));
        }
        let root = record(&d[156..190]);
        match d[0] {
            1 => primary = root,
            // UCS-2 escape sequences: levels 1, 2 and 3.
            2 if matches!(&d[88..91], b"%/@" | b"%/C" | b"%/E") => joliet = root,
            255 => break,
            _ => {}
        }
    }
    let mut out = Vec::new();
    out.extend(joliet.map(|e| (Names::Joliet, e)));
    out.extend(primary.map(|e| (Names::Primary, e)));
    if out.is_empty() {
        return Err(invalid("no primary volume descriptor"));
    }
    Ok(out)
}

/// The extent a directory record describes.
fn record(r: &[u8]) -> Option<Extent> {
    if r.len() < 34 || (r[0] as usize) < 34 {
        return None;
    }
    Some(Extent {
        lba: u32_le(r, 2),
        len: u32_le(r, 10),
        dir: r[25] & 0x02 != 0,
    })
}

/// The records of a directory: each record's name (as `names` decode it)
/// and extent.
fn entries<R: Read + Seek>(
    dev: &mut R,
    dir: Extent,
    names: Names,
) -> io::Result<Vec<(String, Extent)>> {
    if dir.len > MAX_DIR {
        return Err(invalid(format!("a directory of {} bytes", dir.len)));
    }
    let bytes = read_at(dev, u64::from(dir.lba) * SECTOR, dir.len as usize)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let len = bytes[at] as usize;
        if len == 0 {
            // Records do not cross sectors: the rest of this one is padding.
            at = (at / SECTOR as usize + 1) * SECTOR as usize;
            continue;
        }
        let Some(r) = bytes.get(at..at + len) else {
            return Err(invalid("a directory record runs past its directory"));
        };
        at += len;
        let (Some(extent), Some(&name_len)) = (record(r), r.get(32)) else {
            return Err(invalid("a directory record is too short"));
        };
        let name_len = name_len as usize;
        let Some(raw) = r.get(33..33 + name_len) else {
            return Err(invalid("a directory record's name runs past it"));
        };
        // `.` and `..`.
        if raw == [0] || raw == [1] {
            continue;
        }
        let name = match names {
            Names::Joliet => joliet_name(raw),
            Names::Primary => {
                // The system use area follows the name, padded to even.
                let su = 33 + name_len + (1 - name_len % 2);
                rock_ridge_name(r.get(su..).unwrap_or(&[])).unwrap_or_else(|| iso_name(raw))
            }
        };
        out.push((name, extent));
    }
    Ok(out)
}

fn joliet_name(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    strip_version(&String::from_utf16_lossy(&units)).to_string()
}

/// `USER_DATA.;1` → `user_data` (the loose comparison treats `_` as `-`).
fn iso_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    strip_version(&s).trim_end_matches('.').to_ascii_lowercase()
}

fn strip_version(s: &str) -> &str {
    s.split_once(';').map_or(s, |(name, _)| name)
}

/// The Rock Ridge alternate name in a system use area (`NM` entries,
/// concatenated when continued); continuation areas (`CE`) are not
/// followed: a seed's short names fit in the record.
fn rock_ridge_name(su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    let mut at = 0usize;
    while at + 4 <= su.len() {
        let len = su[at + 2] as usize;
        if len < 4 || at + len > su.len() {
            break;
        }
        if &su[at..at + 2] == b"NM" && len >= 5 {
            let flags = su[at + 4];
            // Flags 2 and 4 are `.` and `..`.
            if flags & 0x06 == 0 {
                name.extend_from_slice(&su[at + 5..at + len]);
                found = true;
            }
        }
        at += len;
    }
    found.then(|| String::from_utf8_lossy(&name).into_owned())
}

fn same_name(names: Names, have: &str, want: &str) -> bool {
    match names {
        Names::Joliet => have == want,
        // A Rock Ridge name is exact; an ISO name is upper case with `_`
        // for what it cannot hold.
        Names::Primary => {
            have == want
                || have.eq_ignore_ascii_case(&want.replace(['-', '.'], "_"))
                || have.eq_ignore_ascii_case(&want.replace('-', "_"))
        }
    }
}

/// The file at `path` (`openstack/latest/user_data`), `None` if there is
/// none.
pub fn read_file<R: Read + Seek>(dev: &mut R, path: &str) -> io::Result<Option<Vec<u8>>> {
    for (names, root) in roots(dev)? {
        if let Some(file) = lookup(dev, root, names, path)? {
            if u64::from(file.len) > MAX_FILE {
                return Err(invalid(format!("{path} is larger than {MAX_FILE} bytes")));
            }
            return read_at(dev, u64::from(file.lba) * SECTOR, file.len as usize).map(Some);
        }
    }
    Ok(None)
}

fn lookup<R: Read + Seek>(
    dev: &mut R,
    root: Extent,
    names: Names,
    path: &str,
) -> io::Result<Option<Extent>> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut here = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let found = entries(dev, here, names)?
            .into_iter()
            .find(|(name, e)| e.dir != last && same_name(names, name, part));
        match found {
            Some((_, e)) => here = e,
            None => return Ok(None),
        }
    }
    Ok(Some(here))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// How a test image names its files.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Style {
        /// A Joliet tree beside the primary one (names upper-cased there).
        Joliet,
        /// Rock Ridge `NM` entries in the primary tree.
        RockRidge,
        /// Only ISO names (`USER_DATA.;1`).
        Plain,
    }

    struct Node {
        name: String,
        data: Option<Vec<u8>>,
        children: Vec<Node>,
    }

    fn tree(files: &[(&str, &[u8])]) -> Node {
        let mut root = Node {
            name: String::new(),
            data: None,
            children: Vec::new(),
        };
        for (path, bytes) in files {
            let mut here = &mut root;
            let parts: Vec<&str> = path.split('/').collect();
            for (i, p) in parts.iter().enumerate() {
                let pos = match here.children.iter().position(|c| c.name == *p) {
                    Some(pos) => pos,
                    None => {
                        here.children.push(Node {
                            name: p.to_string(),
                            data: (i + 1 == parts.len()).then(|| bytes.to_vec()),
                            children: Vec::new(),
                        });
                        here.children.len() - 1
                    }
                };
                here = &mut here.children[pos];
            }
        }
        root
    }

    fn dir_record(name: &[u8], su: &[u8], lba: u32, len: u32, dir: bool) -> Vec<u8> {
        let mut r = vec![0u8; 33];
        r.extend_from_slice(name);
        if name.len().is_multiple_of(2) {
            r.push(0);
        }
        r.extend_from_slice(su);
        r[0] = r.len() as u8;
        r[2..6].copy_from_slice(&lba.to_le_bytes());
        r[6..10].copy_from_slice(&lba.to_be_bytes());
        r[10..14].copy_from_slice(&len.to_le_bytes());
        r[14..18].copy_from_slice(&len.to_be_bytes());
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r
    }

    fn encode(name: &str, joliet: bool, dir: bool, style: Style) -> (Vec<u8>, Vec<u8>) {
        if joliet {
            let mut n: Vec<u8> = name.encode_utf16().flat_map(u16::to_be_bytes).collect();
            if !dir {
                n.extend(";1".encode_utf16().flat_map(u16::to_be_bytes));
            }
            return (n, Vec::new());
        }
        let mut iso = name.to_ascii_uppercase().replace(['-', '.'], "_");
        if !dir {
            iso.push_str(".;1");
        }
        let su = if style == Style::RockRidge {
            let mut nm = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
            nm.extend_from_slice(name.as_bytes());
            nm
        } else {
            Vec::new()
        };
        (iso.into_bytes(), su)
    }

    /// Lays out `node`'s directory (one sector each) and files from
    /// `next`, returning its extent.
    fn layout(
        img: &mut Vec<u8>,
        node: &Node,
        joliet: bool,
        style: Style,
        next: &mut u32,
    ) -> (u32, u32) {
        let lba = *next;
        *next += 1;
        let mut recs = Vec::new();
        for c in &node.children {
            let (clba, clen) = match &c.data {
                Some(d) => {
                    let l = *next;
                    *next += (d.len() as u32).div_ceil(2048).max(1);
                    put(img, l, d);
                    (l, d.len() as u32)
                }
                None => layout(img, c, joliet, style, next),
            };
            let (name, su) = encode(&c.name, joliet, c.data.is_none(), style);
            recs.extend(dir_record(&name, &su, clba, clen, c.data.is_none()));
        }
        let mut sector = dir_record(&[0], &[], lba, 2048, true);
        sector.extend(dir_record(&[1], &[], lba, 2048, true));
        sector.extend(recs);
        assert!(sector.len() <= 2048, "test directory too large");
        put(img, lba, &sector);
        (lba, 2048)
    }

    fn put(img: &mut Vec<u8>, lba: u32, bytes: &[u8]) {
        let at = lba as usize * 2048;
        let end = (at + bytes.len()).div_ceil(2048) * 2048;
        if img.len() < end {
            img.resize(end, 0);
        }
        img[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn descriptor(kind: u8, volid: &str, root: (u32, u32), joliet: bool) -> Vec<u8> {
        let mut d = vec![0u8; 2048];
        d[0] = kind;
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        let id = format!("{volid:<32}");
        d[40..72].copy_from_slice(id.as_bytes());
        if joliet {
            d[88..91].copy_from_slice(b"%/E");
        }
        if kind != 255 {
            d[128..130].copy_from_slice(&2048u16.to_le_bytes());
            d[156..190].copy_from_slice(&dir_record(&[0], &[], root.0, root.1, true));
        }
        d
    }

    /// An ISO 9660 image with volume id `volid` holding `files`.
    pub(crate) fn image(volid: &str, files: &[(&str, &[u8])], style: Style) -> Vec<u8> {
        let root = tree(files);
        let mut img = vec![0u8; 19 * 2048];
        let mut next = 19;
        let primary = layout(&mut img, &root, false, style, &mut next);
        let joliet =
            (style == Style::Joliet).then(|| layout(&mut img, &root, true, style, &mut next));
        put(&mut img, 16, &descriptor(1, volid, primary, false));
        match joliet {
            Some(j) => {
                put(&mut img, 17, &descriptor(2, volid, j, true));
                put(&mut img, 18, &descriptor(255, "", (0, 0), false));
            }
            None => put(&mut img, 17, &descriptor(255, "", (0, 0), false)),
        }
        img
    }

    const FILES: &[(&str, &[u8])] = &[
        ("user-data", b"#cloud-config\nhostname: a\n"),
        ("meta-data", b"instance-id: i-1\n"),
        ("openstack/latest/meta_data.json", b"{}"),
        ("openstack/latest/user_data", b"#cloud-config\n"),
    ];

    #[test]
    fn reads_files_in_every_naming_style() {
        for style in [Style::Joliet, Style::RockRidge, Style::Plain] {
            let img = image("cidata", FILES, style);
            let label = super::super::label::probe(&img).expect("label");
            assert_eq!(label.label, "cidata");
            let mut dev = io::Cursor::new(img);
            for (path, bytes) in FILES {
                let got = read_file(&mut dev, path).expect("read");
                assert_eq!(got.as_deref(), Some(*bytes), "{style:?} {path}");
            }
            assert_eq!(read_file(&mut dev, "network-config").expect("read"), None);
            assert_eq!(
                read_file(&mut dev, "openstack/user_data").expect("read"),
                None
            );
            // A directory is not a file.
            assert_eq!(read_file(&mut dev, "openstack").expect("read"), None);
        }
    }

    /// Images as the tests and users make them; skipped where xorriso is
    /// not installed (the hand-made images above cover the format).
    #[test]
    fn reads_images_made_by_xorriso() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tree = tmp.path().join("tree");
        for (path, bytes) in FILES {
            let p = tree.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
            std::fs::write(&p, bytes).expect("write");
        }
        for flags in [&["-joliet", "-rock"][..], &["-rock"], &["-joliet"]] {
            let iso = tmp.path().join("seed.iso");
            let made = std::process::Command::new("xorriso")
                .args(["-as", "mkisofs", "-quiet", "-volid", "cidata", "-o"])
                .arg(&iso)
                .args(flags)
                .arg(&tree)
                .stderr(std::process::Stdio::null())
                .status();
            match made {
                Ok(s) if s.success() => {}
                _ => {
                    eprintln!("xorriso is not installed: skipped");
                    return;
                }
            }
            let img = std::fs::read(&iso).expect("iso");
            let label = super::super::label::probe(&img).expect("label");
            assert_eq!(label.label, "cidata");
            let mut dev = io::Cursor::new(img);
            for (path, bytes) in FILES {
                let got = read_file(&mut dev, path).expect("read");
                assert_eq!(got.as_deref(), Some(*bytes), "{flags:?} {path}");
            }
        }
    }

    #[test]
    fn a_damaged_image_is_an_error_not_a_panic() {
        let mut img = image("cidata", FILES, Style::RockRidge);
        assert!(read_file(&mut io::Cursor::new(&img[..17 * 2048]), "user-data").is_err());
        // A record length that runs past its directory.
        let root = 19 * 2048;
        img[root + 68] = 250;
        img.truncate(20 * 2048 - 100);
        assert!(read_file(&mut io::Cursor::new(img), "user-data").is_err());
        assert!(read_file(&mut io::Cursor::new(vec![0u8; 40000]), "x").is_err());
    }
}
