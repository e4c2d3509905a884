//! The `outbound` section: where HTTP steps, checks and notify channels may go beyond public
//! addresses, and whether redirects are followed. What the entries mean is
//! `actions::outbound`'s to say; this reads them and names the entry that is wrong.
//!
//! ```yaml
//! outbound:
//!   allow: [10.20.0.0/16, idp.internal.example, "*.corp.example", 127.0.0.1]
//!   follow_redirects: false
//! ```

use serde::Deserialize;

use super::Error;
use crate::actions::outbound::{Allowed, Policy};

/// The section's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    /// Address ranges, addresses and host names allowed even though they are not public.
    #[serde(default)]
    allow: Vec<String>,
    /// Whether redirects are followed (each hop checked like the first request); off by default.
    #[serde(default)]
    follow_redirects: bool,
}

/// The policy the section describes, or an error naming the first entry that is not an address,
/// a range or a host name.
pub(super) fn policy(file: File) -> Result<Policy, Error> {
    let allowed = file
        .allow
        .iter()
        .map(|entry| entry.parse::<Allowed>().map_err(|reason| Error::Invalid(format!("`outbound.allow`: {reason}"))))
        .collect::<Result<Vec<Allowed>, Error>>()?;
    Ok(Policy::new(allowed).follow_redirects(file.follow_redirects))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<Policy, String> {
        let file: File = serde_yaml::from_str(yaml).map_err(|error| error.to_string())?;
        policy(file).map_err(|error| error.to_string())
    }

    #[test]
    fn entries_are_ranges_addresses_or_names() {
        let policy =
            read("allow: [10.20.0.0/16, 10.1.2.3/8, 127.0.0.1, '::1', IdP.Internal.Example., '*.corp.example']\n")
                .unwrap();
        let shown: Vec<String> = policy.allowed().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["10.20.0.0/16", "10.0.0.0/8", "127.0.0.1/32", "::1/128", "idp.internal.example", "*.corp.example"]
        );
        assert!(!policy.follows_redirects());
        assert!(read("follow_redirects: true\n").unwrap().follows_redirects());
        assert_eq!(read("{}\n").unwrap(), Policy::default());
    }

    #[test]
    fn refusals_name_the_entry() {
        let table = [
            ("allow: ['http://idp.example/']\n", "`outbound.allow`: `http://idp.example/` is neither an address"),
            ("allow: ['10.0.0.0/33']\n", "`10.0.0.0/33` is neither an address"),
            ("allow: ['idp.example:8443']\n", "`idp.example:8443` is neither an address"),
            ("allow: ['a..b']\n", "`a..b` is neither an address"),
            ("allow: ['0x7f.1']\n", "`0x7f.1` is the address `127.0.0.1` written unusually; write `127.0.0.1`"),
            ("allow: ['127.1']\n", "`127.1` is the address `127.0.0.1` written unusually"),
            ("allow: 10.0.0.0/8\n", "invalid type"),
            ("follow: true\n", "unknown field `follow`"),
        ];
        for (yaml, expected) in table {
            let error = read(yaml).unwrap_err();
            assert!(error.contains(expected), "{yaml:?}: {error}");
        }
    }
}
