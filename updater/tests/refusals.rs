//! Whatever the repository serves that the node must not trust is refused
//! by the check, with the policy's reason, and nothing is written: not the
//! disk (slot data, table, ESP), not the updater's state.

mod common;

use common::{IMAGE, NodeSpec, Repo, Server, blocks, now, slot_image};
use repository::keys::PrivateKey;
use repository::policy::Refusal;
use repository::repo::Envelope;
use updater::engine::{CheckOutcome, Engine};
use updater::error::Error;
use updater::http::Http;

/// Runs a check against what `setup` published and returns its error,
/// checking that nothing was written.
fn refused(setup: impl FnOnce(&Repo, &common::Published)) -> Error {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = Repo::new(&dir.path().join("repo"));
    let server = Server::start(&repo.dir);
    let v1 = slot_image(blocks(1, 300));
    let node = common::node(
        dir.path(),
        NodeSpec {
            running: &v1,
            version: "1.0.0",
            server: Some(server.url.clone()),
            oem_toml: None,
            admin_toml: None,
        },
    );
    let p = repo.publish("1.1.0", &slot_image(blocks(2, 300)));
    setup(&repo, &p);
    let before = node.disk_sha();
    let mut engine = Engine::new(node.paths.clone());
    let err = engine
        .check(&mut Http::new(
            &server.url,
            &updater::transport::Transport::direct(),
        ))
        .expect_err("refused");
    assert_eq!(node.disk_sha(), before, "the disk is untouched");
    assert!(!node.paths.state_dir.exists(), "no state written");
    err
}

fn refusal(e: Error) -> Refusal {
    match e {
        Error::Refused(r) => r,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn a_pointer_altered_after_signing_is_refused() {
    let r = refusal(refused(|repo, p| {
        let bytes = Repo::signed(&repo.pointer("stable", p, now() + 3600), &repo.key);
        let mut env: Envelope = serde_json::from_slice(&bytes).expect("json");
        env.signed = env.signed.replace("\"issued\":", "\"issued\": ");
        repo.write_pointer("stable", &serde_json::to_vec(&env).expect("json"));
    }));
    assert!(matches!(r, Refusal::BadSignature { .. }), "{r}");
    assert!(r.to_string().contains("altered after signing"));
}

#[test]
fn a_pointer_signed_by_an_unknown_key_is_refused() {
    let e = refused(|repo, p| {
        let stranger = PrivateKey::from_seed([42; 32], "stranger");
        repo.write_pointer(
            "stable",
            &Repo::signed(&repo.pointer("stable", p, now() + 3600), &stranger),
        );
    });
    let msg = e.to_string();
    assert!(matches!(refusal(e), Refusal::UnknownKey { .. }));
    assert!(
        msg.contains("signed by no trusted key") && msg.contains("nothing was written"),
        "{msg}"
    );
}

#[test]
fn an_expired_pointer_is_refused() {
    let r = refusal(refused(|repo, p| {
        repo.write_pointer(
            "stable",
            &Repo::signed(&repo.pointer("stable", p, now() - 1), &repo.key),
        );
    }));
    assert!(matches!(r, Refusal::Expired { .. }), "{r}");
}

#[test]
fn a_downgrade_is_refused_unless_allowed() {
    let r = refusal(refused(|repo, _| {
        let old = repo.publish("0.9.0", &slot_image(blocks(3, 300)));
        repo.point("stable", &old);
    }));
    assert!(matches!(r, Refusal::Downgrade { .. }), "{r}");
    assert!(r.to_string().contains("allow-downgrade = true"));
}

#[test]
fn a_manifest_other_than_the_signed_one_is_refused() {
    let r = refusal(refused(|repo, p| {
        repo.point("stable", p);
        let path = repo.dir.join(p.manifest_ref().path);
        let mut text = std::fs::read_to_string(&path).expect("manifest");
        text = text.replace("x86_64", "x86-64");
        std::fs::write(path, text).expect("write");
    }));
    assert!(matches!(r, Refusal::ManifestMismatch { .. }), "{r}");
}

#[test]
fn a_garbage_manifest_is_refused_even_when_signed() {
    let r = refusal(refused(|repo, p| {
        let garbage = b"{\"format\": 1, \"usr\": []}".to_vec();
        std::fs::write(repo.dir.join(p.manifest_ref().path), &garbage).expect("write");
        let mut ptr = repo.pointer("stable", p, now() + 3600);
        ptr.manifest.size = garbage.len() as u64;
        ptr.manifest.sha256 = common::sha(&garbage);
        repo.write_pointer("stable", &Repo::signed(&ptr, &repo.key));
    }));
    assert!(
        matches!(
            r,
            Refusal::Malformed {
                what: "manifest",
                ..
            }
        ),
        "{r}"
    );
}

#[test]
fn a_garbage_pointer_is_refused() {
    let r = refusal(refused(|repo, _| {
        repo.write_pointer("stable", b"<html>not found</html>")
    }));
    assert!(matches!(r, Refusal::Malformed { .. }), "{r}");
}

#[test]
fn a_missing_channel_is_an_http_error_naming_the_url() {
    let e = refused(|_, _| {});
    assert!(
        matches!(&e, Error::Http { url, .. } if url.ends_with(&format!("{IMAGE}/channels/stable.json"))),
        "{e}"
    );
    assert!(e.to_string().contains("404"), "{e}");
}

#[test]
fn the_same_version_is_up_to_date() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = Repo::new(&dir.path().join("repo"));
    let server = Server::start(&repo.dir);
    let v1 = slot_image(blocks(1, 300));
    let node = common::node(
        dir.path(),
        NodeSpec {
            running: &v1,
            version: "1.0.0",
            server: Some(server.url.clone()),
            oem_toml: None,
            admin_toml: None,
        },
    );
    let p = repo.publish("1.0.0", &v1);
    repo.point("stable", &p);
    let mut engine = Engine::new(node.paths.clone());
    let out = engine
        .check(&mut Http::new(
            &server.url,
            &updater::transport::Transport::direct(),
        ))
        .expect("check");
    assert!(matches!(out, CheckOutcome::UpToDate { .. }), "{out:?}");
    assert_eq!(server.requests().len(), 1, "only the pointer is fetched");
}
