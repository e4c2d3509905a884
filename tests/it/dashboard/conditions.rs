//! Steps whose condition is already known to be false: the page shows them as to be skipped and
//! offers no form for them, the status board says so without counting them as blocking, and the
//! engine refuses marking one done (a form posted by hand changes nothing).

use std::time::Duration;

use super::{DANA, Dashboard, flash};
use crate::support::wait_until;

/// A phase of three manual steps: the second runs only for card incidents (an input, so its
/// condition is known from the start); the third only when the first found a wide scope (known
/// only once the first is done).
const CONDITIONAL: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: web-when
title: Conditional steps
roles:
  commander: {}
rights: { close: [commander] }
inputs:
  card: { type: boolean, default: false }
phases:
  - id: contain
    steps:
      - id: isolate
        manual: { instructions: Isolate the hosts, outputs: [scope] }
      - id: card-check
        title: Check the card estate
        when: inputs.card
        manual: { instructions: Check the card estate }
      - id: follow-up
        when: 'steps["contain/isolate"].outputs.scope == "wide"'
        manual: { instructions: Follow up on a wide scope }
"#;

/// Regression: the card step of an incident without card data was offered as a form (and the
/// status board listed it as blocking) although the engine was bound to skip it when reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_condition_is_known_false_is_shown_as_skipped_and_cannot_be_marked_done() {
    let dashboard = Dashboard::start_with(&[("web-when.yaml", CONDITIONAL)], "", Duration::from_millis(50)).await;
    let id = dashboard.start_runbook("web-when").await;
    let page = format!("/incidents/{id}");
    let mut dana = dashboard.sign_in(DANA).await;
    wait_until("the phase to run", Duration::from_secs(30), async || {
        dana.get(&page).await.2.contains("id=\"done-contain-isolate\"")
    })
    .await;
    let (_, _, shown) = dana.get(&page).await;
    assert!(!shown.contains("id=\"done-contain-card-check\""), "the card step is not offered: {shown}");
    assert!(
        shown.contains("Will be skipped when reached: condition <code>inputs.card</code> is false"),
        "the card step says why: {shown}"
    );
    // Its condition reads a step not done yet: it may still run, so it is offered.
    assert!(shown.contains("id=\"done-contain-follow-up\""), "the follow-up is still offered");

    let board = dashboard.api(&format!("/api/v1/incidents/{id}")).await;
    let card = board["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["blocker"]["what"] == "contain/card-check")
        .unwrap_or_else(|| panic!("the card step on the board: {board}"));
    assert_eq!(card["blocker"]["kind"], "will_skip", "{card}");
    assert_eq!(
        card["blocker"]["waiting_for"], "will be skipped when reached: condition `inputs.card` is false",
        "{card}"
    );
    assert_eq!(card["blocker"]["roles"], serde_json::json!([]), "nobody acts on it");

    // Posted by hand anyway: refused with the reason, nothing recorded.
    let before = dashboard.by_people(&id).await;
    let landed = dana.act(&page, &format!("{page}/steps/contain/card-check/done"), &[("evidence", "checked")]).await;
    assert_eq!(
        flash(&landed),
        Some("Refused: step `contain/card-check` will be skipped when reached: its condition `inputs.card` is false"),
    );
    assert_eq!(dashboard.by_people(&id).await, before, "nothing refused was recorded");

    // A narrow scope: the follow-up's condition is now known false too, and both are skipped.
    let landed = dana
        .act(
            &page,
            &format!("{page}/steps/contain/isolate/done"),
            &[("evidence", "isolated"), ("output.scope", "narrow")],
        )
        .await;
    assert_eq!(flash(&landed), Some("Step `contain/isolate` marked done."));
    wait_until("the phase to finish", Duration::from_secs(30), async || {
        dashboard.api(&format!("/api/v1/incidents/{id}")).await["incident"]["phases"]
            .as_array()
            .is_some_and(|phases| phases.iter().any(|p| p["id"] == "contain" && p["state"] == "done"))
    })
    .await;
    // The engine's own moves that follow a person's command are recorded with that person.
    let kinds: Vec<String> = dashboard.by_people(&id).await.into_iter().map(|(kind, _)| kind).collect();
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!((count("step_done"), count("step_skipped")), (1, 2), "isolate done, the other two skipped: {kinds:?}");
    dashboard.stop().await;
}
