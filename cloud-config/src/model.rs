//! The cloud-config as typed values: what the validator read, with the
//! position of each part that the node may still have to report on
//! (a user it could not create, a file it could not write).

use std::net::Ipv4Addr;
use std::time::Duration;

use tandem_contract::ipv4::Ipv4Cidr;
use tandem_contract::strategy::RebootStrategy as TandemStrategy;

use crate::files::{Encoding, Owner};
use crate::translate::TranslatedService;
use crate::yaml::Pos;

/// A whole cloud-config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloudConfig {
    /// `hostname`.
    pub hostname: Option<String>,
    /// `ssh_authorized_keys`: for the user `core`.
    pub ssh_authorized_keys: Vec<String>,
    /// `users`.
    pub users: Vec<User>,
    /// `write_files`.
    pub write_files: Vec<WriteFile>,
    /// `manage_etc_hosts`.
    pub manage_etc_hosts: Option<ManageEtcHosts>,
    /// `coreos:`.
    pub coreos: Coreos,
    /// `tandem:` (Tandem's own section).
    pub tandem: Tandem,
}

/// One entry of `users`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// Where the entry starts.
    pub pos: Pos,
    /// `name` (required).
    pub name: String,
    /// `gecos`.
    pub gecos: Option<String>,
    /// `passwd`: a crypt(3) hash, never a password.
    pub passwd: Option<String>,
    /// `homedir`.
    pub homedir: Option<String>,
    /// `no_create_home`.
    pub no_create_home: bool,
    /// `primary_group`.
    pub primary_group: Option<String>,
    /// `groups`: supplementary groups.
    pub groups: Vec<String>,
    /// `no_user_group`: no group of the user's name.
    pub no_user_group: bool,
    /// `ssh_authorized_keys`.
    pub ssh_authorized_keys: Vec<String>,
    /// `system`: a system account.
    pub system: bool,
    /// `no_log_init`.
    pub no_log_init: bool,
    /// `shell`.
    pub shell: Option<String>,
    /// `lock_passwd`.
    pub lock_passwd: Option<bool>,
}

/// One entry of `write_files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFile {
    /// Where the entry starts.
    pub pos: Pos,
    /// `path`: absolute, not under /usr, /proc, /sys, /dev.
    pub path: String,
    /// The decoded content (`content` after `encoding`).
    pub content: Vec<u8>,
    /// `owner` (default root:root).
    pub owner: Option<Owner>,
    /// `permissions` (default 0644).
    pub permissions: Option<u32>,
    /// `encoding`.
    pub encoding: Option<Encoding>,
    /// `append`: add to the end instead of replacing.
    pub append: bool,
}

/// `manage_etc_hosts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManageEtcHosts {
    /// `localhost` (or `true`): the host name resolves to 127.0.0.1.
    Localhost,
    /// `false`: /etc/hosts is left alone.
    Off,
}

/// `coreos:`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coreos {
    /// `update`.
    pub update: Option<Update>,
    /// `locksmith`.
    pub locksmith: Option<Locksmith>,
    /// `units`.
    pub units: Vec<Unit>,
    /// `etcd2`.
    pub etcd2: Option<Etcd2>,
}

/// CoreOS's reboot strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreosStrategy {
    /// `reboot`.
    Reboot,
    /// `etcd-lock`.
    EtcdLock,
    /// `best-effort`: etcd-lock if etcd is there, else reboot.
    BestEffort,
    /// `off`.
    Off,
}

impl CoreosStrategy {
    /// Parses `reboot`, `etcd-lock`, `best-effort`, `off` (dashes or underscores).
    pub fn parse(text: &str) -> Option<CoreosStrategy> {
        match text.replace('_', "-").as_str() {
            "reboot" => Some(CoreosStrategy::Reboot),
            "etcd-lock" => Some(CoreosStrategy::EtcdLock),
            "best-effort" => Some(CoreosStrategy::BestEffort),
            "off" => Some(CoreosStrategy::Off),
            _ => None,
        }
    }

    /// Tandem's strategy; `best-effort` is `etcd-lock` when the config
    /// gives the agent an etcd (`locksmith.endpoint` or `etcd2`), else `reboot`.
    pub fn tandem(self, has_etcd: bool) -> TandemStrategy {
        match self {
            CoreosStrategy::Reboot => TandemStrategy::Reboot,
            CoreosStrategy::EtcdLock => TandemStrategy::EtcdLock,
            CoreosStrategy::BestEffort if has_etcd => TandemStrategy::EtcdLock,
            CoreosStrategy::BestEffort => TandemStrategy::Reboot,
            CoreosStrategy::Off => TandemStrategy::Off,
        }
    }
}

