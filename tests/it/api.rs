//! What the REST API answers about incidents (issue 13): starting one answers with its summary,
//! the timeline comes a page at a time without the runbook text, phases come in the runbook's
//! order with the unreached ones, and the list says each incident's state and filters by it.
//! Every answer is held to the schema `/openapi.json` gives for it.

use serde_json::{Value, json};

use crate::server::{DANA, LEE, Server, TOM};
use crate::support::root;

/// The retail breach's phases as written in `runbooks/retail-breach.yaml`.
const PHASES: [&str; 10] = [
    "triage",
    "contain",
    "relax-controls",
    "eradicate",
    "restore",
    "reinstate-mfa",
    "card-scheme-notification",
    "regulator-notification",
    "notify-customers",
    "close-out",
];

/// Whether `value` has the shape `schema` gives it (`$ref`, `oneOf`, `type`, `enum`,
/// `properties`, `required`, `additionalProperties: false`, `items`), `at` naming where it is.
fn conforms(value: &Value, schema: &Value, spec: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.strip_prefix("#/components/schemas/").expect("a schema reference");
        let target = &spec["components"]["schemas"][name];
        assert!(target.is_object(), "the document has no schema `{name}`");
        return conforms(value, target, spec, at);
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        return match choices.iter().any(|choice| conforms(value, choice, spec, at).is_ok()) {
            true => Ok(()),
            false => Err(format!("{at}: {value} is none of {schema}")),
        };
    }
    let typed = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("boolean") => value.is_boolean(),
        Some("null") => value.is_null(),
        Some(other) => panic!("a type this check does not know: {other}"),
    };
    if !typed {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {}", schema["enum"]));
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: `{name}` is missing"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(property) => conforms(field, property, spec, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{at}: `{name}` is not in the document"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (index, element) in elements.iter().enumerate() {
            conforms(element, items, spec, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

fn string(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a string"))
}

/// Asserts that `answer` is what the document says `GET|POST path` answers with `status`.
async fn documented(server: &Server, method: &str, path: &str, status: &str, answer: &Value) {
    let (_, spec) = server.call("GET", "/openapi.json", None, None).await;
    let schema =
        &spec["paths"][path][method.to_lowercase()]["responses"][status]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "the document gives `{method} {path}` no schema for {status}");
    if let Err(problem) = conforms(answer, schema, &spec, "answer") {
        panic!("{method} {path} answers what the document does not say: {problem}");
    }
}

/// Starts the retail breach as Dana: the status, the `Location` header and the answer's text.
async fn start(server: &Server) -> (u16, Option<String>, String) {
    let response = server
        .client
        .post(format!("{}/api/v1/incidents", server.base))
        .bearer_auth(DANA)
        .header("content-type", "application/json")
        .body(json!({ "runbook": "retail-breach", "inputs": { "severity": "critical" } }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|value| value.to_str().unwrap().to_string());
    (status, location, response.text().await.unwrap())
}

async fn started(server: &Server) -> String {
    let (status, _, text) = start(server).await;
    assert_eq!(status, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"].as_str().unwrap().to_string()
}

/// `POST /api/v1/incidents` answered with every event the start decided, the 53 KB runbook text
/// among them: now with the incident's summary, its id first, as the list shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_incident_answers_with_its_summary() {
    let server = Server::start().await;
    let (status, location, text) = start(&server).await;
    assert_eq!(status, 201, "{text}");
    assert!(text.starts_with(r#"{"id":"#), "the id comes first: {text}");
    assert!(text.len() < 1000, "a summary, not the log: {} bytes", text.len());
    assert!(!text.contains("runbook_text") && !text.contains("apiVersion"), "no runbook text: {text}");
    let summary: Value = serde_json::from_str(&text).unwrap();
    let id = summary["id"].as_str().unwrap();
    assert_eq!(location.as_deref(), Some(format!("/api/v1/incidents/{id}").as_str()));
    assert_eq!((&summary["state"], &summary["runbook_id"]), (&json!("open"), &json!("retail-breach")));
    documented(&server, "POST", "/api/v1/incidents", "201", &summary).await;
    // The server's runtime may have carried out the start's first work since (its version and
    // head moved on): the list shows the same summary, of the same incident, at least as far on.
    let (_, list) = server.call("GET", "/api/v1/incidents", Some(DANA), None).await;
    let listed = &list["incidents"][0];
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1), "{list}");
    let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(listed), keys(&summary), "the summary the list shows");
    for field in ["id", "runbook_id", "key", "started_at", "state"] {
        assert_eq!(listed[field], summary[field], "{field}: the list shows {listed}");
    }
    assert!(listed["version"].as_u64() >= summary["version"].as_u64(), "{listed} after {summary}");
    server.stop().await;
}

async fn page(server: &Server, id: &str, query: &str) -> Value {
    let path = format!("/api/v1/incidents/{id}/timeline{query}");
    let (status, page) = server.call("GET", &path, Some(TOM), None).await;
    assert_eq!(status, 200, "{path}: {page}");
    assert!(!page.to_string().contains("runbook_text"), "{path} repeats the runbook text");
    documented(server, "GET", "/api/v1/incidents/{id}/timeline", "200", &page).await;
    page
}

/// The timeline was every event at once, the first with the runbook's whole text: now pages of
/// at most `limit` events after a cursor, `next` saying where the following page starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_comes_a_page_at_a_time_without_the_runbook_text() {
    let server = Server::start().await;
    let id = started(&server).await;
    for number in 1..=100 {
        let note = json!({ "text": format!("note {number}") }).to_string();
        let (status, _) = server.call("POST", &format!("/api/v1/incidents/{id}/notes"), Some(DANA), Some(note)).await;
        assert_eq!(status, 200);
    }
    let whole = page(&server, &id, "?limit=1000").await;
    let events = whole["events"].as_array().unwrap();
    let total = events.len();
    assert!(total > 100, "{total} events");
    assert_eq!(whole["next"], Value::Null, "one page holds them all");
    let seqs: Vec<u64> = events.iter().map(|entry| entry["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());

    // Following `next` from the start, seven at a time, gives the same events once each.
    let mut paged = Vec::new();
    let mut query = "?limit=7".to_string();
    loop {
        let page = page(&server, &id, &query).await;
        let entries = page["events"].as_array().unwrap();
        assert!(entries.len() <= 7);
        paged.extend(entries.iter().cloned());
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(next, entries.last().unwrap()["seq"], "next is the last seq of the page");
                query = format!("?after={next}&limit=7");
            }
            None => break,
        }
    }
    assert_eq!(&paged, events);

    // Without a limit, a page holds 100 events; after the end, none.
    let first = page(&server, &id, "").await;
    assert_eq!((first["events"].as_array().unwrap().len(), &first["next"]), (100, &json!(100)));
    let past = page(&server, &id, &format!("?after={total}")).await;
    assert_eq!((past["events"].as_array().unwrap().len(), &past["next"]), (0, &Value::Null));

    // The start names the runbook by its digest; the pinned text is one request away.
    let started = &events[0]["event"];
    assert_eq!(started["event"]["type"], "incident_started");
    let (status, pinned) = server.call("GET", &format!("/api/v1/incidents/{id}/runbook"), Some(TOM), None).await;
    assert_eq!(status, 200, "{pinned}");
    let text = std::fs::read_to_string(root().join("runbooks/retail-breach.yaml")).unwrap();
    assert_eq!(pinned["text"], text);
    assert_eq!(started["event"]["runbook_sha256"], phasegate::engine::decide::sha256_hex(&text));
    assert_eq!(pinned["sha256"], started["event"]["runbook_sha256"]);
    documented(&server, "GET", "/api/v1/incidents/{id}/runbook", "200", &pinned).await;
    server.stop().await;
}

/// A query parameter the route does not take, or a value out of its range, is 400
/// `invalid_query` naming the parameter and what it may be, for any caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_named_with_what_they_may_be() {
    let server = Server::start().await;
    let id = started(&server).await;
    let timeline = |query: &str| format!("/api/v1/incidents/{id}/timeline{query}");
    let cases: Vec<(String, &str)> = vec![
        (timeline("?limit=0"), "query parameter `limit` must be a whole number from 1 to 1000, not `0`"),
        (timeline("?limit=1001"), "query parameter `limit` must be a whole number from 1 to 1000, not `1001`"),
        (timeline("?limit=ten"), "query parameter `limit` must be a whole number from 1 to 1000, not `ten`"),
        (timeline("?after=-1"), "query parameter `after` must be a whole number 0 or more, not `-1`"),
        (timeline("?page=2"), "unknown query parameter `page`: this route takes `after`, `limit`, `kind`"),
        (timeline("?kind=Note"), "`kind` must be an event type such as `approval_given`"),
        (timeline("?limit=5&limit=6"), "query parameter `limit` is given twice"),
        (
            "/api/v1/incidents?state=opened".into(),
            "query parameter `state` must be one of `open`, `closed`, `all`, not `opened`",
        ),
        ("/api/v1/incidents?state=".into(), "query parameter `state` must be one of `open`, `closed`, `all`, not ``"),
        ("/api/v1/incidents?status=open".into(), "unknown query parameter `status`: this route takes `state`"),
        (
            format!("/api/v1/incidents/{id}/updates/internal?format=md"),
            "unknown query parameter `format`: this route takes `variant`",
        ),
    ];
    for (path, message) in cases {
        let (status, error) = server.call("GET", &path, Some(DANA), None).await;
        assert_eq!((status, &error["error"]["code"]), (400, &json!("invalid_query")), "{path}: {error}");
        assert_eq!(error["error"]["message"], message, "{path}");
    }
    let (status, error) = server.call("GET", "/api/v1/incidents/inc-404/timeline?limit=5", Some(DANA), None).await;
    assert_eq!((status, &error["error"]["code"]), (404, &json!("not_found")), "{error}");
    server.stop().await;
}

