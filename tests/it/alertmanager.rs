//! End to end with a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, which
//! `scripts/test` installs; without it the test skips, saying so): `amtool` fires an alert, Alertmanager posts it to the server with its
//! bearer token, and one incident opens; Alertmanager's repeats open no second one; `amtool`
//! resolves the alert and the resolution is recorded on the incident.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{program_or_skip, wait_until};
use crate::webhooks::{Hooks, TOKEN};

/// Where Alertmanager's programs are: on `PATH`, or where Debian's package puts them.
const ALERTMANAGER: &[&str] = &["prometheus-alertmanager", "alertmanager", "/usr/bin/prometheus-alertmanager"];
const AMTOOL: &[&str] = &["amtool", "/usr/bin/amtool"];
const INSTALL: &str = "`apt-get install prometheus-alertmanager`";

/// A port free now, for a process that binds it itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the Alertmanager when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_amtool(amtool: &Path, url: &str, args: &[&str]) {
    let output =
        Command::new(amtool).args(args).arg(format!("--alertmanager.url={url}")).output().expect("amtool runs");
    assert!(output.status.success(), "amtool {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_opens_one_incident_and_records_the_resolution() {
    let Some(alertmanager) = program_or_skip(ALERTMANAGER, "Prometheus Alertmanager", INSTALL) else { return };
    let Some(amtool_path) = program_or_skip(AMTOOL, "Alertmanager's `amtool`", INSTALL) else { return };
    let amtool = |url: &str, args: &[&str]| run_amtool(&amtool_path, url, args);
    let hooks = Hooks::start("127.0.0.1:0").await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = hooks.dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: phasegate\n  group_by: [alertname, estate]\n  group_wait: 1s\n  group_interval: 1s\n  \
             repeat_interval: 2s\nreceivers:\n  - name: phasegate\n    webhook_configs:\n      - url: {}/hooks/alertmanager\n        \
             send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            \
             credentials: {TOKEN}\n",
            hooks.base
        ),
    )
    .unwrap();
    let storage = hooks.dir.path().join("alertmanager-data");
    let _alertmanager = Running(
        Command::new(&alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Alertmanager starts"),
    );
    let client = reqwest::Client::new();
    wait_until(&format!("the Alertmanager up on {url}"), Duration::from_secs(30), async || {
        client.get(format!("{url}/-/ready")).send().await.is_ok_and(|response| response.status().is_success())
    })
    .await;

    let labels = ["alertname=LoyaltyDbBulkRead", "estate=uk-retail", "severity=critical"];
    amtool(&url, &[&["alert", "add"][..], &labels[..], &["--annotation=summary=bulk read"]].concat());
    wait_until("an incident opened from the alert", Duration::from_secs(30), async || {
        !hooks.incidents().await.is_empty()
    })
    .await;

    // The same alert again, and Alertmanager's own repeats (every 2s): still one incident.
    amtool(&url, &[&["alert", "add"][..], &labels[..]].concat());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(hooks.incidents().await.len(), 1, "a repeat opens no second incident");

    // Resolve it: an end time in the past.
    let ended = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    amtool(&url, &[&["alert", "add"][..], &labels[..], &[format!("--end={ended}").as_str()]].concat());
    wait_until("the resolution recorded on the incident", Duration::from_secs(30), async || {
        let incidents = hooks.incidents().await;
        let log = &incidents[0].1;
        match log
            .iter()
            .any(|event| event.reason.as_deref().is_some_and(|r| r.starts_with("LoyaltyDbBulkRead resolved")))
        {
            true => Ok(()),
            false => Err(format!("{:?}", log.iter().map(|e| e.summary()).collect::<Vec<_>>())),
        }
    })
    .await;
    let incidents = hooks.incidents().await;
    assert_eq!(incidents.len(), 1);
    assert!(incidents[0].1[0].actor.starts_with("trigger:"));
    hooks.stop().await;
}
