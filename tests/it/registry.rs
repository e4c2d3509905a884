//! The runbook registry (issue 13): the configured runbooks are loaded once, `serve`'s API and its
//! webhook inbox ask the same registry, an unknown id is answered with the nearest one, and a
//! file that does not validate or shares its id is left out with its problems located.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Cli, Unreachable, answer};

const TOKEN: &str = "pg_registry-test-token";

/// A small runbook with this id and a trigger listening to `edr`.
fn runbook(id: &str) -> String {
    format!(
        "apiVersion: phasegate/v1\nkind: Runbook\nid: {id}\ntitle: Lost laptop\nroles:\n  soc-analyst: {{}}\n\
         phases:\n  - id: contain\n    title: Contain\n    steps:\n      - id: wipe\n        \
         manual: {{ instructions: Wipe the laptop remotely, assignee: soc-analyst }}\n\
         triggers:\n  - {{ id: stolen, source: edr, key: payload.case, start: {{}} }}\n"
    )
}

/// A configuration over `dir/books`: one valid runbook (`lost-laptop`), two files sharing the id
/// `shared`, and one that does not validate (`broken`, its `phases` empty at line 5).
fn desk(dir: &Path) -> std::path::PathBuf {
    let books = dir.join("books");
    std::fs::create_dir(&books).unwrap();
    std::fs::write(books.join("lost-laptop.yaml"), runbook("lost-laptop")).unwrap();
    std::fs::write(books.join("shared-a.yaml"), runbook("shared")).unwrap();
    std::fs::write(books.join("shared-b.yml"), runbook("shared")).unwrap();
    std::fs::write(
        books.join("broken.yaml"),
        "apiVersion: phasegate/v1\nkind: Runbook\nid: broken\ntitle: B\nphases: []\n",
    )
    .unwrap();
    std::fs::write(books.join("notes.txt"), "not a runbook").unwrap();
    let config = dir.join("phasegate.yaml");
    std::fs::write(
        &config,
        format!(
            "database: phasegate.db\nrunbooks: books\npeople:\n  dana.ito: {{ roles: [soc-analyst] }}\n\
             server:\n  tokens:\n    dana: {{ person: dana.ito, sha256: {} }}\n",
            phasegate::engine::decide::sha256_hex(TOKEN)
        ),
    )
    .unwrap();
    config
}

async fn call(client: &reqwest::Client, base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    answer(request.send().await.unwrap()).await
}

/// The API and the inbox share one registry, loaded when the server starts: a runbook file
/// removed afterwards is still found by id, and nothing is read per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_inbox_ask_one_registry_loaded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = phasegate::config::Config::load(Some(&desk(dir.path())), &Default::default()).unwrap();
    let store = phasegate::store::SqliteStore::open(&config.database).await.unwrap();
    let runtime =
        phasegate::runtime::Runtime::new(store, phasegate::render::Catalog::built_in(), config.directory.clone());
    let app = Arc::new(phasegate::server::App::new(runtime, config).unwrap());
    assert!(Arc::ptr_eq(&app.runbooks, app.inbox.runbooks()), "the inbox's triggers are the API's runbooks");
    let armed: Vec<&str> = app.runbooks.triggers().map(|(entry, _)| entry.runbook().id()).collect();
    assert_eq!(armed, ["lost-laptop"], "only the valid runbook alone with its id is armed");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = Arc::clone(&app);
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        phasegate::server::serve(serving, Arc::new(Unreachable), listener, Duration::from_millis(50), shutdown)
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();

    // Loaded at start: the file's removal is seen at the next start, not now.
    std::fs::remove_file(dir.path().join("books/lost-laptop.yaml")).unwrap();
    let (status, started) =
        call(&client, &base, "POST", "/api/v1/incidents", Some(json!({ "runbook": "lost-laptop" }))).await;
    assert_eq!((status, &started["runbook_id"]), (201, &json!("lost-laptop")), "{started}");
    let (status, one) = call(&client, &base, "GET", "/api/v1/runbooks/lost-laptop", None).await;
    assert_eq!((status, &one["id"]), (200, &json!("lost-laptop")), "{one}");

    let refused = [
        (
            "lost-lapt0p",
            404,
            "not_found",
            "no runbook `lost-lapt0p` among the configured runbooks; did you mean `lost-laptop`?",
        ),
        ("banana", 404, "not_found", "no runbook `banana` among the configured runbooks"),
        (
            "shared",
            422,
            "invalid_runbook",
            "runbook id `shared` is used by several files (`shared-a.yaml`, `shared-b.yml`); ids must be unique",
        ),
        (
            "broken",
            422,
            "invalid_runbook",
            "runbook `broken` does not validate (1 problem(s) in `broken.yaml`; `GET /api/v1/runbooks` lists them)",
        ),
    ];
    for (id, status, code, message) in refused {
        let (got, body) = call(&client, &base, "POST", "/api/v1/incidents", Some(json!({ "runbook": id }))).await;
        assert_eq!((got, &body["error"]["code"], &body["error"]["message"]), (status, &json!(code), &json!(message)));
        let (got, body) = call(&client, &base, "GET", &format!("/api/v1/runbooks/{id}"), None).await;
        assert_eq!((got, &body["error"]["message"]), (status, &json!(message)), "GET answers as POST does");
    }
    let (_, list) = call(&client, &base, "GET", "/api/v1/incidents", None).await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1, "no refusal started anything: {list}");

    let (_, listed) = call(&client, &base, "GET", "/api/v1/runbooks", None).await;
    let told: Vec<(Value, Value, Value, Value)> = listed["runbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            let first = &file["diagnostics"][0];
            let place =
                if first.is_null() { json!(null) } else { json!([first["code"], first["line"], first["column"]]) };
            (file["file"].clone(), file["id"].clone(), file["valid"].clone(), place)
        })
        .collect();
    assert_eq!(
        told,
        [
            (json!("broken.yaml"), json!("broken"), json!(false), json!(["RB0024", 5, 9])),
            (json!("lost-laptop.yaml"), json!("lost-laptop"), json!(true), json!(null)),
            (json!("shared-a.yaml"), json!("shared"), json!(false), json!(["RB0020", 3, 5])),
            (json!("shared-b.yml"), json!("shared"), json!(false), json!(["RB0020", 3, 5])),
        ],
        "{listed}"
    );
    let _ = stop.send(());
    task.await.unwrap();
}

/// `phasegate start` finds a runbook by id in the same registry, and a misspelt id is answered
/// with the nearest one.
#[test]
fn the_cli_starts_by_id_and_suggests_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path());
    let start = |id: &str| Cli::new().current_dir(dir.path()).args(["start", id, "--as", "dana.ito"]);
    start("lost-laptop").succeeds();
    start("lost-lapotp").status(2).stderr_has("`lost-lapotp` is not a file, and no runbook `lost-lapotp` in `");
    start("lost-lapotp").status(2).stderr_has("; did you mean `lost-laptop`?");
    start("shared").status(1).stderr_has("shared-a.yaml:3:5: error[RB0020]: runbook id `shared` is also used by");
    start("broken").status(1).stderr_has("broken.yaml:5:9: error[RB0024]");
}

/// Regression: `run` set up no logger, so a runbook file it refused was never shown.
#[test]
fn run_names_the_runbook_files_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    desk(dir.path());
    Cli::new()
        .current_dir(dir.path())
        .args(["run"])
        .succeeds()
        .stderr_has("broken.yaml:5:9: error[RB0024]")
        .stderr_has("shared-a.yaml:3:5: error[RB0020]");
}
