//! Configuration in explicit layers: defaults, then the file, then environment variables, then
//! flags, then one `validate`. Unknown keys are errors. Secrets are named here and read from the
//! environment or from files; their values never appear in `Debug`, logs or messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audit::keys::{PublicKey, Signer};
use crate::engine::Directory;

pub mod fit;
mod outbound;
pub mod server;
pub mod witness;

/// The configuration file used when none is named and it exists.
pub const DEFAULT_FILE: &str = "phasegate.yaml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration `{path}`: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("configuration `{path}` is invalid: {error}")]
    Parse { path: PathBuf, error: serde_yaml::Error },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    database: Option<PathBuf>,
    #[serde(default)]
    runbooks: Option<PathBuf>,
    #[serde(default)]
    templates: Option<PathBuf>,
    #[serde(default)]
    commands: Option<bool>,
    #[serde(default)]
    people: BTreeMap<String, Person>,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    audit: AuditFile,
    #[serde(default)]
    outbound: outbound::File,
    #[serde(default)]
    server: server::File,
    #[serde(default)]
    campaigns: CampaignsFile,
}

/// `campaigns:`: where campaigns keep their rejects files, and whom they never write to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignsFile {
    /// Rejects files go under `DIR/INCIDENT/PHASE/STEP/`; `campaigns` beside this file when omitted.
    #[serde(default)]
    dir: Option<PathBuf>,
    /// A file of recipient ids or addresses (one a line, `#` comments) no campaign writes to:
    /// opt-outs from the suppression list.
    #[serde(default)]
    suppression: Option<PathBuf>,
    /// Where a campaign's test send may go (`phasegate campaign test`): addresses
    /// (`ciso@corp.example`) and whole domains written with their `@` (`@corp.example`). Empty:
    /// no test send anywhere.
    #[serde(default)]
    test_recipients: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    #[serde(default)]
    signing_key: Option<PathBuf>,
    #[serde(default)]
    public_key: Option<PathBuf>,
    #[serde(default, deserialize_with = "checkpoint_every")]
    checkpoint_every: Option<std::time::Duration>,
    #[serde(default)]
    witness: witness::File,
}

/// A duration such as `10m`, read with humantime, for the field `name` (which the error names:
/// the YAML reader gives only the section and the line).
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(
    name: &str,
    deserializer: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    use serde::Deserialize;
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|text| {
        humantime::parse_duration(&text).map_err(|error| {
            serde::de::Error::custom(format!("`{name}: {text}` is not a duration such as `10m`: {error}"))
        })
    })
    .transpose()
}

fn checkpoint_every<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    duration("checkpoint_every", deserializer)
}

/// Where the audit keys are and how often open incidents' heads are signed.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The Ed25519 private key (PKCS#8 PEM) that signs checkpoints. Never in the database.
    pub signing_key: Option<PathBuf>,
    /// The public key `audit verify` checks with; by default the signing key's.
    pub public_key: Option<PathBuf>,
    pub checkpoint_every: std::time::Duration,
    /// Where each signed checkpoint is also copied, outside the database.
    pub witness: witness::Witness,
}

/// How often an open incident's head is signed unless configured otherwise.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl Audit {
    /// The signing key, if one is configured.
    pub fn signer(&self) -> Result<Option<Signer>, Error> {
        let Some(path) = &self.signing_key else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => Error::Invalid(format!(
                "`audit.signing_key` names `{}`, which does not exist; `phasegate keygen {}` writes a new key pair there",
                path.display(),
                path.display()
            )),
            _ => Error::Read { path: path.clone(), error },
        })?;
        Signer::from_pem(&text).map(Some).map_err(|error| Error::Invalid(format!("`{}`: {error}", path.display())))
    }

    /// The key checkpoints are verified with: the configured public key, else the signing key's.
    pub fn public_key(&self) -> Result<Option<PublicKey>, Error> {
        match &self.public_key {
            Some(path) => read_public_key(path).map(Some),
            None => Ok(self.signer()?.map(|signer| signer.public().clone())),
        }
    }
}

/// Reads a public key (PEM) from a file, with an error naming the file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Read { path: path.to_path_buf(), error })?;
    PublicKey::from_pem(&text).map_err(|error| Error::Invalid(format!("`{}`: {error}", path.display())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    roles: Vec<String>,
}

/// Where a secret's value is read from: an environment variable or a file (exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
}

