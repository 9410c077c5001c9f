//! The boot disk: Tandem's [`BlockDevice`] over UEFI Block I/O, and how the
//! whole disk is found from the ESP partition the firmware loaded us from.

use alloc::vec::Vec;

use tandem_slot::{BlockDevice, Gpt, Guid};
use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol};
use uefi::mem::AlignedBuffer;
use uefi::proto::ProtocolPointer;
use uefi::proto::device_path::build::DevicePathBuilder;
use uefi::proto::device_path::media::{HardDrive, PartitionSignature};
use uefi::proto::device_path::{DevicePath, DevicePathNode};
use uefi::proto::media::block::BlockIO;
use uefi::{Handle, Status};

use crate::error::{DiskError, SetupError};

/// Opens a protocol the way `HandleProtocol` does, without taking it from
/// the drivers that use it: an exclusive open of a disk's Block I/O would
/// disconnect the partition and FAT drivers stacked on it, ESP included.
pub fn open_shared<P: ProtocolPointer + ?Sized>(handle: Handle) -> uefi::Result<ScopedProtocol<P>> {
    let params = OpenProtocolParams {
        handle,
        agent: boot::image_handle(),
        controller: None,
    };
    // SAFETY: the boot path never disconnects controllers or uninstalls
    // protocols, so the interface outlives the returned scope.
    unsafe { boot::open_protocol::<P>(params, OpenProtocolAttributes::GetProtocol) }
}

/// A disk (or partition) through its Block I/O protocol.
#[derive(Debug)]
pub struct UefiDisk {
    io: ScopedProtocol<BlockIO>,
    media_id: u32,
    block_size: u64,
    num_blocks: u64,
    align: usize,
}

impl UefiDisk {
    /// Opens the Block I/O protocol of `handle`; fails without media.
    pub fn open(handle: Handle) -> uefi::Result<UefiDisk> {
        let io = open_shared::<BlockIO>(handle)?;
        let media = io.media();
        if !media.is_media_present() {
            return Err(Status::NO_MEDIA.into());
        }
        let block_size = u64::from(media.block_size());
        let num_blocks = media
            .last_block()
            .checked_add(1)
            .ok_or(uefi::Error::from(Status::BAD_BUFFER_SIZE))?;
        let media_id = media.media_id();
        // IoAlign 0 and 1 both mean "any alignment".
        let align = usize::try_from(media.io_align()).unwrap_or(1).max(1);
        Ok(UefiDisk {
            io,
            media_id,
            block_size,
            num_blocks,
            align,
        })
    }

    /// Whether this handle is a partition rather than a whole disk.
    pub fn is_partition(&self) -> bool {
        self.io.media().is_logical_partition()
    }

    fn aligned(&self, buf: &[u8]) -> bool {
        (buf.as_ptr() as usize).is_multiple_of(self.align)
    }

    fn bounce(&self, len: usize) -> Result<AlignedBuffer, DiskError> {
        AlignedBuffer::from_size_align(len, self.align).map_err(|_| DiskError::Buffer {
            len,
            align: self.align,
        })
    }
}

impl BlockDevice for UefiDisk {
    type Error = DiskError;

    fn block_size(&self) -> u64 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let len = buf.len();
        let err = |status| DiskError::Io {
            op: "read",
            lba,
            len,
            status,
        };
        if buf.is_empty() {
            return Ok(());
        }
        if self.aligned(buf) {
            let media_id = self.media_id;
            return self
                .io
                .read_blocks(media_id, lba, buf)
                .map_err(|e| err(e.status()));
        }
        let mut bounce = self.bounce(buf.len())?;
        self.io
            .read_blocks(self.media_id, lba, bounce.as_slice_mut())
            .map_err(|e| err(e.status()))?;
        buf.copy_from_slice(bounce.as_slice());
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let err = |status| DiskError::Io {
            op: "write",
            lba,
            len: buf.len(),
            status,
        };
        if buf.is_empty() {
            return Ok(());
        }
        if self.aligned(buf) {
            let media_id = self.media_id;
            return self
                .io
                .write_blocks(media_id, lba, buf)
                .map_err(|e| err(e.status()));
        }
        let mut bounce = self.bounce(buf.len())?;
        bounce.copy_from_slice(buf);
        self.io
            .write_blocks(self.media_id, lba, bounce.as_slice())
            .map_err(|e| err(e.status()))
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.io
            .flush_blocks()
            .map_err(|e| DiskError::Flush(e.status()))
    }
}

