//! A campaign's lanes in the runtime, with an executor that stands in for the channel: a pause
//! recorded while batches are in flight stops every lane before its next batch, a failed batch
//! stops the slice's lanes, then goes again, with the same number, after its wait, and a batch
//! that fails its eight attempts in a row pauses the campaign instead of giving its recipients
//! up. The executor answers at once, so without those stops one slice would send all 30 batches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use phasegate::actions::campaign::{Answer, BatchJob, BatchSent};
use phasegate::audit::merkle::{self, Leaf, LeafOutcome};
use phasegate::engine::command::{CampaignAction, CampaignReport};
use phasegate::engine::{Command, Directory, Effect, Event, Incident, Outcome};
use phasegate::render::Catalog;
use phasegate::runbook::Runbook;
use phasegate::runtime::campaign::Settings;
use phasegate::runtime::{Executor, Runtime};
use phasegate::store::SqliteStore;

use crate::support::wait_until;

const RUNBOOK: &str = r#"apiVersion: phasegate/v1
kind: Runbook
id: lanes
title: Lanes
roles:
  commander: {}
  comms: {}
rights: { close: [commander], campaign: [comms] }
inputs:
  members: { type: string, default: members.jsonl }
channels:
  mailer:
    batch: { url: "https://mailer.example/batches" }
phases:
  - id: notify
    steps:
      - id: send
        campaign:
          recipients: { input: members, id_field: member_id }
          template: customer-notice
          channel: mailer
          batch_size: 10
          concurrency: 3
"#;

/// Recipients in the list: 30 batches of 10.
const MEMBERS: usize = 300;

/// What the executor saw, in order: each batch as its sending began, and the pause once stored.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Sending(u32),
    Paused,
}

/// Takes every batch, except that it pauses the campaign (as `comms`, through the runtime) while
/// sending batch `pause_at`, and fails the first `fail.1` attempts of batch `fail.0`.
struct Channel {
    runtime: Arc<Runtime<SqliteStore, Catalog>>,
    incident: Mutex<String>,
    pause_at: Option<u32>,
    fail: Option<(u32, usize)>,
    seen: Mutex<Vec<Seen>>,
}

impl Executor for Channel {
    async fn carry_out(&self, effect: &Effect, _: &Runbook, _: &Incident, _: &[Event], _: DateTime<Utc>) -> Outcome {
        Outcome::Failed { error: format!("this test carries out no {}", effect.id) }
    }

    async fn send_campaign_batch(&self, job: BatchJob<'_>) -> BatchSent {
        let attempt = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Seen::Sending(job.number));
            seen.iter().filter(|s| **s == Seen::Sending(job.number)).count()
        };
        if self.pause_at == Some(job.number) {
            let incident = self.incident.lock().unwrap().clone();
            let pause = Command::Campaign {
                phase: "notify".into(),
                step: "send".into(),
                action: CampaignAction::Pause,
                reason: Some("complaints".into()),
            };
            self.runtime.submit(&incident, "robin", pause).await.unwrap();
            self.seen.lock().unwrap().push(Seen::Paused);
        }
        let leaves = job
            .recipients
            .iter()
            .map(|r| Leaf {
                id: r.id.clone(),
                digest: merkle::message_digest(&r.address, "", "", None),
                outcome: LeafOutcome::Sent,
                at: job.now,
            })
            .collect();
        let answer = if self.fail.is_some_and(|(number, times)| number == job.number && attempt <= times) {
            Answer::Failed { error: "503 from the relay".into(), class: phasegate::campaign::FailureClass::HttpStatus }
        } else {
            Answer::Accepted { rejected: Vec::new() }
        };
        BatchSent { answer, leaves }
    }
}