impl SecretSource {
    /// What is wrong when this source gives no value, and the fix, in words.
    pub fn absent(&self) -> String {
        match (&self.env, &self.file) {
            (Some(variable), _) => format!("environment variable `{variable}` is unset or empty; set it"),
            (None, Some(path)) => format!("file `{}` is missing or empty; write the value to it", path.display()),
            (None, None) => "it has no source; give it `env` or `file`".to_string(),
        }
    }
}

/// Everything phasegate needs to know that is not in a runbook.
#[derive(Debug)]
pub struct Config {
    pub database: PathBuf,
    pub runbooks: PathBuf,
    pub templates: Option<PathBuf>,
    /// Command steps run only when this is on.
    pub commands: bool,
    pub directory: Directory,
    pub secrets: Secrets,
    pub audit: Audit,
    /// Where HTTP steps, checks and notify channels may go beyond public addresses.
    pub outbound: crate::actions::outbound::Policy,
    pub server: server::Server,
    pub campaigns: crate::runtime::campaign::Settings,
}

/// Overrides from the command line and the environment, applied after the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub database: Option<PathBuf>,
    pub templates: Option<PathBuf>,
}

impl Config {
    /// Reads `file` (or `phasegate.yaml` when it exists), then applies the overrides.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Error> {
        let (path, parsed) = match file {
            Some(path) => (Some(path.to_path_buf()), read(path)?),
            None if Path::new(DEFAULT_FILE).is_file() => {
                (Some(PathBuf::from(DEFAULT_FILE)), read(Path::new(DEFAULT_FILE))?)
            }
            None => (None, File::default()),
        };
        let base = path.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        // Paths in a configuration file are relative to the file, not to where phasegate runs.
        let relative = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        // The database is a file, relative like the others, or a PostgreSQL URL, kept as it is.
        let database = |p: PathBuf| match p.to_str() {
            Some(url) if crate::store::postgres::is_url(url) => p,
            _ => relative(p),
        };
        let directory = Directory {
            people: parsed
                .people
                .into_iter()
                .map(|(name, person)| (name, person.roles.into_iter().collect()))
                .collect(),
        };
        let server = parsed.server.build(&directory, relative)?;
        let outbound = outbound::policy(parsed.outbound)?;
        let secrets = Secrets {
            sources: parsed
                .secrets
                .into_iter()
                .map(|(name, source)| (name, SecretSource { file: source.file.map(relative), ..source }))
                .collect(),
        };
        let witness = witness::build(parsed.audit.witness, relative, &outbound, &secrets)?;
        let config = Config {
            database: overrides
                .database
                .clone()
                .unwrap_or_else(|| parsed.database.map(database).unwrap_or_else(|| PathBuf::from("phasegate.db"))),
            runbooks: parsed.runbooks.map(relative).unwrap_or_else(|| PathBuf::from("runbooks")),
            templates: overrides.templates.clone().or_else(|| parsed.templates.map(relative)),
            commands: parsed.commands.unwrap_or(false),
            directory,
            secrets,
            outbound,
            audit: Audit {
                signing_key: parsed.audit.signing_key.map(relative),
                public_key: parsed.audit.public_key.map(relative),
                checkpoint_every: parsed.audit.checkpoint_every.unwrap_or(CHECKPOINT_EVERY),
                witness,
            },
            server,
            campaigns: crate::runtime::campaign::Settings {
                // Written or not, beside the file: a campaign's rejects files are the site's, and
                // `serve --config /srv/ir/phasegate.yaml` started elsewhere must not leave them
                // wherever it was started (the other defaults stay in the working directory).
                dir: relative(
                    parsed.campaigns.dir.unwrap_or_else(|| PathBuf::from(crate::runtime::campaign::DEFAULT_DIR)),
                ),
                suppression: parsed.campaigns.suppression.map(relative),
                lists_from: None,
                test_recipients: parsed.campaigns.test_recipients,
                ..crate::runtime::campaign::Settings::default()
            },
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        for entry in &self.campaigns.test_recipients {
            let checked = match entry.strip_prefix('@') {
                Some(domain) => crate::campaign::recipients::check_address(&format!("x@{domain}")),
                None => crate::campaign::recipients::check_address(entry),
            };
            if let Err(problem) = checked {
                return Err(Error::Invalid(format!(
                    "`campaigns.test_recipients`: `{entry}` is neither an address nor `@DOMAIN`: {problem}"
                )));
            }
        }
        for (name, roles) in &self.directory.people {
            if name.trim().is_empty() || name.starts_with(crate::engine::directory::TRIGGER_PREFIX) {
                return Err(Error::Invalid(format!("`{name}` cannot be a person's name")));
            }
            if roles.is_empty() {
                return Err(Error::Invalid(format!("person `{name}` holds no role")));
            }
        }
        if self.audit.checkpoint_every.is_zero() {
            return Err(Error::Invalid("`audit.checkpoint_every` must be longer than zero".into()));
        }
        for (name, source) in &self.secrets.sources {
            if source.env.is_some() == source.file.is_some() {
                return Err(Error::Invalid(format!("secret `{name}` needs exactly one of `env` and `file`")));
            }
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<File, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Read { path: path.to_path_buf(), error })?;
    if text.trim().is_empty() {
        return Ok(File::default());
    }
    serde_yaml::from_str(&text).map_err(|error| Error::Parse { path: path.to_path_buf(), error })
}

/// Secret names and where their values come from. Values are read when needed and never kept
/// where `Debug` could print them.
#[derive(Clone, Default)]
pub struct Secrets {
    sources: BTreeMap<String, SecretSource>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.sources.keys().map(|name| format!("{name}: <redacted>"))).finish()
    }
}

