//! `BOOTX64.EFI`: everything happens in [`bootloader::firmware::run`].
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
#[uefi::entry]
fn main() -> uefi::Status {
    bootloader::firmware::main()
}

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!("BOOTX64.EFI runs under UEFI firmware: build it with --target x86_64-unknown-uefi");
    std::process::exit(2);
}
