//! `tandem release status`: what a repository serves and what is wrong with it.

#[allow(unused_imports)]
use super::*;

/// What a repository serves.
#[derive(Clone, Debug, Serialize)]
pub struct RepoStatus {
    /// Repository root.
    pub repo: PathBuf,
    /// When the status was taken, Unix seconds.
    pub now: u64,
    /// Ids of the keys signatures were checked against.
    pub trusted_keys: Vec<String>,
    /// Images, by name.
    pub images: Vec<ImageStatus>,
    /// Number of problems found.
    pub problems: usize,
}

/// One image of a repository.
#[derive(Clone, Debug, Serialize)]
pub struct ImageStatus {
    /// Name.
    pub image: String,
    /// Published versions, in order.
    pub versions: Vec<String>,
    /// Channels, by name.
    pub channels: Vec<ChannelStatus>,
}

/// One channel of an image.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelStatus {
    /// Name.
    pub channel: String,
    /// Pointer path, relative to the repository root.
    pub path: String,
    /// The version served (if the pointer could be read).
    pub version: Option<String>,
    /// Rollout window (Unix seconds), when readable.
    pub rollout_start: Option<u64>,
    /// End of the rollout window.
    pub rollout_end: Option<u64>,
    /// Share of nodes eligible now, 0–1.
    pub rollout_eligible: Option<f64>,
    /// When the pointer was signed.
    pub issued: Option<u64>,
    /// When nodes start refusing it.
    pub expires: Option<u64>,
    /// Whether it has expired.
    pub expired: bool,
    /// Key ids of its signatures.
    pub signed_by: Vec<String>,
    /// Whether a trusted key's signature verifies; `None` without trusted keys.
    pub verified: Option<bool>,
    /// Whether the manifest is present, matches the pointer and is consistent,
    /// and its files are present with the right sizes.
    pub manifest_ok: bool,
    /// Problems (each makes nodes refuse the channel or fail the update).
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems yet.
    pub notes: Vec<String>,
}

/// Looks at every image and channel of a repository. Signatures are
/// checked against `trusted` (when given); files are checked by size (a
/// full hash check is what `promote` does).
pub fn status(repo_dir: &Path, trusted: &[PublicKey], now: u64) -> Result<RepoStatus> {
    let mut images = Vec::new();
    for image in list_images(repo_dir)? {
        let channels = list_channels(repo_dir, &image)
            .into_iter()
            .map(|c| channel_status(repo_dir, &image, &c, trusted, now))
            .collect();
        images.push(ImageStatus {
            versions: list_versions(repo_dir, &image)
                .iter()
                .map(Version::to_string)
                .collect(),
            image,
            channels,
        });
    }
    let problems = images
        .iter()
        .flat_map(|i| &i.channels)
        .map(|c| c.problems.len())
        .sum();
    Ok(RepoStatus {
        repo: repo_dir.to_path_buf(),
        now,
        trusted_keys: trusted.iter().map(PublicKey::id).collect(),
        images,
        problems,
    })
}

