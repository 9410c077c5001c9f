//! QEMU's fw_cfg: `-fw_cfg name=opt/org.tandem/user-data,file=…` shows up
//! as `/sys/firmware/qemu_fw_cfg/by_name/opt/org.tandem/user-data/raw`
//! once the `qemu_fw_cfg` driver is loaded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tandem_contract::provision::FW_CFG_NAME;

use super::dmi::Dmi;
use super::error::Error;
use super::{Env, Found};

/// The driver.
const MODULE: &str = "qemu_fw_cfg";

fn root(env: &Env) -> PathBuf {
    env.sys.join("firmware/qemu_fw_cfg")
}

/// The user-data's file.
pub fn path(env: &Env) -> PathBuf {
    root(env).join("by_name").join(FW_CFG_NAME).join("raw")
}

/// Looks for user-data in fw_cfg; loads the driver on a QEMU machine that
/// lacks it, and skips other machines without waiting.
pub fn find(env: &Env, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    if !root(env).exists() {
        if !Dmi::read(&env.sys).is_qemu() {
            tried.push("fw_cfg: not a QEMU machine (DMI)".to_string());
            return Ok(None);
        }
        let Some(modules) = &env.modules else {
            tried.push(format!(
                "fw_cfg: absent (no {MODULE} driver, no modules directory)"
            ));
            return Ok(None);
        };
        if let Err(e) = super::kmod::load(modules, MODULE) {
            tried.push(format!("fw_cfg: absent (loading {MODULE}: {e})"));
            return Ok(None);
        }
        // The driver probes the device as it loads; allow a moment for sysfs.
        let start = Instant::now();
        while !root(env).exists() && start.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let file = path(env);
    match std::fs::read(&file) {
        Ok(user_data) => {
            tried.push("fw_cfg: user-data".to_string());
            Ok(Some(Found {
                source: format!("QEMU fw_cfg {FW_CFG_NAME}"),
                file_name: "user-data".to_string(),
                user_data,
                metadata: crate::Metadata::default(),
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tried.push("fw_cfg: absent".to_string());
            Ok(None)
        }
        Err(err) => Err(Error::Read { path: file, err }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::volume::tests::env;

    #[test]
    fn reads_the_entry_or_says_why_not() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let mut tried = Vec::new();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert_eq!(tried, ["fw_cfg: not a QEMU machine (DMI)"]);

        let dmi = env.sys.join("class/dmi/id");
        std::fs::create_dir_all(&dmi).expect("dmi");
        std::fs::write(dmi.join("sys_vendor"), "QEMU\n").expect("vendor");
        tried.clear();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert!(tried[0].contains("no modules directory"), "{tried:?}");

        std::fs::create_dir_all(root(&env).join("by_name/etc")).expect("fw_cfg");
        tried.clear();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert_eq!(tried, ["fw_cfg: absent"]);

        let file = path(&env);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
        std::fs::write(&file, b"#cloud-config\n").expect("raw");
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert_eq!(found.user_data, b"#cloud-config\n");
        assert_eq!(found.source, "QEMU fw_cfg opt/org.tandem/user-data");
    }
}
