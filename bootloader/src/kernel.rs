//! Loading and starting a slot's kernel (Linux EFI stub) from the ESP.

use alloc::vec::Vec;

use uefi::boot::{self, LoadImageSource};
use uefi::proto::device_path::DevicePath;
use uefi::proto::device_path::build::{DevicePathBuilder, media::FilePath};
use uefi::proto::loaded_image::LoadedImage;
use uefi::{CString16, Handle};

use crate::cmdline::encode_ucs2;
use crate::error::{EspError, KernelError};
use crate::esp;

/// Reads the kernel at `path` from the ESP (`esp`, whose device path is
/// `esp_path`), loads it with `cmdline` as its load options, calls
/// `before_start` and starts it. Returns only if the kernel could not be
/// loaded or came back.
pub fn load_and_start(
    esp: Handle,
    esp_path: &DevicePath,
    path: &str,
    cmdline: &str,
    before_start: impl FnOnce(),
) -> KernelError {
    let image = match prepare(esp, esp_path, path, cmdline) {
        Ok(image) => image,
        Err(e) => return e,
    };
    before_start();
    let status = match boot::start_image(image.handle) {
        Ok(()) => uefi::Status::SUCCESS,
        Err(e) => e.status(),
    };
    // Best effort: the kernel's memory is of no use to a fallback slot.
    let _ = boot::unload_image(image.handle);
    drop(image.options);
    KernelError::Returned {
        path: path.into(),
        status,
    }
}

/// A loaded kernel and the load options it points at, which must live
/// until StartImage returns.
struct Loaded {
    handle: Handle,
    options: Vec<u16>,
}

fn prepare(
    esp: Handle,
    esp_path: &DevicePath,
    path: &str,
    cmdline: &str,
) -> Result<Loaded, KernelError> {
    let options = encode_ucs2(cmdline)?;
    let options_bytes = u32::try_from(options.len() * 2)
        .map_err(|_| crate::cmdline::CmdlineError::TooLong(options.len()))?;
    let bytes = esp::read(esp, path)?;

    // The full device path (ESP + file) gives the kernel a device handle and
    // file path, which its EFI stub needs to resolve `initrd=` on the ESP.
    let file_name =
        CString16::try_from(path).map_err(|_| EspError::BadPath { path: path.into() })?;
    let mut storage = Vec::new();
    let dp_err = |e: &dyn core::fmt::Display| KernelError::DevicePath {
        path: path.into(),
        what: alloc::format!("{e}"),
    };
    let mut builder = DevicePathBuilder::with_vec(&mut storage);
    for node in esp_path.node_iter() {
        builder = builder.push(&node).map_err(|e| dp_err(&e))?;
    }
    let full_path = builder
        .push(&FilePath {
            path_name: &file_name,
        })
        .and_then(|b| b.finalize())
        .map_err(|e| dp_err(&e))?;

    let handle = boot::load_image(
        boot::image_handle(),
        LoadImageSource::FromBuffer {
            buffer: &bytes,
            file_path: Some(full_path),
        },
    )
    .map_err(|e| KernelError::Load {
        path: path.into(),
        status: e.status(),
    })?;
    drop(bytes);

    match boot::open_protocol_exclusive::<LoadedImage>(handle) {
        Ok(mut loaded) => {
            // SAFETY: `options` is returned with the handle and kept alive
            // until StartImage returns.
            unsafe { loaded.set_load_options(options.as_ptr().cast(), options_bytes) };
        }
        Err(e) => {
            let _ = boot::unload_image(handle);
            return Err(KernelError::LoadOptions {
                path: path.into(),
                status: e.status(),
            });
        }
    }
    Ok(Loaded { handle, options })
}
