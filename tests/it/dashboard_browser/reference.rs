//! The reference runbook, `runbooks/retail-breach.yaml` as shipped, walked from the start form to
//! closed in the browser alone (issue 15's "done when"), by the people of the example
//! configuration (`examples/phasegate.yaml`): each signs in through the form with a token of their
//! own and does their part on the incident's page. Before each part the test reads what the page
//! says blocks the incident and who can unblock it, by name; every page it visits is checked by
//! axe-core and kept as a screenshot (`target/browser-screenshots/walk-*.png`).
//!
//! The retailer's systems are the reference drill's stand-ins (`drills/retail-breach.yaml`),
//! answering in real time: the SIEM, the EDR, the deploy pipeline and the rest answer as the
//! steps expect, and every message is taken. The EDR reports the hosts still pending (for 20
//! minutes after it is first asked), so containment's check gate waits and the page offers its
//! retry and its pass by hand, which the incident commander uses; the evidence archive is a
//! command, which the configuration does not allow, so the step fails and is marked done by hand
//! from the page. Nothing of the runbook is changed and no timer is shortened: the runtime loop
//! passes every 50 ms, and the waits the runbook has are the ones people cut short on the page.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{check, flash, type_into};
use crate::support::browser::Browser;
use crate::support::{Serving, root};

/// The recipients of the apology campaign, given to the start form as the `member_list` input.
const MEMBERS: &str = r#"{"member_id": "M1", "email": "ada@members.example", "first_name": "Ada", "preferred_language": "en", "tier": "gold", "offer_kind": "gift_card", "offer_points": 0, "gift_card_value": "10.00", "gift_card_code": "GC-AAAA-1111"}
{"member_id": "M2", "email": "bo@members.example", "first_name": "Bo", "preferred_language": "en", "tier": "green", "offer_kind": "points", "offer_points": 1000, "gift_card_value": "", "gift_card_code": ""}
{"member_id": "M3", "email": "cy@members.example", "first_name": "Cy", "preferred_language": "en", "tier": "platinum", "offer_kind": "gift_card", "offer_points": 0, "gift_card_value": "10.00", "gift_card_code": "GC-CCCC-3333"}
"#;

fn token(person: &str) -> String {
    format!("pg_{}-walk-token", person.replace('.', "-"))
}

/// Ids as the dashboard makes them: lower-cased, every other character a `-`.
fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// `phasegate serve` over the shipped retail-breach runbook and the example configuration's
/// people (each with a token), its effects carried out against the reference drill's stand-ins.
struct Shop {
    serving: Serving,
    dir: tempfile::TempDir,
}

impl Shop {
    async fn open() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let runbooks = dir.path().join("runbooks");
        std::fs::create_dir(&runbooks).unwrap();
        std::fs::copy(root().join("runbooks/retail-breach.yaml"), runbooks.join("retail-breach.yaml")).unwrap();
        std::fs::write(dir.path().join("members.jsonl"), MEMBERS).unwrap();
        let example: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(root().join("examples/phasegate.yaml")).unwrap()).unwrap();
        let people = example["people"].as_mapping().expect("the example configuration names people").clone();
        let tokens: serde_yaml::Mapping = people
            .keys()
            .map(|person| {
                let person = person.as_str().unwrap();
                let entry = serde_yaml::to_value(serde_json::json!({
                    "person": person, "sha256": phasegate::engine::decide::sha256_hex(&token(person)),
                }))
                .unwrap();
                (serde_yaml::Value::from(slug(person)), entry)
            })
            .collect();
        let config = serde_json::json!({
            "database": dir.path().join("phasegate.db"),
            "runbooks": runbooks,
            "campaigns": { "dir": dir.path().join("campaigns"), "test_recipients": example["campaigns"]["test_recipients"] },
            "server": { "live_poll": "200ms" },
        });
        let mut config: serde_yaml::Value = serde_yaml::to_value(config).unwrap();
        config["people"] = serde_yaml::Value::Mapping(people);
        config["server"]["tokens"] = serde_yaml::Value::Mapping(tokens);
        let path = dir.path().join("phasegate.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();

        let drill = std::fs::read_to_string(root().join("drills/retail-breach.yaml")).unwrap();
        let scenario = phasegate::drill::parse(&drill).unwrap_or_else(|problems| panic!("{problems:?}"));
        let drill = phasegate::actions::standin::DrillStandIn::new(&scenario, Arc::new(|_| {}));
        let stand_in = FirstDeployFails { drill, failed: std::sync::atomic::AtomicBool::new(false) };
        let catalog = Arc::new(phasegate::render::Catalog::built_in());
        let actions = phasegate::actions::Actions::new(catalog, Arc::new(phasegate::actions::standin::Placeholders))
            .unwrap()
            .with_stand_in(Arc::new(stand_in));
        let config = phasegate::config::Config::load(Some(&path), &Default::default()).unwrap();
        let store = phasegate::store::AnyStore::open(&config.database).await.unwrap();
        let serving = Serving::start_executing(store, config, "127.0.0.1:0", Duration::from_millis(50), actions).await;
        Shop { serving, dir }
    }
}

