//! The bootloader on firmware: find the boot disk and its slots, read the
//! ESP and OEM settings, show the menu if asked, then hand over to
//! [`plan::boot`] with this machine as its [`Firmware`].

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::convert::Infallible;

use tandem_slot::table::{slot_pair, store_pair, usr_entry};
use tandem_slot::{BootDecision, Gpt, Slot, SlotPair, TableError};
use uefi::proto::device_path::DevicePath;
use uefi::proto::loaded_image::LoadedImage;
use uefi::{Handle, Status, boot};

use crate::cmdline::Cmdline;
use crate::console::{self, say};
use crate::disk::{self, BootDisk, UefiDisk, open_shared};
use crate::error::{DiskError, KernelError, SetupError};
use crate::menu::Menu;
use crate::plan::{self, Firmware};
use crate::{esp, kernel};
use tandem_contract::Partition;
use tandem_contract::cmdline::UsrSource;
use tandem_contract::esp::{
    self as files, ConfigWarning, LOADER_CONF, LoaderConf, OEM_CMDLINE, Parsed, SlotFiles,
    uefi_path,
};

/// Entry point: boots a slot or says why not, waits for a key and resets.
pub fn main() -> Status {
    // Only the logger; a failure leaves println-less panics, nothing worse.
    let _ = uefi::helpers::init();
    match run() {
        Ok(never) => match never {},
        Err(e) => {
            say(&format!("tandem-boot: {e}"));
            console::wait_key_then_reset()
        }
    }
}

fn run() -> Result<Infallible, SetupError> {
    let esp = own_device()?;
    // Our own copy: the ESP path is needed until the kernel starts.
    let esp_path: Box<DevicePath> = open_shared::<DevicePath>(esp)
        .map_err(|e| SetupError::BootDevicePath(e.status()))?
        .to_boxed();
    let loader = read_loader_conf(esp);
    if loader.live {
        return boot_live(esp, &esp_path, &loader);
    }
    let BootDisk { mut disk, gpt } = disk::find_boot_disk(&esp_path)?;
    let pair = slot_pair(&gpt)?;
    if !gpt.health.is_clean() {
        repair(&mut disk, &gpt);
    }

    let oem = read_oem_cmdline(&gpt);
    let choice = Menu::new(pair, loader.timeout).and_then(|menu| {
        let a = slot_version(esp, Slot::A);
        let b = slot_version(esp, Slot::B);
        console::run_menu(menu, [a.as_deref(), b.as_deref()])
    });

    let mut machine = Machine {
        disk,
        gpt,
        esp,
        esp_path,
        loader,
        oem,
    };
    match plan::boot(&mut machine, pair, choice) {
        // StartImage of a Linux kernel does not return when it boots; the
        // plan only sees Ok from test doubles.
        Ok(decision) => say(&format!(
            "tandem-boot: slot {} returned without an error, nothing left to do",
            decision.slot
        )),
        Err(nothing) => {
            for line in nothing.report() {
                say(&line);
            }
        }
    }
    console::wait_key_then_reset()
}

/// A Tandem ISO (`live yes` in loader.conf): no slots to choose from and
/// no partition table to write. Slot A's files start with `tandem.live`;
/// the early init finds /usr on the ISO and checks it with slot A's root
/// hash.
fn boot_live(
    esp: Handle,
    esp_path: &DevicePath,
    loader: &LoaderConf,
) -> Result<Infallible, SetupError> {
    let paths = SlotFiles::of(Slot::A);
    let conf_path = uefi_path(&paths.conf);
    let Parsed {
        value: conf,
        warnings,
    } = files::parse_slot_conf(&esp::read(esp, &conf_path)?);
    warn_all(&conf_path, &warnings);
    esp::check_file(esp, &uefi_path(&paths.initrd))?;
    let line = Cmdline {
        slot: Slot::A,
        usr: UsrSource::Live,
        loader_options: &loader.options,
        slot_options: &conf.options,
        oem: "",
    }
    .render();
    let marker = format!(
        "tandem-boot: live boot (ISO), version {}",
        conf.version.as_deref().unwrap_or("unknown")
    );
    Err(kernel::load_and_start(
        esp,
        esp_path,
        &uefi_path(&paths.kernel),
        &line,
        || say(&marker),
    ))?
}

/// The partition we were loaded from (the ESP).
fn own_device() -> Result<Handle, SetupError> {
    let image = open_shared::<LoadedImage>(boot::image_handle())
        .map_err(|e| SetupError::OwnImage(e.status()))?;
    image.device().ok_or(SetupError::NoBootDevice)
}