async fn started(dir: &tempfile::TempDir, pause_at: Option<u32>, fail: Option<(u32, usize)>) -> Channel {
    let members: String = (0..MEMBERS)
        .map(|n| format!("{{\"member_id\": \"M{n}\", \"email\": \"m{n}@example.com\", \"first_name\": \"Ann\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("members.jsonl"), members).unwrap();
    let store = SqliteStore::open(dir.path().join("phasegate.db")).await.unwrap();
    let settings = Settings {
        dir: dir.path().join("campaigns"),
        lists_from: Some(dir.path().to_path_buf()),
        // Waits of 1, 2, 4 ... ms after failed attempts (half a second, doubling, by default).
        retry_unit: if fail.is_some_and(|(_, times)| times > 1) {
            Duration::from_millis(1)
        } else {
            Settings::default().retry_unit
        },
        ..Settings::default()
    };
    let runtime =
        Runtime::new(store, Catalog::built_in(), Directory::with(&[("dana", &["commander"]), ("robin", &["comms"])]))
            .with_campaigns(settings);
    let runtime = Arc::new(runtime);
    let (incident, _) = runtime.start(RUNBOOK, "dana", BTreeMap::new(), None).await.unwrap();
    Channel { runtime, incident: Mutex::new(incident), pause_at, fail, seen: Mutex::new(Vec::new()) }
}

impl Channel {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn step_status(&self) -> String {
        let incident = self.incident.lock().unwrap().clone();
        self.runtime.load(&incident).await.unwrap().incident.step("notify", "send").status.as_str().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_recorded_mid_slice_stops_every_lane_before_its_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let channel = started(&dir, Some(4), None).await;
    channel.runtime.run_due(&channel).await.unwrap();
    let seen = channel.seen();
    let paused = seen.iter().position(|s| *s == Seen::Paused).expect("batch 4 was sent and paused the campaign");
    // A lane looks at the log before it takes a batch: once the pause is stored, no lane takes
    // another. Only a lane that looked before the pause was stored (each of the two others, at
    // most once) may still begin its batch; without the look, the lanes would send all 30 in
    // this slice.
    let after = seen.len() - paused - 1;
    assert!(after <= 2, "{after} batches began after the pause was stored: {seen:?}");
    assert!(seen.len() < 30, "the campaign stopped short of its 30 batches: {seen:?}");
    // Paused, a pass sends nothing.
    channel.runtime.run_due(&channel).await.unwrap();
    assert_eq!(channel.seen().len(), seen.len(), "a paused campaign sends nothing");
    assert_eq!(channel.step_status().await, "running");

    // Resumed, it sends the rest, each batch once.
    let incident = channel.incident.lock().unwrap().clone();
    let resume =
        Command::Campaign { phase: "notify".into(), step: "send".into(), action: CampaignAction::Resume, reason: None };
    channel.runtime.submit(&incident, "robin", resume).await.unwrap();
    channel.runtime.run_due(&channel).await.unwrap();
    assert_eq!(channel.step_status().await, "done");
    let mut batches: Vec<u32> =
        channel.seen().iter().filter_map(|s| if let Seen::Sending(n) = s { Some(*n) } else { None }).collect();
    batches.sort_unstable();
    assert_eq!(batches, (1..=30).collect::<Vec<u32>>(), "every batch sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_stops_the_lanes_and_goes_again_with_its_number_after_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let channel = started(&dir, None, Some((5, 1))).await;
    channel.runtime.run_due(&channel).await.unwrap();
    let first = channel.seen();
    let failed = first.iter().position(|s| *s == Seen::Sending(5)).expect("batch 5 was sent");
    // The lanes in flight when batch 5 failed finish theirs; none takes a new one after it, so
    // what began after batch 5 is at most the other lanes' batches in flight (concurrency 3).
    assert!(
        first.len() - failed - 1 <= 2,
        "after batch 5 failed, {} more batches began: {first:?}",
        first.len() - failed - 1
    );
    assert!(first.len() < 30, "the slice stopped at the failure: {first:?}");
    assert_eq!(channel.step_status().await, "running", "a failed attempt is not the step's failure");

    // After its wait (a second for a first failure), batch 5 goes again and the campaign ends.
    wait_until("the campaign to finish after batch 5's wait", Duration::from_secs(60), async || {
        channel.runtime.run_due(&channel).await.unwrap();
        channel.step_status().await == "done"
    })
    .await;
    let seen = channel.seen();
    let fives = seen.iter().filter(|s| **s == Seen::Sending(5)).count();
    assert_eq!(fives, 2, "batch 5 was sent twice, as the same batch: {seen:?}");
    let again = seen.iter().rposition(|s| *s == Seen::Sending(5)).unwrap();
    assert!(again > first.len() - 1, "the second attempt came in a later slice");
    for number in (1..=30).filter(|n| *n != 5) {
        assert_eq!(seen.iter().filter(|s| **s == Seen::Sending(number)).count(), 1, "batch {number}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_eight_attempts_in_a_row_pauses_the_campaign_and_gives_no_recipient_up() {
    let dir = tempfile::tempdir().unwrap();
    // Batch 5 fails nine times: its eight attempts, then the first after the resume.
    let channel = started(&dir, None, Some((5, 9))).await;
    let incident = channel.incident.lock().unwrap().clone();
    let paused = async || {
        let loaded = channel.runtime.load(&incident).await.unwrap();
        loaded.incident.step("notify", "send").campaign.unwrap_or_default().paused.is_some()
    };
    wait_until("batch 5's eighth failure to pause the campaign", Duration::from_secs(60), async || {
        channel.runtime.run_due(&channel).await.unwrap();
        paused().await
    })
    .await;
    let fives = |seen: &[Seen]| seen.iter().filter(|s| **s == Seen::Sending(5)).count();
    assert_eq!(fives(&channel.seen()), 8, "batch 5 was tried eight times before the pause");
    let loaded = channel.runtime.load(&incident).await.unwrap();
    let pause = loaded.events.iter().rev().find(|e| e.kind.name() == "campaign_paused").unwrap();
    assert_eq!(pause.actor, "phasegate");
    let reason = pause.reason.as_deref().unwrap();
    assert!(reason.contains("batch 5 was not accepted in 8 attempts in a row") && reason.contains("503"), "{reason}");
    let campaign = loaded.incident.step("notify", "send").campaign.unwrap();
    assert_eq!(campaign.failed, 0, "no recipient was given up");
    assert_eq!(channel.step_status().await, "running", "paused, not failed");

    // Paused, passes send nothing, however long they wait.
    let before = channel.seen().len();
    for _ in 0..3 {
        channel.runtime.run_due(&channel).await.unwrap();
    }
    assert_eq!(channel.seen().len(), before, "a campaign paused by phasegate sends nothing");

    // Only the runbook's `campaign` roles resume it; nobody but phasegate reports its milestones.
    let resume =
        Command::Campaign { phase: "notify".into(), step: "send".into(), action: CampaignAction::Resume, reason: None };
    let refused = channel.runtime.submit(&incident, "dana", resume.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("does not hold"), "{refused}");
    let halted = CampaignReport::Halted { reason: "by hand".into() };
    let report = Command::CampaignReport { phase: "notify".into(), step: "send".into(), report: halted };
    let refused = channel.runtime.submit(&incident, "robin", report).await.unwrap_err();
    assert!(refused.to_string().contains("phasegate's sender only"), "{refused}");

    // Resumed, batch 5 goes again with its number (it fails once more, then is taken) and the
    // campaign ends with every recipient sent once, none failed.
    channel.runtime.submit(&incident, "robin", resume).await.unwrap();
    wait_until("the campaign to finish after the resume", Duration::from_secs(60), async || {
        channel.runtime.run_due(&channel).await.unwrap();
        channel.step_status().await == "done"
    })
    .await;
    let seen = channel.seen();
    assert_eq!(fives(&seen), 10, "eight attempts, the one that failed after the resume, the one taken: {seen:?}");
    for number in (1..=30).filter(|n| *n != 5) {
        assert_eq!(seen.iter().filter(|s| **s == Seen::Sending(number)).count(), 1, "batch {number}: {seen:?}");
    }
    let campaign = channel.runtime.load(&incident).await.unwrap().incident.step("notify", "send").campaign.unwrap();
    let totals = campaign.finished.unwrap();
    assert_eq!((totals.sent, totals.failed), (MEMBERS as u64, 0));
}