/// The drill's stand-ins, but the deploy pipeline answers the shop's first deploy `503`: the
/// step then waits 15 to 30 s for its next attempt, which the incident commander starts at once
/// from the page.
struct FirstDeployFails {
    drill: phasegate::actions::standin::DrillStandIn,
    failed: std::sync::atomic::AtomicBool,
}

impl phasegate::actions::standin::StandIn for FirstDeployFails {
    fn http(&self, request: &phasegate::actions::standin::Sent) -> (phasegate::drill::model::Answer, Duration) {
        let shop = request.url.ends_with("/pipelines/shop-frontend/runs");
        if shop && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let answer = phasegate::drill::model::Answer {
                status: 503,
                body: serde_json::json!({ "error": "pipeline runners busy" }),
                ..Default::default()
            };
            return (answer, Duration::ZERO);
        }
        self.drill.http(request)
    }

    fn command(&self, argv: &[String]) -> phasegate::engine::Outcome {
        self.drill.command(argv)
    }

    fn deliver(&self, message: phasegate::actions::standin::Captured) -> Result<(), String> {
        self.drill.deliver(message)
    }
}

/// One browser, which the people of the response take turns at: each signs in through the form.
struct Desk {
    browser: Browser,
    base: String,
    incident: String,
    person: Option<&'static str>,
    shots: usize,
    /// When the walk began, for the times printed beside each page kept.
    started: std::time::Instant,
}

impl Desk {
    /// Signs out whoever is signed in, and signs `person` in with their token.
    async fn sign_in(&mut self, person: &'static str) -> bool {
        if self.person == Some(person) {
            return false;
        }
        // The next person takes over the browser as a fresh one: without the last one's cookie.
        // The last page goes first: its live script has no business with the next person.
        self.browser.open("about:blank").await;
        self.browser.client.delete_all_cookies().await.unwrap();
        let next =
            if self.incident.is_empty() { "/incidents".to_string() } else { format!("/incidents/{}", self.incident) };
        self.browser.open(&format!("{}/signin?next={next}", self.base)).await;
        self.browser.fill("#token", &token(person)).await;
        self.browser.submit("#signin-form").await;
        let landed = format!("location.pathname === {next:?} && document.querySelector('.who')");
        self.browser.wait_for("the page signing in leads to", &landed).await;
        assert_eq!(self.browser.text(".who").await, format!("Signed in as {person}"));
        self.person = Some(person);
        true
    }

    /// Signs `person` in, onto the incident's page (opened again when they were signed in already).
    async fn as_(&mut self, person: &'static str) {
        if !self.sign_in(person).await {
            self.page().await;
        }
    }

    async fn page(&self) {
        self.browser.open(&format!("{}/incidents/{}", self.base, self.incident)).await;
    }

    /// Checks the page with axe and keeps its screenshot, numbered in the walk's order.
    async fn keep(&mut self, name: &str) {
        self.shots += 1;
        eprintln!("{:>6.1}s {name}", self.started.elapsed().as_secs_f64());
        check(&self.browser, &format!("walk-{:02}-{name}", self.shots)).await;
    }