/// The phases came as a map keyed by id (alphabetical) holding only those the incident had
/// reached: now every phase of the runbook in its order, each with its gates and steps in theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_come_in_the_runbooks_order_with_the_unreached_ones() {
    let server = Server::start().await;
    let id = started(&server).await;
    let (status, board) = server.call("GET", &format!("/api/v1/incidents/{id}"), Some(TOM), None).await;
    assert_eq!(status, 200, "{board}");
    documented(&server, "GET", "/api/v1/incidents/{id}", "200", &board).await;
    let phases = board["incident"]["phases"].as_array().unwrap();
    let ids: Vec<&str> = phases.iter().map(|phase| phase["id"].as_str().unwrap()).collect();
    assert_eq!(ids, PHASES);

    // The steps in the order the file writes them, read from the YAML itself.
    let text = std::fs::read_to_string(root().join("runbooks/retail-breach.yaml")).unwrap();
    let written: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for (phase, shown) in written["phases"].as_sequence().unwrap().iter().zip(phases) {
        let steps: Vec<&str> =
            phase["steps"].as_sequence().unwrap().iter().map(|step| step["id"].as_str().unwrap()).collect();
        let listed: Vec<&str> =
            shown["steps"].as_array().unwrap().iter().map(|step| step["id"].as_str().unwrap()).collect();
        assert_eq!(listed, steps, "the steps of `{}`", shown["id"]);
    }
    // What each phase, gate and step is and where it stands, without times and ids.
    let outline: Vec<Value> = phases
        .iter()
        .map(|phase| {
            let gates: Vec<String> = phase["gates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    let passed = if g["passed_at"].is_null() { "" } else { " (passed)" };
                    format!("{} {} `{}`{passed}", string(&g["stage"]), string(&g["kind"]), string(&g["id"]))
                })
                .collect();
            let steps: Vec<String> = phase["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| format!("{} `{}`: {}", string(&s["kind"]), string(&s["id"]), string(&s["status"])))
                .collect();
            json!({ "id": phase["id"], "state": phase["state"], "needs": phase["needs"], "gates": gates, "steps": steps })
        })
        .collect();
    insta::assert_json_snapshot!(outline);

    // Once a step is done, what is set of its state is shown with it.
    let done = format!("/api/v1/incidents/{id}/phases/triage/steps/mobilise/done");
    let (status, _) =
        server.call("POST", &done, Some(DANA), Some(json!({"evidence": "bridge open"}).to_string())).await;
    assert_eq!(status, 200);
    let (_, board) = server.call("GET", &format!("/api/v1/incidents/{id}"), Some(TOM), None).await;
    let mobilise = &board["incident"]["phases"][0]["steps"][0];
    assert_eq!(
        (&mobilise["id"], &mobilise["status"], &mobilise["done_by"], &mobilise["evidence"]),
        (&json!("mobilise"), &json!("done"), &json!("dana.ito"), &json!("bridge open")),
        "{mobilise}"
    );
    assert!(mobilise["done_at"].is_string(), "{mobilise}");
    documented(&server, "GET", "/api/v1/incidents/{id}", "200", &board).await;
    server.stop().await;
}