/// The disk holding the ESP, with its partition table.
#[derive(Debug)]
pub struct BootDisk {
    /// Block I/O of the whole disk.
    pub disk: UefiDisk,
    /// Its table as read (both copies checked).
    pub gpt: Gpt,
}

/// The GPT partition GUID in the last node of a partition's device path
/// (`HD(n,GPT,<guid>,…)`), if it is one.
pub fn partition_guid(path: &DevicePath) -> Option<Guid> {
    let node = path.node_iter().last()?;
    let hd = <&HardDrive>::try_from(node).ok()?;
    match hd.partition_signature() {
        // Device paths store the signature in the GPT's on-disk byte order.
        PartitionSignature::Guid(g) => Some(Guid(g.to_bytes())),
        _ => None,
    }
}

/// Finds the whole disk the ESP (`esp_path`, the device path of the
/// partition we were loaded from) lives on. First the ESP's device path
/// without its hard-drive node, which names the disk itself; if the firmware
/// lays paths out otherwise, every whole disk whose GPT lists the ESP's
/// partition GUID.
pub fn find_boot_disk(esp_path: &DevicePath) -> Result<BootDisk, SetupError> {
    let esp_guid = partition_guid(esp_path).ok_or(SetupError::NotGptPartition)?;
    if let Some(found) = by_device_path(esp_path, esp_guid)? {
        return Ok(found);
    }
    let handles = boot::find_handles::<BlockIO>().unwrap_or_default();
    for handle in handles {
        let Ok(mut disk) = UefiDisk::open(handle) else {
            continue;
        };
        if disk.is_partition() {
            continue;
        }
        if let Ok(gpt) = Gpt::read(&mut disk)
            && holds(&gpt, esp_guid)
        {
            return Ok(BootDisk { disk, gpt });
        }
    }
    Err(SetupError::DiskNotFound(esp_guid))
}

/// The disk named by the ESP's path minus its last node. `Ok(None)` when
/// that does not lead to a whole disk holding the ESP; an unreadable table
/// on that disk is an error, as it is the boot disk.
fn by_device_path(esp_path: &DevicePath, esp_guid: Guid) -> Result<Option<BootDisk>, SetupError> {
    let nodes: Vec<&DevicePathNode> = esp_path.node_iter().collect();
    let Some((_, disk_nodes)) = nodes.split_last() else {
        return Ok(None);
    };
    let mut storage = Vec::new();
    let mut builder = DevicePathBuilder::with_vec(&mut storage);
    for node in disk_nodes {
        let Ok(next) = builder.push(node) else {
            return Ok(None);
        };
        builder = next;
    }
    let Ok(disk_path) = builder.finalize() else {
        return Ok(None);
    };
    let mut remaining = disk_path;
    let Ok(handle) = boot::locate_device_path::<BlockIO>(&mut remaining) else {
        return Ok(None);
    };
    // Only an exact match is the disk; a shorter one would be a controller.
    if remaining.node_iter().next().is_some() {
        return Ok(None);
    }
    let Ok(mut disk) = UefiDisk::open(handle) else {
        return Ok(None);
    };
    if disk.is_partition() {
        return Ok(None);
    }
    let gpt = Gpt::read(&mut disk)?;
    Ok(holds(&gpt, esp_guid).then_some(BootDisk { disk, gpt }))
}

fn holds(gpt: &Gpt, guid: Guid) -> bool {
    gpt.partitions().any(|(_, e)| e.unique_guid == guid)
}
