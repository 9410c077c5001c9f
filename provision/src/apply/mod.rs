//! Applying a checked cloud-config to the node (to be written).
