//! Reboot windows: the contract's ([`tandem_contract::window`]), which the
//! cloud-config validator reads too, re-exported here.

pub use tandem_contract::window::{Offset, Position, Start, Weekday, Window, WindowError};
