//! Spelling: the name someone most likely meant when the one they wrote is unknown.
//!
//! Runbook validation, conditions, drills and the engine's refusals all suggest a near name the
//! same way; this leaf module lets each of them do so without importing another.

/// Longest word, in bytes, that [`did_you_mean`] compares: comparing takes time in the product of
/// the two lengths (two 300 KB ids took minutes), and nobody misspells a name that long.
const MAX_SUGGESTED_LENGTH: usize = 256;

/// The closest of `candidates` to a misspelt `word`, if one is close enough to be what was meant.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > MAX_SUGGESTED_LENGTH {
        return None;
    }
    candidates
        .into_iter()
        .filter(|candidate| candidate.len() <= MAX_SUGGESTED_LENGTH)
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["needs", "steps", "entry", "exit", "when"];
        assert_eq!(did_you_mean("neds", keys), Some("needs"));
        assert_eq!(did_you_mean("stpes", keys), Some("steps"));
        assert_eq!(did_you_mean("banana", keys), None);
    }
}
