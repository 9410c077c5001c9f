//! Tandem's ISO (`tandem iso create`): the same file boots from a CD and a
//! USB stick into a live node, and carries the image an installer writes.
//!
//! xorriso lays it out as a hybrid ISO. Its GPT holds the ISO 9660 tree as
//! partition 1 and three partitions appended after it:
//! - [`ESP_PARTITION`]: the bootloader, kernel and initramfs, and
//!   `loader.conf` saying `live yes`; also the El Torito boot image;
//! - [`USR_PARTITION`]: the /usr slot image (file system + dm-verity tree),
//!   of type [`crate::partition::types::LIVE_USR`]. The live node's early
//!   init finds it by that type and verifies it with the root hash on the
//!   command line, as on a disk;
//! - [`DATA_PARTITION`]: the install data, of type
//!   [`crate::partition::types::INSTALL_DATA`]. It holds a
//!   [`DataHeader`] at 0 and the embed area at [`EMBED_OFFSET`]. The header
//!   points at the signed install manifest and the disk payload.
//!
//! Everything is found through the GPT, read by Tandem's own code, so it
//! reads the same from a CD (where Linux makes no partition devices) and a
//! stick. Nothing needs an ISO 9660 driver.

use serde::{Deserialize, Serialize};

/// The ESP (also the El Torito boot image).
pub const ESP_PARTITION: u32 = 2;
/// The live /usr.
pub const USR_PARTITION: u32 = 3;
/// The install data.
pub const DATA_PARTITION: u32 = 4;

/// Bytes of the header at the start of the data partition.
pub const HEADER_SIZE: u64 = 4096;
/// Where the embed area starts in the data partition.
pub const EMBED_OFFSET: u64 = HEADER_SIZE;
/// Bytes of the embed area (`tandem iso customize` writes there).
pub const EMBED_SIZE: u64 = (1 << 20) - HEADER_SIZE;
/// Where the install manifest starts in the data partition.
pub const MANIFEST_OFFSET: u64 = EMBED_OFFSET + EMBED_SIZE;
/// Format of [`DataHeader`] this build reads and writes.
pub const FORMAT: u32 = 1;

/// What a part of the data partition is wrong with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// The text does not fit its area.
    #[error("{what} is {size} bytes; its area on the ISO holds {max}")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The area's size.
        max: u64,
    },
    /// The area holds something else.
    #[error("{what} on the ISO is not readable ({detail}): the ISO is damaged or not a Tandem ISO")]
    Malformed {
        /// Which part.
        what: &'static str,
        /// The parser's words.
        detail: String,
    },
}

/// Where something is inside the data partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// Byte offset from the partition's start.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
}

/// The data partition's header: JSON, padded with NUL bytes to
/// [`HEADER_SIZE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataHeader {
    /// [`FORMAT`].
    pub format: u32,
    /// The signed install manifest (a repository envelope, JSON).
    pub manifest: Span,
    /// The disk payload the manifest's chunks point into.
    pub payload: Span,
}

impl DataHeader {
    /// The header block.
    pub fn render(&self) -> Result<Vec<u8>, LiveError> {
        padded(self, "the install data header", HEADER_SIZE)
    }

    /// Reads the header block.
    pub fn parse(block: &[u8]) -> Result<DataHeader, LiveError> {
        let h: DataHeader =
            unpadded(block, "the install data header")?.ok_or_else(|| LiveError::Malformed {
                what: "the install data header",
                detail: "it is empty".into(),
            })?;
        if h.format != FORMAT {
            return Err(LiveError::Malformed {
                what: "the install data header",
                detail: format!("format {}, this tandem reads {FORMAT}", h.format),
            });
        }
        Ok(h)
    }
}

/// What to do once an unattended install has written the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterInstall {
    /// Reboot (into the installed disk, if the firmware boots it first).
    #[default]
    Reboot,
    /// Power off: the operator removes the ISO before the next start.
    Poweroff,
}

/// An install that runs without a keystroke when the ISO boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnattendedInstall {
    /// The disk to install onto (`/dev/vda`, `/dev/disk/by-id/…`).
    pub dest_device: String,
    /// User-data for the installed node (written to its OEM partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// What to do afterwards.
    #[serde(default)]
    pub then: AfterInstall,
}

/// The embed area: what `tandem iso customize` put there. JSON, padded
/// with NUL bytes; all zeros (a fresh ISO) is the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedded {
    /// The unattended install, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<UnattendedInstall>,
}

impl Embedded {
    /// The whole embed area.
    pub fn render(&self) -> Result<Vec<u8>, LiveError> {
        padded(self, "the embedded configuration", EMBED_SIZE)
    }

    /// Reads the embed area.
    pub fn parse(area: &[u8]) -> Result<Embedded, LiveError> {
        Ok(unpadded(area, "the embedded configuration")?.unwrap_or_default())
    }
}

fn padded<T: Serialize>(value: &T, what: &'static str, size: u64) -> Result<Vec<u8>, LiveError> {
    let mut bytes = serde_json::to_vec(value).map_err(|e| LiveError::Malformed {
        what,
        detail: e.to_string(),
    })?;
    if bytes.len() as u64 > size {
        return Err(LiveError::TooLarge {
            what,
            size: bytes.len(),
            max: size,
        });
    }
    bytes.resize(size as usize, 0);
    Ok(bytes)
}

/// The JSON before the first NUL; `None` when there is none.
fn unpadded<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &'static str,
) -> Result<Option<T>, LiveError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if end == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&bytes[..end])
        .map(Some)
        .map_err(|e| LiveError::Malformed {
            what,
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_follow_each_other_in_the_first_mib() {
        assert_eq!(EMBED_OFFSET, HEADER_SIZE);
        assert_eq!(MANIFEST_OFFSET, 1 << 20);
    }

    #[test]
    fn a_fresh_embed_area_is_empty_and_a_customised_one_reads_back() {
        assert_eq!(
            Embedded::parse(&vec![0; EMBED_SIZE as usize]),
            Ok(Embedded::default())
        );
        let e = Embedded {
            install: Some(UnattendedInstall {
                dest_device: "/dev/vda".into(),
                config: Some("#cloud-config\nhostname: x\n".into()),
                then: AfterInstall::Poweroff,
            }),
        };
        let area = e.render().expect("fits");
        assert_eq!(area.len() as u64, EMBED_SIZE);
        assert_eq!(Embedded::parse(&area), Ok(e));
    }

    #[test]
    fn a_config_too_large_for_the_area_is_refused() {
        let e = Embedded {
            install: Some(UnattendedInstall {
                dest_device: "/dev/vda".into(),
                config: Some("x".repeat(EMBED_SIZE as usize)),
                then: AfterInstall::Reboot,
            }),
        };
        assert!(matches!(e.render(), Err(LiveError::TooLarge { .. })));
    }

    #[test]
    fn header_round_trips_and_garbage_is_named() {
        let h = DataHeader {
            format: FORMAT,
            manifest: Span {
                offset: MANIFEST_OFFSET,
                length: 300,
            },
            payload: Span {
                offset: 2 << 20,
                length: 5,
            },
        };
        assert_eq!(DataHeader::parse(&h.render().expect("fits")), Ok(h));
        let err = DataHeader::parse(b"\x7fELF").expect_err("not a header");
        assert!(err.to_string().contains("not a Tandem ISO"), "{err}");
        assert!(DataHeader::parse(&[0; 4096]).is_err());
    }
}
