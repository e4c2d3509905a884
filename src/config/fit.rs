//! Whether a configuration fits a runbook: someone holds each role that must act, each secret the
//! runbook names is declared and has a value, and each channel can deliver. `start` warns with
//! what it finds (and `start --strict` refuses); every message names what is missing and the fix.
//!
//! What can be known without calling anyone is checked: a webhook, batch or Slack channel whose URL is an
//! address the outbound policy refuses is found here, one whose host name resolves to such an
//! address only when it is called.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use reqwest::Url;

use super::Config;
use crate::runbook::Runbook;
use crate::runbook::model::{ChannelKind, SpoolFormat, Text};
use crate::runbook::needs::RoleNeed;

/// One way the configuration does not fit the runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// Fewer people than needed hold one of `roles`; `holders` are those who can act.
    Role {
        roles: Vec<String>,
        count: u32,
        four_eyes: bool,
        /// Who starts the incident, when a four-eyes approval cannot be theirs.
        excluded: Option<String>,
        holders: Vec<String>,
        needed_by: Vec<String>,
    },
    /// The runbook names a secret the configuration does not declare.
    SecretUndeclared { name: String, used_by: Vec<String> },
    /// The secret is declared, but its source gives no value (`absent` says where it was looked
    /// for, and the fix).
    SecretEmpty { name: String, absent: String, used_by: Vec<String> },
    /// A channel cannot deliver, for `reason`.
    Channel { channel: String, reason: String },
}

/// Everything about `config` that keeps `runbook` from running as written, in the runbook's order:
/// roles, then secrets, then channels. `starter`, when known, is who starts the incident: a
/// four-eyes approval cannot be theirs. When it is not known, a four-eyes gate needs one person
/// more than its count, since any of them might start the incident.
pub fn misfits(config: &Config, runbook: &Runbook, starter: Option<&str>) -> Vec<Misfit> {
    let mut found = role_misfits(config, &runbook.role_needs(), starter);
    found.extend(secret_misfits(config, runbook));
    found.extend(runbook.channels().iter().filter_map(|channel| {
        channel_problem(config, &channel.kind).map(|reason| Misfit::Channel { channel: channel.id.clone(), reason })
    }));
    found
}

