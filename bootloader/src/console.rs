//! The UEFI text console (OVMF mirrors it to the serial port): lines, the
//! A/B menu's waiting, and the final wait-and-reset.

use alloc::string::String;
use core::fmt::Write;
use core::time::Duration;

use tandem_slot::Slot;
use uefi::boot::{self, EventType, TimerTrigger, Tpl};
use uefi::proto::console::text::Key;
use uefi::runtime::{self, ResetType};
use uefi::{Status, system};

use crate::menu::{Menu, Step};

/// Prints `text` as is. Characters the console cannot show (outside UCS-2)
/// become `?`, so a stray byte in a config file cannot cut a message short.
pub fn print(text: &str) {
    let shown: String = text
        .chars()
        .map(|ch| if u32::from(ch) > 0xFFFF { '?' } else { ch })
        .collect();
    // A console that fails to print has nowhere to report it.
    system::with_stdout(|out| {
        let _ = out.write_str(&shown);
    });
}

/// Prints one line.
pub fn say(line: &str) {
    print(line);
    print("\n");
}

/// The next key, if one is waiting: its character, `\r` for Enter; other
/// special keys are `None` like no key.
fn read_key() -> Option<char> {
    match next_key() {
        Some(Key::Printable(c)) => Some(char::from(c)),
        _ => None,
    }
}

fn next_key() -> Option<Key> {
    system::with_stdin(|input| input.read_key()).ok().flatten()
}

/// Shows the menu and waits for a choice or the timeout: `Some` slot a
/// person picked, `None` for the default decision.
pub fn run_menu(mut menu: Menu, versions: [Option<&str>; 2]) -> Option<Slot> {
    for line in menu.lines(versions) {
        say(&line);
    }
    print(&menu.countdown());
    let key_event = system::with_stdin(|input| input.wait_for_key_event()).ok();
    // SAFETY: no notification function, so nothing runs behind our back.
    let timer = unsafe { boot::create_event(EventType::TIMER, Tpl::APPLICATION, None, None) };
    let Ok(timer) = timer else {
        say("\ntandem-boot: warning: no timer for the menu; booting the default slot");
        return None;
    };
    if boot::set_timer(&timer, TimerTrigger::Periodic(Duration::from_secs(1))).is_err() {
        let _ = boot::close_event(timer);
        say("\ntandem-boot: warning: no timer for the menu; booting the default slot");
        return None;
    }
    let choice = loop {
        // SAFETY: the copies only live for this call; `timer` is closed
        // after the loop, the key event belongs to the firmware.
        let timer_copy = unsafe { timer.unsafe_clone() };
        let signalled = match &key_event {
            Some(key) => boot::wait_for_event(&[unsafe { key.unsafe_clone() }, timer_copy]),
            None => boot::wait_for_event(&[timer_copy]).map(|_| 1),
        };
        let step = match signalled {
            Ok(0) => match read_key() {
                Some(ch) => menu.key(ch),
                None => Step::Wait(None),
            },
            Ok(_) => menu.tick(),
            Err(_) => Step::Boot(None),
        };
        match step {
            Step::Wait(Some(text)) => print(&text),
            Step::Wait(None) => {}
            Step::Boot(choice) => break choice,
        }
    };
    let _ = boot::close_event(timer);
    print("\n");
    choice
}

/// Waits for a key, then restarts the machine. Without a console input it
/// waits a minute. (The firmware's boot watchdog, 5 minutes on OVMF, may
/// restart it first.)
pub fn wait_key_then_reset() -> ! {
    // Keys typed earlier (e.g. at the menu) must not skip the message.
    while next_key().is_some() {}
    say("tandem-boot: press any key to restart");
    match system::with_stdin(|input| input.wait_for_key_event()) {
        Ok(event) => {
            let _ = boot::wait_for_event(&[event]);
        }
        Err(_) => boot::stall(Duration::from_secs(60)),
    }
    say("tandem-boot: restarting");
    runtime::reset(ResetType::COLD, Status::ABORTED, None)
}