    /// What the page says blocks the incident: each blocker's text, by its element's id.
    async fn blocking(&self) -> Vec<(String, String)> {
        let found = self
            .browser
            .script(
                "return [...document.querySelectorAll('#live-blocking li.blocker')]
                   .map(li => [li.id.replace(/^blocker-/, ''), li.innerText.replace(/\\s+/g, ' ')]);",
            )
            .await;
        serde_json::from_value(found).unwrap()
    }

    /// The page says `phase`'s `what` blocks the incident, and that exactly `people` can unblock it.
    async fn blocked_by(&self, phase: &str, what: &str, people: &[&str]) {
        let id = slug(&format!("{phase}-{what}"));
        let blocking = self.blocking().await;
        let Some((_, text)) = blocking.iter().find(|(found, _)| *found == id) else {
            panic!("the page does not say `{phase}` waits for `{what}`: {blocking:#?}")
        };
        let who = text.split("Who can unblock it: ").nth(1).unwrap_or_else(|| panic!("no one named: {text}"));
        let named: Vec<&str> = who.split([',', ' ']).filter(|word| word.contains('.')).collect();
        let mut expected = people.to_vec();
        expected.sort_unstable();
        assert_eq!(named, expected, "who can unblock `{phase}/{what}`: {text}");
    }

    /// The phase graph says `phase` (by its title) is in `state`, waiting for the live page.
    async fn phase_is(&self, title: &str, state: &str) {
        let condition = format!(
            "document.getElementById('phases-graph-title')?.textContent.includes({:?})",
            format!("{title} {state};")
        );
        self.browser.wait_for_within(&format!("`{title}` to be {state}"), &condition, Duration::from_secs(20)).await;
    }

    /// Waits (on the live page) until the element `id` is there.
    async fn offered(&self, id: &str) {
        let condition = format!("document.getElementById({id:?})");
        self.browser.wait_for_within(&format!("#{id} to be offered"), &condition, Duration::from_secs(20)).await;
    }

    /// Types into the form's fields and presses its button. The page follows the incident live,
    /// swapping its regions as events arrive, but not one that holds the focus: each field is
    /// focused by script before it is typed into, so what is typed is not lost between.
    async fn act(&self, button: &str, fields: &[(&str, &str)]) -> String {
        self.offered(button).await;
        for (field, text) in fields {
            type_into(&self.browser, &format!("#{field}"), text).await;
        }
        // The button is in the region that holds the focus, which a live update leaves alone.
        self.browser.click(&format!("#{button}")).await;
        flash(&self.browser).await
    }

    /// The text of the element `css` selects, read in one script (a live update may replace it
    /// between finding it and reading it otherwise).
    async fn text(&self, css: &str) -> String {
        let script = format!("return document.querySelector({css:?})?.innerText ?? null;");
        match self.browser.script(&script).await {
            Value::String(text) => text,
            other => panic!("no {css} on the page: {other}"),
        }
    }

    /// Marks a manual step done with evidence and outputs, as its assignee.
    async fn done(&mut self, person: &'static str, phase: &str, step: &str, outputs: &[(&str, &str)]) {
        self.as_(person).await;
        let id = slug(&format!("{phase}-{step}"));
        let mut fields = vec![(format!("evidence-{id}"), format!("{step}: see the ticket"))];
        fields.extend(outputs.iter().map(|(name, value)| (format!("output-{id}-{name}"), value.to_string())));
        let fields: Vec<(&str, &str)> = fields.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let said = self.act(&format!("done-{id}"), &fields).await;
        assert_eq!(said, format!("Step `{phase}/{step}` marked done."), "{person}");
    }

    async fn approve(&mut self, person: &'static str, phase: &str, gate: &str) {
        self.as_(person).await;
        let id = slug(&format!("{phase}-{gate}"));
        let note = format!("approve-note-{id}");
        let said = self.act(&format!("approve-{id}"), &[(&note, "agreed on the bridge")]).await;
        assert_eq!(said, format!("Approved `{phase}/{gate}`."), "{person}");
    }