/// Rewrites both copies of a table that had a damaged or stale copy.
fn repair(disk: &mut UefiDisk, gpt: &Gpt) {
    let damage = |d: &Option<tandem_slot::gpt::Damage>| {
        d.as_ref()
            .map_or(String::from("intact"), |d| format!("{d}"))
    };
    say(&format!(
        "tandem-boot: warning: partition table copies differ (primary: {}; backup: {}); rewriting both from the {} copy",
        damage(&gpt.health.primary),
        damage(&gpt.health.backup),
        gpt.read_from,
    ));
    if let Err(e) = gpt.write(disk) {
        say(&format!(
            "tandem-boot: warning: cannot repair the partition table: {e}"
        ));
    }
}

fn warn_all(what: &str, warnings: &[ConfigWarning]) {
    for w in warnings {
        say(&format!("tandem-boot: warning: {what}: {w}"));
    }
}

fn read_loader_conf(esp: Handle) -> LoaderConf {
    let path = uefi_path(LOADER_CONF);
    match esp::read_optional(esp, &path) {
        Ok(Some(bytes)) => {
            let Parsed { value, warnings } = files::parse_loader_conf(&bytes);
            warn_all(&path, &warnings);
            value
        }
        Ok(None) => {
            say(&format!(
                "tandem-boot: warning: {path} is missing; booting without its options"
            ));
            LoaderConf::default()
        }
        Err(e) => {
            say(&format!(
                "tandem-boot: warning: {e}; booting without its options"
            ));
            LoaderConf::default()
        }
    }
}

/// Extra kernel arguments from the OEM partition's `cmdline`; empty when
/// there is no OEM partition, no FAT on it or no such file.
fn read_oem_cmdline(gpt: &Gpt) -> String {
    let oem = Partition::Oem.number();
    let Some(entry) = gpt.partition(oem) else {
        return String::new();
    };
    let Some(volume) = esp::find_volume(entry.unique_guid) else {
        say(&format!(
            "tandem-boot: note: OEM partition {oem} has no file system the firmware can read; no OEM kernel arguments"
        ));
        return String::new();
    };
    match esp::read_optional(volume, &uefi_path(OEM_CMDLINE)) {
        Ok(Some(bytes)) => {
            let Parsed { value, warnings } = files::parse_oem_cmdline(&bytes);
            warn_all("OEM partition \\cmdline", &warnings);
            value
        }
        Ok(None) => String::new(),
        Err(e) => {
            say(&format!(
                "tandem-boot: warning: OEM partition: {e}; booting without OEM kernel arguments"
            ));
            String::new()
        }
    }
}

/// The version in a slot's .conf, for the menu; `None` if unreadable.
fn slot_version(esp: Handle, slot: Slot) -> Option<String> {
    let bytes = esp::read(esp, &uefi_path(&SlotFiles::of(slot).conf)).ok()?;
    files::parse_slot_conf(&bytes).value.version
}

/// This machine, as the boot plan sees it.
struct Machine {
    disk: UefiDisk,
    gpt: Gpt,
    esp: Handle,
    esp_path: Box<DevicePath>,
    loader: LoaderConf,
    oem: String,
}

impl Firmware for Machine {
    type PersistError = TableError<DiskError>;
    type StartError = KernelError;

    fn persist(&mut self, pair: &SlotPair) -> Result<(), TableError<DiskError>> {
        store_pair(&mut self.gpt, *pair)?;
        self.gpt.write(&mut self.disk)?;
        Ok(())
    }

    fn start(&mut self, decision: &BootDecision) -> Result<(), KernelError> {
        let slot = decision.slot;
        // A slot's kernel, initrd and .conf are installed together; one
        // missing means the slot is incomplete, so give it up here rather
        // than let the kernel fail later.
        let paths = SlotFiles::of(slot);
        let conf_path = uefi_path(&paths.conf);
        let bytes = esp::read(self.esp, &conf_path)?;
        let Parsed {
            value: conf,
            warnings,
        } = files::parse_slot_conf(&bytes);
        warn_all(&conf_path, &warnings);
        esp::check_file(self.esp, &uefi_path(&paths.initrd))?;

        let partuuid = usr_entry(&self.gpt, slot)?.unique_guid;
        let line = Cmdline {
            slot,
            usr: UsrSource::Partition(partuuid),
            loader_options: &self.loader.options,
            slot_options: &conf.options,
            oem: &self.oem,
        }
        .render();
        let marker = plan::decision_line(decision, conf.version.as_deref());
        Err(kernel::load_and_start(
            self.esp,
            &self.esp_path,
            &uefi_path(&paths.kernel),
            &line,
            || say(&marker),
        ))
    }

    fn say(&mut self, line: &str) {
        say(line);
    }
}
