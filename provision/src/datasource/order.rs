//! Which datasources to try, in which order: the default, or the list
//! `tandem.datasource=` gives on the kernel command line.

use super::error::Error;
use tandem_contract::provision::{CMDLINE_DATASOURCE, CMDLINE_URL};

/// One datasource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `tandem.config.url=` on the kernel command line.
    Url,
    /// QEMU's fw_cfg.
    FwCfg,
    /// A volume labelled `cidata`.
    NoCloud,
    /// An OpenStack config drive (a volume labelled `config-2`).
    ConfigDrive,
    /// The OEM partition of the boot disk.
    Oem,
    /// The EC2 instance metadata service.
    Ec2,
}

impl Source {
    /// The default order: the most explicit first (the command line names
    /// a URL), then what the machine's builder attached locally, then the
    /// network service that needs waiting for.
    pub const DEFAULT: [Source; 6] = [
        Source::Url,
        Source::FwCfg,
        Source::NoCloud,
        Source::ConfigDrive,
        Source::Oem,
        Source::Ec2,
    ];

    /// The name used in `tandem.datasource=`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Url => "url",
            Source::FwCfg => "fw_cfg",
            Source::NoCloud => "nocloud",
            Source::ConfigDrive => "config-2",
            Source::Oem => "oem",
            Source::Ec2 => "ec2",
        }
    }

    fn from_name(name: &str) -> Option<Source> {
        Source::DEFAULT.into_iter().find(|s| s.name() == name)
    }
}

/// The value of `key=` on the command line (the last one wins, as the
/// kernel does for its own parameters); `Some("")` for a bare `key`.
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|word| match word.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if word == key => Some(""),
            _ => None,
        })
}

/// The datasources to try, in order, and whether EC2 was named explicitly
/// (then it is tried without asking DMI whether this is EC2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// In order.
    pub sources: Vec<Source>,
    /// `tandem.datasource=` named `ec2`.
    pub ec2_named: bool,
}

/// The plan for `cmdline`. `none` alone tries nothing; a name that is not
/// a datasource is an error rather than ignored, so a typo does not make
/// the node boot without its config.
pub fn plan(cmdline: &str) -> Result<Plan, Error> {
    let Some(list) = cmdline_value(cmdline, CMDLINE_DATASOURCE) else {
        return Ok(Plan {
            sources: Source::DEFAULT.to_vec(),
            ec2_named: false,
        });
    };
    let mut sources = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            continue;
        }
        let source = Source::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
            Error::UnknownDatasource {
                name: name.to_string(),
                known: known_names(),
            }
        })?;
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    let ec2_named = sources.contains(&Source::Ec2);
    Ok(Plan { sources, ec2_named })
}

fn known_names() -> String {
    let mut names: Vec<&str> = Source::DEFAULT.iter().map(|s| s.name()).collect();
    names.push("none");
    names.join(", ")
}

/// Whether the command line names a URL (the `url` source has nothing to
/// do otherwise).
pub fn url_configured(cmdline: &str) -> bool {
    cmdline_value(cmdline, CMDLINE_URL).is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_order_without_the_key() {
        let p = plan("root=/dev/vda9 quiet").expect("plan");
        assert_eq!(p.sources, Source::DEFAULT);
        assert!(!p.ec2_named);
    }

    #[test]
    fn the_list_replaces_the_order() {
        let p = plan("quiet tandem.datasource=ec2,NoCloud,ec2 x").expect("plan");
        assert_eq!(p.sources, [Source::Ec2, Source::NoCloud]);
        assert!(p.ec2_named);
        let p = plan("tandem.datasource=config-2,oem,fw_cfg,url").expect("plan");
        assert_eq!(
            p.sources,
            [Source::ConfigDrive, Source::Oem, Source::FwCfg, Source::Url]
        );
    }

    #[test]
    fn none_and_empty_try_nothing() {
        for cmdline in [
            "tandem.datasource=none",
            "tandem.datasource=",
            "tandem.datasource",
        ] {
            assert_eq!(plan(cmdline).expect(cmdline).sources, []);
        }
    }

    #[test]
    fn the_last_occurrence_wins() {
        let p = plan("tandem.datasource=ec2 tandem.datasource=oem").expect("plan");
        assert_eq!(p.sources, [Source::Oem]);
    }

    #[test]
    fn unknown_names_are_an_error_listing_the_known() {
        let err = plan("tandem.datasource=nocloud,azure").expect_err("azure");
        let msg = err.to_string();
        assert!(msg.contains("\"azure\""), "{msg}");
        assert!(
            msg.contains("url, fw_cfg, nocloud, config-2, oem, ec2, none"),
            "{msg}"
        );
    }

    #[test]
    fn values_and_url() {
        let c = "a tandem.config.url=http://h/x?a=b tandem.config.sha256=ab";
        assert_eq!(
            cmdline_value(c, "tandem.config.url"),
            Some("http://h/x?a=b")
        );
        assert_eq!(cmdline_value(c, "tandem.config"), None);
        assert!(url_configured(c));
        assert!(!url_configured("tandem.config.url="));
    }
}