    /// The page offers `person` no form with the id `id`.
    async fn not_offered(&mut self, person: &'static str, id: &str) {
        self.as_(person).await;
        let script = format!("return document.getElementById({id:?}) === null;");
        assert_eq!(self.browser.script(&script).await, Value::Bool(true), "#{id} is offered to {person}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_runbook_runs_from_the_start_form_to_closed_in_the_browser_alone() {
    let shop = Shop::open().await;
    let Some(browser) = Browser::open_or_skip().await else { return shop.serving.stop().await };
    let base = shop.serving.base.clone();
    let mut desk = Desk {
        browser,
        base: base.clone(),
        incident: String::new(),
        person: None,
        shots: 0,
        started: std::time::Instant::now(),
    };

    // Dana, the head of incident response, declares it from the start form.
    desk.sign_in("dana.ito").await;
    desk.browser.click("#start-incident").await;
    desk.browser.wait_for("the start form", "document.getElementById('start-runbook')").await;
    desk.browser.open(&format!("{base}/incidents/new?runbook=retail-breach")).await;
    desk.browser.fill("#input-alert-name", "LoyaltyDbBulkRead").await;
    desk.browser.fill("#input-suspected-hosts", "shop-web-03,loyalty-api-01").await;
    desk.browser.fill("#input-member-list", &shop.dir.path().join("members.jsonl").to_string_lossy()).await;
    desk.browser.script("document.getElementById('input-severity').value = 'critical'; return null;").await;
    desk.browser.fill("#start-key", "retail-breach/uk-retail").await;
    desk.keep("start-form").await;
    desk.browser.click("#start-submit").await;
    let said = flash(&desk.browser).await;
    let id = said
        .strip_prefix("Incident `")
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();
    assert_eq!(said, format!("Incident `{id}` started from runbook `retail-breach`."));
    desk.incident = id.clone();

    // Triage: the bridge and the scoping are people's; the legal hold and the kick-off go by themselves.
    desk.phase_is("Triage and mobilise", "running").await;
    desk.blocked_by("triage", "triage/mobilise", &["dana.ito"]).await;
    desk.blocked_by("triage", "triage/scope-assessment", &["chris.doyle", "dana.ito"]).await;
    desk.keep("triage").await;
    desk.not_offered("tom.reyes", "close-submit").await;
    desk.done("dana.ito", "triage", "mobilise", &[]).await;
    let scoping = [
        ("idp_compromised", "yes"),
        ("card_data_in_scope", "no"),
        ("payment_switch_isolated", "no"),
        ("records_accessed_estimate", "2100000"),
    ];
    desk.done("chris.doyle", "triage", "scope-assessment", &scoping).await;
    desk.phase_is("Triage and mobilise", "done").await;
    desk.phase_is("Card-scheme and acquirer notification (PCI DSS)", "skipped").await;

    // Keeping the stores trading: the CISO (not Dana, who declared it: four-eyes) and the head of
    // store operations accept the risk.
    desk.page().await;
    desk.blocked_by("relax-controls", "ciso-approval", &["lee.marsh", "sam.okafor"]).await;
    desk.blocked_by("relax-controls", "business-approval", &["kate.obi"]).await;
    desk.keep("relax-controls-waiting").await;
    desk.not_offered("dana.ito", "approve-relax-controls-ciso-approval").await;
    desk.approve("sam.okafor", "relax-controls", "ciso-approval").await;
    desk.approve("kate.obi", "relax-controls", "business-approval").await;
    desk.phase_is("Keep stores trading (relax controls)", "done").await;
    desk.browser
        .wait_for("the relaxations", "document.querySelectorAll('#live-relaxations li.open-box').length === 2")
        .await;
    // A relaxation the engine carried out after the approvals names the people who approved it.
    let relaxations = desk.text("#live-relaxations").await;
    assert!(relaxations.contains("Approved by sam.okafor (ciso, "), "{relaxations}");

    // Containment: three people's steps, then the EDR still reports hosts pending. The page
    // says who can cut the wait short, and Dana passes the check by hand; a SOC analyst signals
    // that the sweep came back clean.
    desk.done("ravi.shah", "contain", "quarantine-idp", &[]).await;
    desk.done("mei.lin", "contain", "rotate-credentials", &[]).await;
    desk.done("ana.costa", "contain", "preserve-evidence", &[]).await;
    desk.as_("dana.ito").await;
    desk.offered("gate-pass-contain-hosts-isolated").await;
    desk.blocked_by("contain", "hosts-isolated", &["chris.doyle", "dana.ito"]).await;
    desk.blocked_by("contain", "edr-sweep-clean", &["chris.doyle", "dana.ito"]).await;
    let check = desk.text("#check-contain-hosts-isolated").await;
    assert!(check.contains("waiting") && check.contains("not as expected: HTTP 200"), "{check}");
    desk.keep("contain-check-waiting").await;
    desk.not_offered("ravi.shah", "gate-pass-contain-hosts-isolated").await;
    desk.as_("dana.ito").await;
    let evidence = "EDR console: 14 of 14 hosts contained at 03:40 (the API lags)";
    let said =
        desk.act("gate-pass-contain-hosts-isolated", &[("gate-pass-evidence-contain-hosts-isolated", evidence)]).await;
    assert_eq!(said, "Gate `contain/hosts-isolated` passed by hand.");
    let said = desk
        .act("signal-contain-edr-sweep-clean", &[("signal-note-contain-edr-sweep-clean", "sweep 0 detections")])
        .await;
    assert_eq!(said, "Signalled `contain/edr-sweep-clean`.");
    desk.phase_is("Contain the intrusion", "done").await;

    // The regulator, in parallel.
    desk.done("priya.nair", "regulator-notification", "risk-assessment", &[("high_risk_to_individuals", "yes")]).await;
    desk.done("priya.nair", "regulator-notification", "submit-notification", &[]).await;
    desk.page().await;
    desk.blocked_by("regulator-notification", "dpo-signoff", &["jo.kim", "priya.nair"]).await;
    desk.approve("jo.kim", "regulator-notification", "dpo-signoff").await;
    desk.phase_is("Notify the supervisory authority (GDPR Art. 33)", "done").await;

    // Eradication.
    desk.done("ana.costa", "eradicate", "root-cause", &[("initial_access_vector", "unpatched shop plugin")]).await;
    desk.done("mei.lin", "eradicate", "remove-persistence", &[]).await;
    desk.done("finn.walsh", "eradicate", "patch-entry-point", &[]).await;
    desk.done("ravi.shah", "eradicate", "rebuild-idp", &[]).await;
    desk.done("chris.doyle", "eradicate", "threat-hunt", &[]).await;
    desk.page().await;
    desk.blocked_by("eradicate", "attacker-out", &["ana.costa"]).await;
    desk.approve("ana.costa", "eradicate", "attacker-out").await;
    desk.phase_is("Eradicate", "done").await;

    // Restore: Dana approves go-live; the deploys go by themselves, then people's checks.
    desk.page().await;
    desk.blocked_by("restore", "go-live-approval", &["dana.ito"]).await;
    desk.approve("dana.ito", "restore", "go-live-approval").await;
    // The pipeline was busy: the deploy waits for its next attempt, and the page says who need
    // not wait for it. Nadia (no `recover` role) is not offered it; Dana starts it now.
    desk.offered("retry-restore-deploy-shop").await;
    desk.blocked_by("restore", "restore/deploy-shop", &["chris.doyle", "dana.ito"]).await;
    let waiting = desk.text("#failed-restore-deploy-shop").await;
    assert!(waiting.contains("Attempt 1 failed") && waiting.contains("you need not wait"), "{waiting}");
    desk.keep("deploy-retrying").await;
    desk.not_offered("nadia.bell", "retry-restore-deploy-shop").await;
    desk.as_("dana.ito").await;
    let said = desk.act("retry-restore-deploy-shop", &[("retry-reason-restore-deploy-shop", "runners freed")]).await;
    assert_eq!(said, "Step `restore/deploy-shop` will be tried again.");
    desk.done("nadia.bell", "restore", "rotate-partner-keys", &[]).await;
    desk.done("finn.walsh", "restore", "smoke-test", &[]).await;
    desk.done("dana.ito", "restore", "heightened-monitoring", &[]).await;
    desk.phase_is("Restore the shop and the loyalty API", "done").await;

    // Reinstating MFA and every relaxed control, stronger.
    desk.done("ravi.shah", "reinstate-mfa", "enrol-fido2-badges", &[("enrolment_percent", "100")]).await;
    desk.done("ravi.shah", "reinstate-mfa", "retire-break-glass", &[]).await;
    desk.page().await;
    desk.blocked_by("reinstate-mfa", "ciso-signoff", &["lee.marsh", "sam.okafor"]).await;
    desk.browser
        .wait_for(
            "every relaxation closed",
            "document.querySelectorAll('#live-relaxations li.closed-box').length === 2",
        )
        .await;
    desk.keep("controls-reinstated").await;
    desk.approve("lee.marsh", "reinstate-mfa", "ciso-signoff").await;
    desk.phase_is("Reinstate MFA and every relaxed control, stronger", "done").await;

    // The public status page, previewed then sent by the communications lead only.
    desk.as_("tom.reyes").await;
    desk.browser.click("#preview-public").await;
    desk.browser.wait_for("the preview", "document.getElementById('send-update')").await;
    let preview = desk.text("main").await;
    assert!(preview.contains("Harbour & Hale") || preview.contains("Security incident"), "{preview}");
    desk.keep("public-update-preview").await;
    desk.browser.click("#send-update").await;
    assert_eq!(flash(&desk.browser).await, "Status update to `public` queued; the runtime sends it.");
    desk.sign_in("chris.doyle").await;
    desk.browser.open(&format!("{base}/incidents/{id}/updates/public")).await;
    assert_eq!(desk.browser.script("return document.getElementById('send-update') === null;").await, Value::Bool(true));

    // The loyalty members: Legal and the DPO approve the notice (neither the one who declared
    // it), the list is built, the contact centre briefed, then the campaign sends by itself.
    desk.page().await;
    desk.blocked_by("notify-customers", "legal-approval", &["jo.kim", "omar.haddad"]).await;
    desk.blocked_by("notify-customers", "dpo-approval", &["jo.kim", "priya.nair"]).await;
    desk.approve("omar.haddad", "notify-customers", "legal-approval").await;
    desk.approve("priya.nair", "notify-customers", "dpo-approval").await;
    desk.done("nadia.bell", "notify-customers", "build-recipient-list", &[("recipient_count", "3")]).await;
    desk.done("ella.moss", "notify-customers", "brief-contact-centre", &[]).await;
    desk.as_("tom.reyes").await;
    desk.browser
        .wait_for_within(
            "the campaign to finish",
            "document.querySelector('#campaign-notify-customers-send-apology')?.textContent.includes('3 sent')",
            Duration::from_secs(20),
        )
        .await;
    desk.keep("campaign-sent").await;
    desk.done("tom.reyes", "notify-customers", "monitor-campaign", &[]).await;
    desk.done("tom.reyes", "notify-customers", "press-briefing", &[]).await;
    desk.phase_is("Notify loyalty members with an apology and a goodwill offer", "done").await;

    // Close-out: the reviews are people's, the evidence archive goes by itself, the CISO approves.
    desk.done("dana.ito", "close-out", "post-incident-review", &[]).await;
    desk.done("sam.okafor", "close-out", "board-report", &[]).await;
    desk.page().await;
    desk.blocked_by("close-out", "close-approval", &["lee.marsh", "sam.okafor"]).await;
    desk.approve("sam.okafor", "close-out", "close-approval").await;
    desk.phase_is("Close-out and lessons learned", "done").await;

    // Closing: offered to the incident commander only.
    desk.not_offered("sam.okafor", "close-submit").await;
    desk.as_("dana.ito").await;
    assert_eq!(desk.blocking().await, Vec::new(), "nothing blocks it");
    let said = desk.act("close-submit", &[("close-note", "PIR actions tracked in RB-2026")]).await;
    assert_eq!(said, "Incident closed.");
    assert!(desk.text("#live-status").await.contains("closed"), "the page says it is closed");
    desk.keep("closed").await;
    desk.browser.open(&format!("{base}/incidents/{id}/audit")).await;
    let audit = desk.text("main").await;
    assert!(audit.contains("Verdict: verified"), "{audit}");
    let closed = audit.split("Closed").nth(1).is_some_and(|rest| rest.trim_start().starts_with("yes"));
    assert!(closed, "a closed incident's audit says so:\n{audit}");
    desk.keep("audit").await;
    shop.serving.stop().await;
}
