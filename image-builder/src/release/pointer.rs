//! Signed channel pointers: writing and reading them.

#[allow(unused_imports)]
use super::*;

/// Signs a pointer for `channel` and replaces the channel's file.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_pointer(
    repo_dir: &Path,
    image: &str,
    channel: &str,
    version: &Version,
    manifest: FileRef,
    key: &PrivateKey,
    schedule: &Schedule,
    now: u64,
) -> Result<ChannelUpdate> {
    let rel = repo::pointer_path(image, channel);
    let path = repo_dir.join(&rel);
    let previous = read_pointer(&path).ok().map(|(_, p)| p.version);
    let start = schedule.start.resolve(now);
    let pointer = ChannelPointer {
        format: FORMAT,
        image: image.to_string(),
        channel: channel.to_string(),
        version: version.clone(),
        manifest,
        rollout: Rollout {
            start,
            duration_secs: schedule.duration_secs,
        },
        issued: now,
        expires: now.saturating_add(schedule.expires_in_secs),
    };
    if schedule.expires_in_secs == 0 {
        return Err(Error::Release {
            message: "--expires-in must be more than 0: nodes refuse an expired pointer".into(),
        });
    }
    let envelope = sign(&pointer, key, "channel pointer")?;
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(|e| Error::Release {
        message: format!("cannot serialise the channel pointer: {e}"),
    })?;
    bytes.push(b'\n');
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).io("create channel directory", &dir)?;
    let tmp = dir.join(format!(".{channel}.json.tmp-{}", std::process::id()));
    write_synced(&tmp, &bytes)?;
    if let Err(cause) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Io {
            action: "replace channel pointer",
            path,
            cause,
        });
    }
    sync_dir(&dir)?;

    let mut notes = Vec::new();
    if let Some(prev) = &previous
        && prev > version
    {
        notes.push(format!(
            "the channel served {prev} before: nodes already on it do not go back to {version} unless their update.toml allows downgrades"
        ));
    }
    let end = start.saturating_add(schedule.duration_secs);
    if pointer.expires <= end {
        notes.push(format!(
            "the pointer expires ({}) before the rollout ends ({}): nodes late in the rollout will not update unless it is re-signed in time",
            clock::utc(pointer.expires),
            clock::utc(end)
        ));
    }
    Ok(ChannelUpdate {
        path: rel,
        pointer,
        previous,
        key_id: key.public().id(),
        notes,
    })
}

/// Reads and parses (without verifying) a channel pointer file.
pub fn read_pointer(path: &Path) -> Result<(Envelope, ChannelPointer)> {
    let bytes = std::fs::read(path).io("read channel pointer", path)?;
    let bad = |e: String| Error::Repository {
        path: path.to_path_buf(),
        message: format!("is not a channel pointer ({e})"),
    };
    let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let p: ChannelPointer = serde_json::from_str(&env.signed).map_err(|e| bad(e.to_string()))?;
    Ok((env, p))
}

/// `value` as JSON in an envelope signed by `key`, checked the way nodes
/// check it. `what` names it in errors.
pub fn sign<T: Serialize>(value: &T, key: &PrivateKey, what: &str) -> Result<Envelope> {
    let signed = serde_json::to_string(value).map_err(|e| Error::Release {
        message: format!("cannot serialise the {what}: {e}"),
    })?;
    let envelope = Envelope {
        signatures: vec![Signature {
            key_id: key.public().id(),
            signature: key.sign(signed.as_bytes()),
        }],
        signed,
    };
    policy::verify_envelope(&envelope, &[key.public()]).map_err(|r| Error::Release {
        message: format!("internal error: the new signature of the {what} does not verify: {r}"),
    })?;
    Ok(envelope)
}
