//! A campaign's test send (`phasegate campaign test`, `POST .../campaign/test`): the messages of
//! the list's first recipients, rendered as the campaign renders them, sent through the
//! campaign's own channel to internal addresses only, then recorded in the incident's log
//! (`campaign_test_sent`). The campaign's progress, its batches and its Merkle tree are not
//! touched.
//!
//! Where a test may go is the configuration's `campaigns.test_recipients` (addresses, and whole
//! domains written `@DOMAIN`): any other address is refused before anything is rendered, so a
//! test send cannot become a way to mail customers outside the campaign.
//!
//! The order: the request is checked (its shape: an address at least, the sample within bounds;
//! then the step is a campaign and the person holds the runbook's `campaign` right, decided by
//! the engine on the stored state exactly as the record will be; then every address parses and
//! is allowed), then the messages are sent,
//! then the send is recorded with what the channel answered. A crash between the send and the
//! record loses the record of that test (the messages are only ever internal).

use super::{Error, Loaded, Runtime};
use crate::actions::Actions;
use crate::actions::campaign::{Answer, BatchJob};
use crate::campaign::recipients::{Entry, Reader, check_address};
use crate::engine::command::CampaignTest;
use crate::engine::{self, Command, Request};
use crate::runbook::Templates;
use crate::runbook::model::Action;
use crate::store::Store;

/// The most recipients a test send renders.
pub const MAX_SAMPLE: usize = 20;

/// The most addresses a test send goes to.
pub const MAX_ADDRESSES: usize = 10;

/// What a person asks for.
pub struct TestRequest<'a> {
    pub incident: &'a str,
    pub phase: &'a str,
    pub step: &'a str,
    pub actor: &'a str,
    pub to: &'a [String],
    pub sample: usize,
}

/// What a test send did, as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestReport {
    pub incident: String,
    pub campaign: String,
    #[serde(flatten)]
    pub test: CampaignTest,
    /// The test's number among the campaign's test sends (its batch number under
    /// `{campaign}/test`).
    pub number: u32,
    /// Why a sample recipient's message was refused or could not be rendered.
    pub problems: Vec<(String, String)>,
}