/// The list showed every incident without saying which were closed: now each says its state, and
/// `?state=` chooses which are listed, the open ones unless asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_says_each_incidents_state_and_filters_by_it() {
    let server = Server::start().await;
    let abandoned = started(&server).await;
    let open = started(&server).await;
    let abandon = json!({ "abandon": true, "reason": "a drill, not a breach" }).to_string();
    let (status, answer) =
        server.call("POST", &format!("/api/v1/incidents/{abandoned}/close"), Some(LEE), Some(abandon)).await;
    assert_eq!(status, 200, "{answer}");

    let listed = |list: &Value| -> Vec<(String, String)> {
        let incidents = list["incidents"].as_array().unwrap();
        incidents.iter().map(|i| (i["id"].as_str().unwrap().into(), i["state"].as_str().unwrap().into())).collect()
    };
    let pair = |id: &str, state: &str| (id.to_string(), state.to_string());
    let cases = [
        ("", vec![pair(&open, "open")]),
        ("?state=open", vec![pair(&open, "open")]),
        ("?state=closed", vec![pair(&abandoned, "closed")]),
        ("?state=all", vec![pair(&abandoned, "closed"), pair(&open, "open")]),
    ];
    for (query, expected) in cases {
        let (status, list) = server.call("GET", &format!("/api/v1/incidents{query}"), Some(TOM), None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(listed(&list), expected, "`{query}`");
        documented(&server, "GET", "/api/v1/incidents", "200", &list).await;
    }
    let (_, closed) = server.call("GET", "/api/v1/incidents?state=closed", Some(DANA), None).await;
    assert!(closed["incidents"][0]["closed_at"].is_string(), "{closed}");
    server.stop().await;
}

