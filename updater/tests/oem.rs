//! The OEM layer reader that the update engine (`update.toml`) and the
//! agent (`agent.toml`) share, on a file-backed boot disk.

mod common;

use common::{NodeSpec, blocks, slot_image};
use updater::config::{self, Source};

#[test]
fn the_oem_layer_names_its_partition_and_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = slot_image(blocks(1, 8));
    let toml = "server = \"http://10.0.2.2:8080\"\n";
    let node = common::node(
        dir.path(),
        NodeSpec {
            running: &running,
            version: "1.0.0",
            server: None,
            oem_toml: Some(toml.into()),
            admin_toml: None,
        },
    );
    let expected = Source {
        origin: format!(
            "{} partition 6 (OEM) (OEM partition): update.toml",
            node.disk.display()
        ),
        text: toml.into(),
    };
    let layer = config::read_oem_layer(&node.disk, "update.toml").expect("readable");
    assert_eq!(layer, Some(expected.clone()));
    let engine = config::read_oem_config(&node.disk).expect("readable");
    assert_eq!(engine, Some(expected));
    // No such file on the partition: no layer, no error.
    assert!(
        config::read_oem_layer(&node.disk, "agent.toml")
            .expect("readable")
            .is_none()
    );
    // No disk: an error (the caller says which layer).
    assert!(config::read_oem_layer(&dir.path().join("nothing.img"), "agent.toml").is_err());
}