impl<S: Store, T: Templates + Send + Sync> Runtime<S, T> {
    /// Sends a test of a campaign and records it; refused, with nothing sent or recorded, when
    /// the request is not one (see the module's documentation).
    pub async fn campaign_test(&self, actions: &Actions, request: TestRequest<'_>) -> Result<TestReport, Error> {
        let TestRequest { incident, phase, step, actor, to, sample } = request;
        let bad = |problem: String| Error::BadRequest(problem);
        if to.is_empty() {
            return Err(bad("a test send needs at least one address to send to (`--to`)".into()));
        }
        if to.len() > MAX_ADDRESSES {
            return Err(bad(format!("a test send goes to at most {MAX_ADDRESSES} addresses, not {}", to.len())));
        }
        if sample == 0 || sample > MAX_SAMPLE {
            return Err(bad(format!("the sample is 1 to {MAX_SAMPLE} recipients, not {sample}")));
        }
        let Loaded { events, incident: state, runbook } = self.load(incident).await?;
        // The engine decides now, on the stored state, what it will decide when the send is
        // recorded: the step, the right. Nothing is sent to someone it would refuse.
        let number = state.step(phase, step).tests + 1;
        let planned = CampaignTest { to: to.to_vec(), recipients: Vec::new(), messages: 0, refused: 0, error: None };
        let command = Command::CampaignTest { phase: phase.to_string(), step: step.to_string(), test: planned };
        let now = chrono::Utc::now();
        let request = Request { actor: actor.to_string(), at: now, command };
        engine::decide(&runbook, self.directory(), Some(&state), &request)?;
        let allowed = &self.campaign_settings.test_recipients;
        let mut addresses = Vec::new();
        for address in to {
            let address = address.trim();
            check_address(address).map_err(|problem| bad(format!("`{address}` is not an email address: {problem}")))?;
            if !allows(allowed, address) {
                return Err(bad(format!(
                    "`{address}` is not among the configuration's `campaigns.test_recipients` ({}): a test send \
                     goes to internal addresses only",
                    if allowed.is_empty() { "empty: no test send anywhere".to_string() } else { allowed.join(", ") }
                )));
            }
            if !addresses.iter().any(|kept: &String| kept.eq_ignore_ascii_case(address)) {
                addresses.push(address.to_string());
            }
        }
        let Some(Action::Campaign { recipients_input, .. }) =
            runbook.phase(phase).and_then(|p| p.step(step)).map(|s| &s.action)
        else {
            unreachable!("the engine checked that `{phase}/{step}` is a campaign step")
        };
        let list = match state.inputs.get(recipients_input) {
            Some(serde_json::Value::String(list)) => std::path::PathBuf::from(list),
            _ => {
                return Err(bad(format!(
                    "input `{recipients_input}` of incident `{incident}` names no recipient list"
                )));
            }
        };
        let spec = super::campaign::list_spec(runbook.phase(phase).and_then(|p| p.step(step)).expect("checked"));
        let recipients = first_recipients(&list, &spec, sample)?;
        if recipients.is_empty() {
            return Err(bad(format!("the list `{}` has no recipient to take a sample from", list.display())));
        }
        let campaign = format!("{incident}/{phase}/{step}");
        let job = BatchJob {
            runbook: &runbook,
            incident: &state,
            events: &events,
            now,
            phase,
            step,
            campaign: &campaign,
            number,
            recipients: recipients.clone().into(),
        };
        let sent = actions
            .campaign_test(job, &addresses)
            .await
            .map_err(|error| Error::Campaign(format!("campaign `{campaign}`: the test send failed: {error}")))?;
        let mut problems = sent.not_rendered.clone();
        let (refused, error) = match &sent.answer {
            Answer::Accepted { rejected } => {
                problems.extend(rejected.iter().cloned());
                (rejected.len() as u32, None)
            }
            Answer::Failed { error, .. } => (sent.messages, Some(error.clone())),
        };
        let test = CampaignTest {
            to: addresses,
            recipients: recipients.iter().map(|recipient| recipient.id.clone()).collect(),
            messages: sent.messages,
            refused,
            error,
        };
        let command = Command::CampaignTest { phase: phase.to_string(), step: step.to_string(), test: test.clone() };
        self.submit(incident, actor, command).await?;
        Ok(TestReport { incident: incident.to_string(), campaign, test, number, problems })
    }
}

/// Whether `address` is one of `allowed`'s addresses or in one of its `@DOMAIN`s (case aside).
pub fn allows(allowed: &[String], address: &str) -> bool {
    let domain = address.rsplit_once('@').map(|(_, domain)| domain).unwrap_or_default();
    allowed.iter().any(|entry| match entry.strip_prefix('@') {
        Some(allowed_domain) => allowed_domain.eq_ignore_ascii_case(domain),
        None => entry.eq_ignore_ascii_case(address),
    })
}

/// The list's first `count` recipients (lines set aside are skipped).
pub fn first_recipients(
    list: &std::path::Path,
    spec: &crate::campaign::ListSpec,
    count: usize,
) -> Result<Vec<crate::campaign::Recipient>, Error> {
    let unreadable = |error: crate::campaign::recipients::Error| {
        Error::Campaign(format!("the list `{}` cannot be read: {error}", list.display()))
    };
    let mut reader = Reader::open(list, spec).map_err(unreadable)?;
    let mut sample = Vec::new();
    while sample.len() < count {
        match reader.next_item().map_err(unreadable)? {
            Some(item) => {
                if let Entry::Recipient(recipient) = item.entry {
                    sample.push(recipient);
                }
            }
            None => break,
        }
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::allows;

    #[test]
    fn test_addresses_are_allowed_by_address_or_by_domain_only() {
        let allowed = vec!["@harbour.example".to_string(), "ciso@partner.example".to_string()];
        // The address, and whether a test may go there.
        let table = [
            ("dana.ito@harbour.example", true),
            ("Dana.Ito@HARBOUR.example", true),
            ("ciso@partner.example", true),
            ("cfo@partner.example", false),
            ("someone@sub.harbour.example", false),
            ("member@members.example", false),
            ("harbour.example@evil.example", false),
        ];
        for (address, expected) in table {
            assert_eq!(allows(&allowed, address), expected, "{address}");
        }
        assert!(!allows(&[], "dana.ito@harbour.example"), "nothing allowed: no test send anywhere");
    }
}