/// Reading is for every configured person, whatever their roles (Tom holds none the runbook
/// gives rights to), and for nobody else: no token, or an unknown one, is 401 on every read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_token_reads_and_nobody_without_one() {
    let server = Server::start().await;
    let id = started(&server).await;
    let reads = [
        "/api/v1/incidents".to_string(),
        "/api/v1/incidents?state=all".into(),
        format!("/api/v1/incidents/{id}"),
        format!("/api/v1/incidents/{id}/timeline?after=1&limit=2"),
        format!("/api/v1/incidents/{id}/runbook"),
    ];
    for path in &reads {
        for token in [None, Some("pg_not-a-token")] {
            let (status, error) = server.call("GET", path, token, None).await;
            assert_eq!((status, &error["error"]["code"]), (401, &json!("unauthorized")), "{path} with {token:?}");
        }
        for token in [TOM, DANA, LEE] {
            let (status, answer) = server.call("GET", path, Some(token), None).await;
            assert_eq!(status, 200, "{path}: {answer}");
        }
    }
    // Refused before the query is read: a bad parameter without a token is still 401.
    let (status, _) = server.call("GET", "/api/v1/incidents?state=nope", None, None).await;
    assert_eq!(status, 401);
    server.stop().await;
}

/// The query parameters `/openapi.json` gives each route are the ones it takes: each is
/// accepted, and an undocumented one is refused naming exactly the documented ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_query_parameters_are_the_ones_taken() {
    let server = Server::start().await;
    let id = started(&server).await;
    let (_, spec) = server.call("GET", "/openapi.json", None, None).await;
    let examples = json!({ "state": "all", "after": "1", "limit": "2", "variant": "md", "kind": "note_added" });
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        let Some(get) = operations.get("get") else { continue };
        let names: Vec<&str> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        if names.is_empty() {
            continue;
        }
        let concrete = path.replace("{id}", &id).replace("{audience}", "internal");
        for name in &names {
            let (status, answer) = server
                .call("GET", &format!("{concrete}?{name}={}", examples[name].as_str().unwrap()), Some(DANA), None)
                .await;
            assert_eq!(status, 200, "{path}?{name}: {answer}");
        }
        let (status, error) = server.call("GET", &format!("{concrete}?undocumented=1"), Some(DANA), None).await;
        let takes = names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ");
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(
            error["error"]["message"],
            format!("unknown query parameter `undocumented`: this route takes {takes}")
        );
        checked += 1;
    }
    assert_eq!(checked, 3, "the list, the timeline and the rendered update take query parameters");
    server.stop().await;
}