fn role_misfits(config: &Config, needs: &[RoleNeed], starter: Option<&str>) -> Vec<Misfit> {
    let mut found: Vec<Misfit> = Vec::new();
    for need in needs {
        let excluded = if need.four_eyes { starter.map(str::to_string) } else { None };
        let count = if need.four_eyes && starter.is_none() { need.count + 1 } else { need.count };
        let holders: Vec<String> = config
            .directory
            .people
            .iter()
            .filter(|(name, roles)| {
                Some(name.as_str()) != excluded.as_deref() && need.roles.iter().any(|role| roles.contains(role))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if holders.len() >= count as usize {
            continue;
        }
        // The same shortfall for several gates and steps is one message naming them all.
        let same = found.iter_mut().find_map(|misfit| match misfit {
            Misfit::Role { roles, count: c, four_eyes, excluded: e, needed_by, .. }
                if *roles == need.roles && *c == count && *four_eyes == need.four_eyes && *e == excluded =>
            {
                Some(needed_by)
            }
            _ => None,
        });
        match same {
            Some(needed_by) => needed_by.push(need.needed_by.clone()),
            None => found.push(Misfit::Role {
                roles: need.roles.clone(),
                count,
                four_eyes: need.four_eyes,
                excluded,
                holders,
                needed_by: vec![need.needed_by.clone()],
            }),
        }
    }
    found
}

fn secret_misfits(config: &Config, runbook: &Runbook) -> Vec<Misfit> {
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for used in runbook.secret_uses() {
        let places = uses.entry(used.name).or_default();
        if !places.contains(&used.used_by) {
            places.push(used.used_by);
        }
    }
    uses.into_iter()
        .filter_map(|(name, used_by)| match config.secrets.source(&name) {
            None => Some(Misfit::SecretUndeclared { name, used_by }),
            Some(source) if config.secrets.get(&name).is_none() => {
                Some(Misfit::SecretEmpty { name, absent: source.absent(), used_by })
            }
            Some(_) => None,
        })
        .collect()
}

/// Why the channel cannot deliver, when that can be told without sending anything. A secret
/// without a value is reported as such, not here.
fn channel_problem(config: &Config, kind: &ChannelKind) -> Option<String> {
    match kind {
        ChannelKind::Stdout => None,
        ChannelKind::File { path } | ChannelKind::Spool { path, format: SpoolFormat::Jsonl, .. } => {
            file_problem(Path::new(path))
        }
        ChannelKind::Spool { path, format: SpoolFormat::Eml, .. } => {
            let dir = Path::new(path);
            if dir.is_file() {
                Some(format!("`{path}` is a file; an `eml` spool writes into a directory, so name one in `path`"))
            } else {
                // A file inside is what has to be creatable.
                file_problem(&dir.join("message.eml"))
            }
        }
        ChannelKind::Webhook { url: Text::Literal(url), .. } | ChannelKind::Batch { url: Text::Literal(url), .. } => {
            Url::parse(url)
                .ok()
                .and_then(|url| config.outbound.check_url(&url).err())
                .map(|refusal| refusal.to_string())
        }
        ChannelKind::Webhook { url: Text::Secret { secret, .. }, .. }
        | ChannelKind::Batch { url: Text::Secret { secret, .. }, .. }
        | ChannelKind::Slack { url_secret: secret } => {
            let value = config.secrets.get(secret)?;
            match Url::parse(&value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    config.outbound.check_url(&url).err().map(|refusal| refusal.to_string())
                }
                _ => Some(format!("secret `{secret}` is not an http or https URL; set it to the channel's URL")),
            }
        }
        ChannelKind::Email { relay_secret, .. } => {
            let value = config.secrets.get(relay_secret)?;
            match Url::parse(&value) {
                Ok(url) if matches!(url.scheme(), "smtp" | "smtps") => None,
                _ => Some(format!(
                    "secret `{relay_secret}` is not an `smtp://` or `smtps://` URL; set it to the mail relay's URL"
                )),
            }
        }
    }
}

/// Why a file channel cannot append to `path` (relative to the current directory, as `run` will
/// open it): its directory cannot be created, or it is itself a directory.
fn file_problem(path: &Path) -> Option<String> {
    if path.is_dir() {
        return Some(format!("`{}` is a directory; name a file in the runbook's `path`", path.display()));
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        match std::fs::metadata(dir) {
            Ok(metadata) if metadata.is_dir() && metadata.permissions().readonly() => {
                return Some(format!("the directory `{}` is read-only; make it writable", dir.display()));
            }
            Ok(metadata) if metadata.is_dir() => return None,
            Ok(_) => {
                return Some(format!(
                    "the directory for `{}` cannot be created: `{}` is a file; move it away",
                    path.display(),
                    dir.display()
                ));
            }
            Err(_) => ancestor = dir.parent(),
        }
    }
    None
}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`".
fn either(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// "a", "a and b", "a, b and 3 more".
fn places(places: &[String]) -> String {
    match places {
        [one] => one.clone(),
        [one, two] => format!("{one} and {two}"),
        [one, two, rest @ ..] => format!("{one}, {two} and {} more", rest.len()),
        [] => String::new(),
    }
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Role { roles, count, four_eyes, excluded, holders, needed_by } => {
                let roles_text = either(roles);
                let people = if *count == 1 { "1 person".to_string() } else { format!("{count} people") };
                write!(f, "{} {} {people} holding {roles_text}", places(needed_by), verb(needed_by))?;
                match excluded {
                    Some(starter) => write!(f, " other than `{starter}`, who starts the incident (four-eyes)")?,
                    None if *four_eyes => write!(f, " (four-eyes: whoever starts the incident cannot approve)")?,
                    None => {}
                }
                match holders.as_slice() {
                    [] => write!(f, ", and nobody in the configuration can")?,
                    held => write!(f, ", and only {} can", either(held).replace(" or ", " and "))?,
                }
                write!(f, "; give {roles_text} to ")?;
                f.write_str(if holders.is_empty() { "someone" } else { "more people" })?;
                write!(f, " under `people:` in the configuration")
            }
            Misfit::SecretUndeclared { name, used_by } => write!(
                f,
                "secret `{name}` ({}) is not configured; declare it under `secrets:`, for example \
                 `{name}: {{ env: {name} }}`",
                places(used_by)
            ),
            Misfit::SecretEmpty { name, absent, used_by } => {
                write!(f, "secret `{name}` ({}) has no value: {absent}", places(used_by))
            }
            Misfit::Channel { channel, reason } => write!(f, "channel `{channel}` cannot deliver: {reason}"),
        }
    }
}

fn verb(needed_by: &[String]) -> &'static str {
    if needed_by.len() == 1 { "needs" } else { "need" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::render::Catalog;

    const RUNBOOK: &str = r#"
apiVersion: phasegate/v1
kind: Runbook
id: fit
title: Fit
roles: { ciso: {}, soc: {}, ops: {} }
channels:
  slack: { slack: { url_secret: SLACK_URL } }
  hook: { webhook: { url: "http://10.1.2.3/hook" } }
  mail: { email: { to: [a@example.com], relay_secret: RELAY } }
  notes: { file: { path: NOTES_PATH } }
audiences:
  staff: { template: internal-update, channels: [slack, hook, mail, notes] }
phases:
  - id: contain
    entry:
      - approval: { roles: [ciso], four_eyes: true }
    steps:
      - id: look
        manual: { instructions: Look., assignee: soc }
      - id: look-again
        manual: { instructions: Look again., assignee: soc }
      - id: call
        http:
          url: https://edr.example/isolate
          headers: { X-Key: { secret: EDR_KEY } }
"#;

    fn misfits_of(config: &str, notes: &Path, starter: Option<&str>) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, config).unwrap();
        let config = Config::load(Some(&path), &Overrides::default()).unwrap();
        let text = RUNBOOK.replace("NOTES_PATH", &notes.display().to_string());
        let runbook = crate::runbook::load(text.as_bytes(), &Catalog::built_in()).unwrap_or_else(|d| panic!("{d:#?}"));
        misfits(&config, &runbook, starter).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_misfit_names_what_is_missing_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), "a file where a directory should be").unwrap();
        let config = "people:\n  dana: { roles: [ciso] }\nsecrets:\n  SLACK_URL: { env: PHASEGATE_TEST_UNSET_VARIABLE }\n  \
                      RELAY: { file: relay-url }\n";
        let found = misfits_of(config, &dir.path().join("blocker/notes.md"), Some("dana"));
        let expected = [
            "approval gate `approval` of phase `contain` needs 1 person holding `ciso` other than `dana`, who starts \
             the incident (four-eyes), and nobody in the configuration can; give `ciso` to someone under `people:`",
            "manual step `contain/look` and manual step `contain/look-again` need 1 person holding `soc`, and nobody \
             in the configuration can; give `soc` to someone under `people:`",
            "secret `EDR_KEY` (step `contain/call`) is not configured; declare it under `secrets:`, for example \
             `EDR_KEY: { env: EDR_KEY }`",
            "secret `RELAY` (channel `mail`) has no value: file `",
            "secret `SLACK_URL` (channel `slack`) has no value: environment variable `PHASEGATE_TEST_UNSET_VARIABLE` \
             is unset or empty; set it",
            "channel `hook` cannot deliver: `10.1.2.3` is a private address",
            "channel `notes` cannot deliver: the directory for `",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found}\nexpected: {expected}");
        }
        assert!(
            found[3].ends_with("relay-url` is missing or empty; write the value to it"),
            "resolved beside the configuration: {}",
            found[3]
        );
        assert!(found[6].ends_with("blocker` is a file; move it away"), "{}", found[6]);
    }

    #[test]
    fn a_configuration_that_fits_has_nothing_to_say() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay-url"), "smtp://127.0.0.1:2525\n").unwrap();
        let config = format!(
            "people:\n  dana: {{ roles: [ciso, soc] }}\n  sam: {{ roles: [ciso] }}\nsecrets:\n  \
             SLACK_URL: {{ file: {0}/relay-url }}\n  RELAY: {{ file: {0}/relay-url }}\n  EDR_KEY: {{ file: {0}/relay-url }}\n\
             outbound:\n  allow: [10.0.0.0/8]\n",
            dir.path().display()
        );
        let found = misfits_of(&config, &dir.path().join("status/notes.md"), Some("dana"));
        // The relay's URL as Slack's is the one problem left: not an http URL.
        assert_eq!(
            found,
            [
                "channel `slack` cannot deliver: secret `SLACK_URL` is not an http or https URL; set it to the channel's URL"
            ]
        );
        // Without knowing who starts it, a four-eyes gate needs one person more than its count.
        let unknown = misfits_of(&config.replace("  sam: { roles: [ciso] }\n", ""), &dir.path().join("notes.md"), None);
        assert!(unknown[0].starts_with("approval gate `approval` of phase `contain` needs 2 people holding `ciso` (four-eyes: whoever starts the incident cannot approve), and only `dana` can"), "{unknown:#?}");
    }
}
