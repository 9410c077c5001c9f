//! Tandem's update engine (check, download, verify, write the inactive slot,
//! flip priorities). Its work starts with the update engine issue; until then
//! the crate is empty on purpose.