/// `coreos.update`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// `reboot_strategy`.
    pub reboot_strategy: Option<CoreosStrategy>,
    /// `group`: the Tandem channel of the same name.
    pub group: Option<String>,
    /// `server`: the update repository's URL.
    pub server: Option<String>,
    /// `proxy` (Tandem's): the proxy for update requests
    /// (`http://[user:password@]host:port`, or `none`).
    pub proxy: Option<String>,
}

/// `coreos.locksmith`: the reboot agent's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locksmith {
    /// `endpoint`: etcd URLs (comma-separated in the file).
    pub endpoints: Vec<String>,
    /// `etcd_cafile`.
    pub etcd_cafile: Option<String>,
    /// `etcd_certfile`.
    pub etcd_certfile: Option<String>,
    /// `etcd_keyfile`.
    pub etcd_keyfile: Option<String>,
    /// `etcd_username`.
    pub etcd_username: Option<String>,
    /// `etcd_password`.
    pub etcd_password: Option<String>,
    /// `group`: the reboot lock's group.
    pub group: Option<String>,
    /// `window_start` as written (`Thu 04:00`, `04:00`).
    pub window_start: Option<String>,
    /// `window_length`.
    pub window_length: Option<Duration>,
}

/// What `command` asks of a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitCommand {
    /// `start`.
    Start,
    /// `stop`.
    Stop,
    /// `restart`.
    Restart,
    /// `reload`.
    Reload,
    /// `try-restart`.
    TryRestart,
    /// `reload-or-restart`.
    ReloadOrRestart,
    /// `reload-or-try-restart`.
    ReloadOrTryRestart,
}

impl UnitCommand {
    /// Parses a command name.
    pub fn parse(text: &str) -> Option<UnitCommand> {
        Some(match text {
            "start" => UnitCommand::Start,
            "stop" => UnitCommand::Stop,
            "restart" => UnitCommand::Restart,
            "reload" => UnitCommand::Reload,
            "try-restart" => UnitCommand::TryRestart,
            "reload-or-restart" => UnitCommand::ReloadOrRestart,
            "reload-or-try-restart" => UnitCommand::ReloadOrTryRestart,
            _ => return None,
        })
    }

    /// Whether it starts a unit that is not running (which, when the
    /// config is applied at boot, none is).
    pub fn starts(self) -> bool {
        matches!(
            self,
            UnitCommand::Start | UnitCommand::Restart | UnitCommand::ReloadOrRestart
        )
    }
}

/// One entry of `coreos.units`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unit {
    /// Where the entry starts.
    pub pos: Pos,
    /// `name` (`hello.service`).
    pub name: String,
    /// `runtime`: in /run, for this boot only.
    pub runtime: bool,
    /// `enable`.
    pub enable: Option<bool>,
    /// `content`: the unit file.
    pub content: Option<String>,
    /// `command`.
    pub command: Option<UnitCommand>,
    /// `mask`.
    pub mask: bool,
    /// `drop_ins`.
    pub drop_ins: Vec<DropIn>,
}

/// One drop-in of a unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropIn {
    /// `name` (`10-env.conf`).
    pub name: String,
    /// `content`.
    pub content: String,
}

/// `coreos.etcd2`: etcd flags (names with dashes, as etcd spells them), in
/// the file's order, values as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Etcd2 {
    /// `(flag, value)`.
    pub flags: Vec<(String, String)>,
}

/// `tandem:`: Tandem's own section.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tandem {
    /// `services`: written in Tandem's service-file keys.
    pub services: Vec<TranslatedService>,
    /// `network`: static IPv4 settings.
    pub network: Network,
}

/// `tandem.network`: static IPv4 addresses, routes and name servers, beside
/// DHCP on the first Ethernet interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// `interfaces`, in the file's order.
    pub interfaces: Vec<Interface>,
}

impl Network {
    /// The first static address, for `$private_ipv4` when the metadata
    /// has none.
    pub fn first_address(&self) -> Option<Ipv4Addr> {
        self.interfaces
            .iter()
            .flat_map(|i| &i.addresses)
            .map(|c| c.address)
            .next()
    }
}

/// One entry of `tandem.network.interfaces`: exactly one of `name` and
/// `mac` says which interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// Where the entry starts.
    pub pos: Pos,
    /// `name`: the kernel's name (`eth1`).
    pub name: Option<String>,
    /// `mac`: the MAC address, lower case.
    pub mac: Option<String>,
    /// `addresses`: at least one.
    pub addresses: Vec<Ipv4Cidr>,
    /// `gateway`: the default route's, in one of the addresses' subnets.
    pub gateway: Option<Ipv4Addr>,
    /// `routes`.
    pub routes: Vec<Route>,
    /// `dns`: name servers.
    pub dns: Vec<Ipv4Addr>,
}

/// One entry of an interface's `routes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Where the entry starts.
    pub pos: Pos,
    /// `to`: the destination network.
    pub to: Ipv4Cidr,
    /// `via`: the gateway, in one of the interface's subnets.
    pub via: Ipv4Addr,
}
