//! Who may act, holding which roles. Configuration supplies it; the engine only asks.

use std::collections::{BTreeMap, BTreeSet};

/// Actors whose name starts with this are triggers (webhooks), authenticated by the server.
pub const TRIGGER_PREFIX: &str = "trigger:";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Each person's name and the roles they hold.
    pub people: BTreeMap<String, BTreeSet<String>>,
}

impl Directory {
    pub fn with(people: &[(&str, &[&str])]) -> Directory {
        let people = people
            .iter()
            .map(|(name, roles)| (name.to_string(), roles.iter().map(|r| r.to_string()).collect()))
            .collect();
        Directory { people }
    }

    pub fn knows(&self, actor: &str) -> bool {
        self.people.contains_key(actor)
    }

    /// The people holding any of `roles`, by name.
    pub fn holders<'d>(&'d self, roles: &'d [String]) -> impl Iterator<Item = &'d str> + 'd {
        self.people
            .iter()
            .filter(|(_, held)| roles.iter().any(|role| held.contains(role)))
            .map(|(person, _)| person.as_str())
    }

    /// The first of `roles` that `person` holds.
    pub fn role_among<'r>(&self, person: &str, roles: &'r [String]) -> Option<&'r String> {
        let held = self.people.get(person)?;
        roles.iter().find(|role| held.contains(*role))
    }
}

pub fn is_trigger(actor: &str) -> bool {
    actor.starts_with(TRIGGER_PREFIX)
}
