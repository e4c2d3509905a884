//! `phasegate token PERSON`: a new API token for a person of the configuration, and the line that
//! configures it, under a token name the configuration does not use yet.

use std::path::{Path, PathBuf};

use crate::config::{self, Config, Overrides};
use crate::server;
use crate::spelling::did_you_mean;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The person the token acts as (one of the configuration's people).
    person: String,
    /// A name for the token in the configuration and the logs (default: the person's name, or
    /// the first of `NAME-2`, `NAME-3` ... that the configuration does not use yet).
    #[arg(long)]
    name: Option<String>,
    /// The configuration file the token is for (default: `./phasegate.yaml` if it exists).
    #[arg(long, env = "PHASEGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Why no token was made: a message, and a hint where one helps.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    message: String,
    help: Option<String>,
}

/// Prints a new token once, and the configuration that accepts it (its hash only); refuses a
/// person the configuration does not know, and a token name it already uses.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let file = args.config.clone().or_else(|| {
        let default = Path::new(config::DEFAULT_FILE);
        default.is_file().then(|| default.to_path_buf())
    });
    let config = Config::load(file.as_deref(), &Overrides::default())?;
    let taken: Vec<&str> = config.server.tokens.iter().map(|token| token.name.as_str()).collect();
    let people: Vec<&str> = config.directory.people.keys().map(String::as_str).collect();
    let name = match check(&args.person, args.name.as_deref(), &people, &taken, file.as_deref()) {
        Ok(name) => name,
        Err(refusal) => {
            eprintln!("error: {}", refusal.message);
            if let Some(help) = refusal.help {
                eprintln!("  help: {help}");
            }
            return Ok(super::exit::INVALID);
        }
    };
    if args.name.is_none() && name != args.person {
        eprintln!("note: the configuration has a token named `{}`; this one is named `{name}`", args.person);
    }
    let (token, hash) = server::auth::new_token();
    super::print_stdout(&format!(
        "token: {token}\n\nShown once; the configuration keeps only its hash:\n  server:\n    tokens:\n      {name}: {{ person: {}, sha256: {hash} }}\n",
        args.person
    ))?;
    Ok(super::exit::OK)
}

/// The token's name, once `person` is among `people` and the name is not `taken`: `requested`,
/// or else the person's name, or else the first of `PERSON-2`, `PERSON-3` ... that is free.
fn check(
    person: &str,
    requested: Option<&str>,
    people: &[&str],
    taken: &[&str],
    file: Option<&Path>,
) -> Result<String, Refusal> {
    if !people.contains(&person) {
        let configuration = match file {
            Some(file) => format!("configuration `{}`", file.display()),
            None => "configuration (none was found: `--config FILE`, PHASEGATE_CONFIG or ./phasegate.yaml)".to_string(),
        };
        let help = match did_you_mean(person, people.iter().copied()) {
            Some(meant) => Some(format!("did you mean `{meant}`?")),
            None if people.is_empty() => {
                Some("add the person under `people:` with their roles, then make their token".to_string())
            }
            None => Some(format!("the configuration's people: {}", listed(people))),
        };
        return Err(Refusal { message: format!("`{person}` is not among the people of the {configuration}"), help });
    }
    let free = |base: &str| {
        (2u32..).map(|n| format!("{base}-{n}")).find(|name| !taken.contains(&name.as_str())).expect("some are free")
    };
    match requested {
        Some(name) if name.trim().is_empty() => {
            Err(Refusal { message: "a token's name cannot be empty".to_string(), help: None })
        }
        Some(name) if taken.contains(&name) => Err(Refusal {
            message: format!("the configuration already has a token named `{name}`"),
            help: Some(format!("`--name {}` is free", free(name))),
        }),
        Some(name) => Ok(name.to_string()),
        None if taken.contains(&person) => Ok(free(person)),
        None => Ok(person.to_string()),
    }
}

fn listed(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_for_a_configured_person_under_a_free_name() {
        let people = ["dana.ito", "tom.reyes"];
        let taken = ["dana.ito", "dana.ito-2", "ci"];
        let file = Some(Path::new("phasegate.yaml"));
        let named = |name: &str| Ok(name.to_string());
        let refused = |message: &str, help: Option<&str>| {
            Err(Refusal { message: message.to_string(), help: help.map(str::to_string) })
        };
        let not_among = "`dana.it` is not among the people of the configuration `phasegate.yaml`";
        // Person, requested name, people, taken names, file: what comes of it.
        type Case<'a> =
            (&'a str, Option<&'a str>, &'a [&'a str], &'a [&'a str], Option<&'a Path>, Result<String, Refusal>);
        let cases: Vec<Case> = vec![
            ("tom.reyes", None, &people, &taken, file, named("tom.reyes")),
            ("dana.ito", None, &people, &taken, file, named("dana.ito-3")),
            ("dana.ito", Some("dana-laptop"), &people, &taken, file, named("dana-laptop")),
            (
                "tom.reyes",
                Some("ci"),
                &people,
                &taken,
                file,
                refused("the configuration already has a token named `ci`", Some("`--name ci-2` is free")),
            ),
            ("tom.reyes", Some(" "), &people, &taken, file, refused("a token's name cannot be empty", None)),
            ("dana.it", None, &people, &taken, file, refused(not_among, Some("did you mean `dana.ito`?"))),
            (
                "zoe",
                None,
                &people,
                &taken,
                file,
                refused(
                    "`zoe` is not among the people of the configuration `phasegate.yaml`",
                    Some("the configuration's people: `dana.ito`, `tom.reyes`"),
                ),
            ),
            (
                "dana",
                None,
                &[],
                &[],
                None,
                refused(
                    "`dana` is not among the people of the configuration (none was found: `--config FILE`, \
                 PHASEGATE_CONFIG or ./phasegate.yaml)",
                    Some("add the person under `people:` with their roles, then make their token"),
                ),
            ),
        ];
        for (person, requested, people, taken, file, expected) in cases {
            assert_eq!(check(person, requested, people, taken, file), expected, "{person} {requested:?}");
        }
    }
}
