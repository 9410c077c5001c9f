//! Tandem's reboot coordination agent (etcd semaphore, FleetLock, reboot
//! windows). Its work starts with the agent issue; until then the crate is
//! empty on purpose.