impl Secrets {
    /// Where the secret's value comes from, if it is declared.
    pub fn source(&self, name: &str) -> Option<&SecretSource> {
        self.sources.get(name)
    }

    /// The secret's value, or `None` when it is not configured or its source is empty or missing.
    pub fn get(&self, name: &str) -> Option<String> {
        let source = self.sources.get(name)?;
        let value = match (&source.env, &source.file) {
            (Some(variable), _) => std::env::var(variable).ok()?,
            (None, Some(path)) => std::fs::read_to_string(path).ok()?,
            (None, None) => return None,
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        (!value.is_empty()).then_some(value)
    }
}

impl crate::actions::SecretSource for Secrets {
    fn secret(&self, name: &str) -> Option<String> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &Overrides::default())
    }

    #[test]
    fn people_roles_and_relative_paths() {
        let config = load("database: state/pg.db\npeople:\n  dana: { roles: [ciso] }\ncommands: true\n").unwrap();
        assert!(config.database.ends_with("state/pg.db") && config.database.is_absolute());
        assert!(config.directory.knows("dana"));
        assert!(config.commands);
    }

    /// Relative paths in the file resolve beside it, whatever the current directory; defaults
    /// (a key left out) stay relative to the current directory, save `campaigns.dir`'s (below).
    #[test]
    fn relative_paths_resolve_against_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay-url"), "smtp://127.0.0.1:2525\n").unwrap();
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(
            &path,
            "runbooks: books\ntemplates: ../shared/templates\nsecrets:\n  RELAY: { file: relay-url }\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(config.runbooks, dir.path().join("books"));
        assert_eq!(config.templates, Some(dir.path().join("../shared/templates")));
        assert_eq!(config.secrets.get("RELAY").as_deref(), Some("smtp://127.0.0.1:2525"));
        assert_eq!(config.database, PathBuf::from("phasegate.db"));
    }

    /// Regression: with `campaigns.dir` left out, `serve --config /site/phasegate.yaml` started
    /// elsewhere wrote rejects files under `./campaigns` of wherever it was started (test runs
    /// left them in the checkout); the default is beside the file, as a written one is.
    #[test]
    fn the_campaigns_folder_is_beside_the_configuration_written_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, "people:\n  dana: { roles: [ciso] }\n").unwrap();
        let omitted = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(omitted.campaigns.dir, dir.path().join("campaigns"));
        std::fs::write(&path, "campaigns:\n  dir: out/campaigns\n").unwrap();
        let written = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(written.campaigns.dir, dir.path().join("out/campaigns"));
        std::fs::write(&path, "campaigns:\n  dir: /var/lib/phasegate/campaigns\n").unwrap();
        let absolute = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(absolute.campaigns.dir, PathBuf::from("/var/lib/phasegate/campaigns"));
    }

    #[test]
    fn a_witness_file_resolves_beside_the_configuration_and_a_webhook_keeps_its_settings() {
        let text = "secrets:\n  W: { env: W }\noutbound:\n  allow: [127.0.0.1]\naudit:\n  witness:\n    file: w/checkpoints.jsonl\n    webhook:\n      url: http://127.0.0.1:9/w\n      headers: { Authorization: { secret: W, prefix: \"Bearer \" } }\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, text).unwrap();
        let witness = Config::load(Some(&path), &Overrides::default()).unwrap().audit.witness;
        assert_eq!(witness.file, Some(dir.path().join("w/checkpoints.jsonl")));
        let webhook = witness.webhook.unwrap();
        assert_eq!((webhook.url.as_str(), webhook.timeout), ("http://127.0.0.1:9/w", witness::TIMEOUT));
        assert_eq!(webhook.headers[0].0, "Authorization");
        assert!(!load("").unwrap().audit.witness.is_configured());
    }

    #[test]
    fn the_lease_is_fifteen_seconds_unless_configured() {
        assert_eq!(load("").unwrap().server.lease, std::time::Duration::from_secs(12));
        assert_eq!(load("server:\n  lease: 30s\n").unwrap().server.lease, std::time::Duration::from_secs(30));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let table = [
            ("peeple: {}\n", "unknown field `peeple`"),
            ("people:\n  dana: { roles: [] }\n", "person `dana` holds no role"),
            ("secrets:\n  token: { vault: x }\n", "unknown field `vault`"),
            ("secrets:\n  token: { env: A, file: b }\n", "secret `token` needs exactly one of `env` and `file`"),
            ("audit:\n  signing_key: k.pem\n  every: 5m\n", "unknown field `every`"),
            ("audit:\n  checkpoint_every: soon\n", "`checkpoint_every: soon` is not a duration such as `10m`"),
            ("audit:\n  checkpoint_every: 0s\n", "`audit.checkpoint_every` must be longer than zero"),
            ("server:\n  lease: soon\n", "`lease: soon` is not a duration such as `10m`"),
            ("server:\n  lease: 0s\n", "`server.lease`: `0s` is not between 1s and 1h"),
            ("server:\n  lease: 2h\n", "`server.lease`: `2h` is not between 1s and 1h"),
            ("audit:\n  witness:\n    fil: w.jsonl\n", "unknown field `fil`"),
            ("audit:\n  witness:\n    webhook: { url: not a url }\n", "`url: not a url` is not a URL"),
            ("audit:\n  witness:\n    webhook: { url: \"ftp://w.example/\" }\n", "is not an http or https URL"),
            (
                "audit:\n  witness:\n    webhook: { url: \"http://127.0.0.1:9/\" }\n",
                "`audit.witness.webhook`: the outbound policy refuses it: `127.0.0.1`",
            ),
            (
                "audit:\n  witness:\n    webhook: { url: \"https://w.example/\", headers: { X-Key: { secret: K } } }\n",
                "header `X-Key` names secret `K`, which `secrets` does not declare",
            ),
            (
                "audit:\n  witness:\n    webhook: { url: \"https://w.example/\", timeout: 0s }\n",
                "must be longer than zero",
            ),
            ("server:\n  header_timeout: soon\n", "`header_timeout: soon` is not a duration such as `10m`"),
            ("server:\n  request_timeout: 0s\n", "`server.request_timeout` must be more than zero"),
        ];
        for (text, expected) in table {
            let error = load(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn secrets_are_read_from_their_source_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        let yaml = format!(
            "secrets:\n  edr-token: {{ file: {} }}\n  missing: {{ env: PHASEGATE_TEST_UNSET_VARIABLE }}\n",
            file.display()
        );
        let config = load(&yaml).unwrap();
        assert_eq!(config.secrets.get("edr-token").as_deref(), Some("s3cr3t-value"));
        assert_eq!(config.secrets.get("missing"), None);
        assert_eq!(config.secrets.get("unknown"), None);
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