pub(super) fn channel_status(
    repo_dir: &Path,
    image: &str,
    channel: &str,
    trusted: &[PublicKey],
    now: u64,
) -> ChannelStatus {
    let rel = repo::pointer_path(image, channel);
    let mut s = ChannelStatus {
        channel: channel.to_string(),
        path: rel.clone(),
        version: None,
        rollout_start: None,
        rollout_end: None,
        rollout_eligible: None,
        issued: None,
        expires: None,
        expired: false,
        signed_by: Vec::new(),
        verified: None,
        manifest_ok: false,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let (env, p) = match read_pointer(&repo_dir.join(&rel)) {
        Ok(x) => x,
        Err(e) => {
            s.problems.push(e.to_string());
            return s;
        }
    };
    s.version = Some(p.version.to_string());
    let end = p.rollout.start.saturating_add(p.rollout.duration_secs);
    s.rollout_start = Some(p.rollout.start);
    s.rollout_end = Some(end);
    s.rollout_eligible = Some(if now < p.rollout.start {
        0.0
    } else if now >= end {
        1.0
    } else {
        (now - p.rollout.start) as f64 / p.rollout.duration_secs as f64
    });
    s.issued = Some(p.issued);
    s.expires = Some(p.expires);
    s.signed_by = env.signatures.iter().map(|g| g.key_id.clone()).collect();
    if p.image != image || p.channel != channel {
        s.problems.push(format!(
            "the pointer is for {}/{}: nodes of {image}/{channel} refuse it",
            p.image, p.channel
        ));
    }
    if p.expires <= now {
        s.expired = true;
        s.problems.push(format!(
            "EXPIRED at {}: nodes refuse it; re-sign with `tandem release promote --from {channel} --to {channel}`",
            clock::utc(p.expires)
        ));
    } else if p.expires - now < 3 * 86_400 {
        s.notes.push(format!(
            "expires in {}: re-sign it soon (`tandem release promote --from {channel} --to {channel}`)",
            clock::approx_duration(p.expires - now)
        ));
    }
    if !trusted.is_empty() {
        match policy::verify_envelope(&env, trusted) {
            Ok(()) => s.verified = Some(true),
            Err(r) => {
                s.verified = Some(false);
                s.problems.push(r.to_string());
            }
        }
    }
    match read_manifest(repo_dir, &p.manifest) {
        Ok(m) => {
            let mut ok = true;
            if m.image != image || m.version != p.version {
                ok = false;
                s.problems.push(format!(
                    "the manifest is for {} {}, the pointer says {image} {}",
                    m.image, m.version, p.version
                ));
            }
            for f in m.files() {
                match std::fs::metadata(repo_dir.join(&f.path)) {
                    Ok(meta) if meta.len() == f.size => {}
                    Ok(meta) => {
                        ok = false;
                        s.problems.push(format!(
                            "{} is {} bytes, the manifest says {}",
                            f.path,
                            meta.len(),
                            f.size
                        ));
                    }
                    Err(e) => {
                        ok = false;
                        s.problems.push(format!("{} is missing ({e})", f.path));
                    }
                }
            }
            s.manifest_ok = ok;
        }
        Err(e) => s.problems.push(e.to_string()),
    }
    s
}

/// The status as text for people.
pub fn render_status(st: &RepoStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "repository {}", st.repo.display());
    if st.trusted_keys.is_empty() {
        let _ = writeln!(
            out,
            "signatures not checked (give --trust <key.pub> to check them)"
        );
    } else {
        let _ = writeln!(out, "trusted keys {}", st.trusted_keys.join(", "));
    }
    if st.images.is_empty() {
        let _ = writeln!(out, "no images published");
    }
    for img in &st.images {
        let _ = writeln!(
            out,
            "\n{}  versions: {}",
            img.image,
            if img.versions.is_empty() {
                "none".into()
            } else {
                img.versions.join(", ")
            }
        );
        if img.channels.is_empty() {
            let _ = writeln!(out, "  no channels");
        }
        for c in &img.channels {
            let _ = writeln!(
                out,
                "  {:<10} {}",
                c.channel,
                c.version.as_deref().unwrap_or("(unreadable)")
            );
            if let (Some(start), Some(end), Some(share)) =
                (c.rollout_start, c.rollout_end, c.rollout_eligible)
            {
                let state = if st.now < start {
                    format!("starts in {}", clock::approx_duration(start - st.now))
                } else if st.now >= end {
                    "complete".to_string()
                } else {
                    format!("{:.0} % of nodes eligible", share * 100.0)
                };
                let window = if start == end {
                    format!("at {}", clock::utc(start))
                } else {
                    format!("{} to {}", clock::utc(start), clock::utc(end))
                };
                let _ = writeln!(out, "    rollout   {window} ({state})");
            }
            if let (Some(issued), Some(expires)) = (c.issued, c.expires) {
                let left = if c.expired {
                    "EXPIRED".to_string()
                } else {
                    format!("in {}", clock::approx_duration(expires - st.now))
                };
                let _ = writeln!(
                    out,
                    "    signed    {} by {}; expires {} ({left})",
                    clock::utc(issued),
                    if c.signed_by.is_empty() {
                        "nobody".into()
                    } else {
                        c.signed_by.join(", ")
                    },
                    clock::utc(expires)
                );
            }
            let sig = match c.verified {
                Some(true) => "verified",
                Some(false) => "NOT VERIFIED",
                None => "not checked",
            };
            let man = if c.manifest_ok { "ok" } else { "PROBLEM" };
            let _ = writeln!(
                out,
                "    checks    signature {sig}, manifest and files {man}"
            );
            for p in &c.problems {
                let _ = writeln!(out, "    problem:  {p}");
            }
            for n in &c.notes {
                let _ = writeln!(out, "    note:     {n}");
            }
        }
    }
    if st.problems > 0 {
        let _ = writeln!(out, "\n{} problem(s)", st.problems);
    }
    out
}
