//! The incident page's campaign forms: a test send, the launch of a `test_first` step, pause,
//! resume and cancel, each decided by the runtime as the signed-in person (the runbook's
//! `campaign` right), as the API and the command line decide them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::Posted;
use super::incident::act;
use super::session::Flash;
use crate::engine::Command;
use crate::engine::command::CampaignAction;
use crate::server::App;
use crate::store::Store;

pub async fn campaign<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((id, phase, step, action)): Path<(String, String, String, String)>,
    posted: Posted,
) -> Response {
    let action = match action.as_str() {
        "launch" => CampaignAction::Launch,
        "pause" => CampaignAction::Pause,
        "resume" => CampaignAction::Resume,
        "cancel" => CampaignAction::Cancel,
        "test" => return campaign_test(&app, &posted, &id, &phase, &step).await,
        _ => {
            let why = "a campaign is test-sent (`test`), launched (`launch`), paused (`pause`), resumed (`resume`) \
                       or cancelled (`cancel`) from here";
            return app.not_found(Some(&posted.signed), why);
        }
    };
    let done = match action {
        CampaignAction::Cancel => {
            format!("Campaign `{phase}/{step}` cancelled: the batches in flight finish, then it stops.")
        }
        CampaignAction::Launch => format!("Campaign `{phase}/{step}`: launched."),
        _ => format!("Campaign `{phase}/{step}`: {}d.", action.as_str()),
    };
    let command = Command::Campaign { phase, step, action, reason: posted.fields.text("reason") };
    act(&app, &posted, &id, command, done).await
}

/// A campaign's test send from the page: the `to` field's addresses (separated by commas), one
/// recipient's messages, through the runtime as `POST .../campaign/test` sends it.
async fn campaign_test<S: Store>(app: &App<S>, posted: &Posted, id: &str, phase: &str, step: &str) -> Response {
    let to: Vec<String> = posted
        .fields
        .get("to")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_string)
        .collect();
    let actions = match app.actions() {
        Ok(actions) => actions,
        Err(error) => return app.runtime_error(&posted.signed, crate::runtime::Error::Campaign(error.to_string())),
    };
    let request = crate::runtime::campaign_test::TestRequest {
        incident: id,
        phase,
        step,
        actor: &posted.signed.person,
        to: &to,
        sample: 1,
    };
    let flash = match app.runtime.campaign_test(&actions, request).await {
        Ok(report) if report.test.went_out() => Flash::done(format!(
            "Test of campaign `{phase}/{step}` sent: {} of {} messages taken by the channel.",
            report.test.messages - report.test.refused,
            report.test.messages
        )),
        Ok(report) => Flash::refused(format!(
            "Test of campaign `{phase}/{step}` did not go out: {}",
            report.test.error.unwrap_or_else(|| "the channel refused every message".into())
        )),
        Err(crate::runtime::Error::Store(crate::store::Error::NotFound { .. })) => {
            let why = format!("there is no incident `{id}`");
            return app.error_page(StatusCode::NOT_FOUND, Some(&posted.signed), "Not found", &why);
        }
        Err(
            error @ (crate::runtime::Error::Refused(_)
            | crate::runtime::Error::BadRequest(_)
            | crate::runtime::Error::Campaign(_)
            | crate::runtime::Error::Contended { .. }),
        ) => Flash::refused(format!("Refused: {error}")),
        Err(error) => return app.runtime_error(&posted.signed, error),
    };
    app.sessions.flash(&posted.signed, flash);
    Redirect::to(&format!("/incidents/{}", super::url_encode(id))).into_response()
}
