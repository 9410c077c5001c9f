//! Where the user-data comes from (to be written).
