//! `/usr/lib/os-release`: what an image says about itself. Written by the
//! image builder, read by the system init (the version on the console), the
//! update engine (which image and version runs, which channel it was built
//! for) and `tandemctl`.

use alloc::format;
use alloc::string::{String, ToString};

/// Where the image keeps it.
pub const PATH: &str = "/usr/lib/os-release";
/// The image name: which image an update must be for.
pub const IMAGE_ID: &str = "IMAGE_ID";
/// The release version.
pub const VERSION_ID: &str = "VERSION_ID";
/// The channel the image was built for.
pub const CHANNEL: &str = "TANDEM_CHANNEL";
/// The architecture.
pub const ARCH: &str = "TANDEM_ARCH";

/// The fields Tandem writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsRelease<'a> {
    /// Image name.
    pub image: &'a str,
    /// Release version.
    pub version: &'a str,
    /// Channel it was built for.
    pub channel: &'a str,
    /// Architecture (`x86_64`).
    pub arch: &'a str,
}

impl OsRelease<'_> {
    /// The file's text.
    pub fn render(&self) -> String {
        let OsRelease {
            image,
            version,
            channel,
            arch,
        } = self;
        format!(
            "NAME=\"Tandem\"\nID=tandem\nVERSION=\"{version}\"\n{VERSION_ID}={version}\nPRETTY_NAME=\"Tandem {image} {version} ({channel})\"\n{IMAGE_ID}={image}\nIMAGE_VERSION={version}\n{CHANNEL}={channel}\n{ARCH}={arch}\nHOME_URL=\"https://github.com/tandem-os/tandem\"\n"
        )
    }
}

/// The value of `key` in an os-release file (quotes removed).
pub fn value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_and_the_reader_agree() {
        let text = OsRelease {
            image: "tandem-minimal",
            version: "1.0.0",
            channel: "stable",
            arch: "x86_64",
        }
        .render();
        assert_eq!(value(&text, IMAGE_ID).as_deref(), Some("tandem-minimal"));
        assert_eq!(value(&text, VERSION_ID).as_deref(), Some("1.0.0"));
        assert_eq!(value(&text, CHANNEL).as_deref(), Some("stable"));
        assert_eq!(value(&text, ARCH).as_deref(), Some("x86_64"));
        assert_eq!(
            value(&text, "PRETTY_NAME").as_deref(),
            Some("Tandem tandem-minimal 1.0.0 (stable)")
        );
        assert_eq!(value(&text, "VERSION_CODENAME"), None);
        assert_eq!(value("A='quoted'\n", "A").as_deref(), Some("quoted"));
    }
}
