//! `/metrics` in the Prometheus text format: requests by route and status, webhook deliveries
//! accepted and refused by reason, incidents by state, the outbox's and the inbox's depth, how long effects
//! (automated steps, checks, updates) take, how far open incidents' campaigns have got, and their
//! batches' failed attempts by the kind of failure.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route's pattern (`/api/v1/incidents/{id}`), never the path itself, so that ids do not
    /// become label values.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    /// `accepted`, `duplicate` or `refused`.
    pub result: String,
    /// Why it was refused (`bad_signature`, `stale`, ...), or empty.
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CampaignLabels {
    /// `INCIDENT/PHASE/STEP`, for open incidents' campaigns only.
    pub campaign: String,
    /// `sent`, `failed` or `to_send`.
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailedAttemptLabels {
    /// The kind of failure (`campaign::FailureClass`): `http_status`, `connection`, `timeout`,
    /// `smtp_reply`, `refused` or `local`.
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EffectLabels {
    /// `http`, `command`, `check` or `notify`.
    pub kind: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub incidents: Family<StateLabels, Gauge>,
    pub outbox: Gauge,
    pub inbox: Gauge,
    pub effect_seconds: Family<EffectLabels, Histogram>,
    pub campaigns: Family<CampaignLabels, Gauge>,
    pub campaign_failed_attempts: Family<FailedAttemptLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("phasegate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register("webhook_deliveries", "Webhook deliveries, by source and result", webhooks.clone());
        let incidents = Family::<StateLabels, Gauge>::default();
        registry.register("incidents", "Incidents by state", incidents.clone());
        let outbox = Gauge::default();
        registry.register("outbox_depth", "Effects waiting in the outbox", outbox.clone());
        let inbox = Gauge::default();
        registry.register("inbox_depth", "Webhook deliveries received and not yet applied", inbox.clone());
        let effect_seconds = Family::<EffectLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register("effect_seconds", "Time to carry out an effect, by kind", effect_seconds.clone());
        let campaigns = Family::<CampaignLabels, Gauge>::default();
        registry.register(
            "campaign_recipients",
            "Open incidents' campaigns: recipients sent, failed and still to send",
            campaigns.clone(),
        );
        let campaign_failed_attempts = Family::<FailedAttemptLabels, Counter>::default();
        registry.register(
            "campaign_failed_attempts",
            "Campaign batches' failed attempts to send (each retried, up to the last), by the kind of failure",
            campaign_failed_attempts.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            campaign_failed_attempts,
            requests,
            webhooks,
            incidents,
            outbox,
            inbox,
            effect_seconds,
            campaigns,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("the registry is never poisoned");
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