/// `POST .../campaign/test` is for the runbook's `campaign` roles, to the configuration's
/// `campaigns.test_recipients` only; every refusal leaves the log as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_test_send_is_refused_to_others_and_outside_the_allowed_addresses() {
    let server = Server::start().await;
    let id = started(&server).await;
    let path = format!("/api/v1/incidents/{id}/phases/notify-customers/steps/send-apology/campaign/test");
    let (_, before) = server.call("GET", &format!("/api/v1/incidents/{id}/timeline"), Some(DANA), None).await;
    let body = |to: &str| Some(json!({ "to": [to], "sample": 1 }).to_string());
    // Tom is in communications, not among the runbook's `campaign` roles.
    let (status, answer) = server.call("POST", &path, Some(TOM), body("tom.reyes@harbour.example")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("missing_role")), "{answer}");
    // Dana may, but this configuration allows no test address at all.
    let (status, answer) = server.call("POST", &path, Some(DANA), body("member1@members.example")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("invalid_request")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("campaigns.test_recipients"), "{answer}");
    let (status, answer) = server.call("POST", &path, Some(DANA), Some(json!({ "to": [] }).to_string())).await;
    assert_eq!(status, 422, "{answer}");
    let unknown = format!("/api/v1/incidents/{id}/phases/notify-customers/steps/nothing/campaign/test");
    let (status, answer) = server.call("POST", &unknown, Some(DANA), body("x@harbour.example")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");
    // The runtime loop records what it does meanwhile (status updates); no test send among it.
    let (_, after) = server.call("GET", &format!("/api/v1/incidents/{id}/timeline"), Some(DANA), None).await;
    let tests = |timeline: &Value| {
        timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["event"]["type"] == "campaign_test_sent")
            .count()
    };
    assert!(after["events"].as_array().unwrap().len() >= before["events"].as_array().unwrap().len());
    assert_eq!(tests(&after), 0, "nothing recorded: {after}");
    server.stop().await;
}
