//! The timeline on an incident's page, read from the store a page at a time: every page of all
//! kinds and of one kind holds the log's events newest first, fifty a page, with the log's counts
//! by kind; and the API's timeline takes the same filter, paging on with its cursor.

use serde_json::json;

use super::{DANA, Dashboard};

/// What a page's timeline shows: `total` of `all` events, page `page` of `pages`, its entries
/// (position and kind) and the counts by kind its filter offers.
#[derive(Debug, PartialEq)]
struct Shown {
    total: u64,
    all: u64,
    page: usize,
    pages: usize,
    entries: Vec<(u64, String)>,
    counts: Vec<(String, u64)>,
}

fn between<'a>(text: &'a str, before: &str, after: &str) -> Option<(&'a str, &'a str)> {
    let start = text.find(before)? + before.len();
    let end = start + text[start..].find(after)?;
    Some((&text[start..end], &text[end + after.len()..]))
}

fn shown(html: &str) -> Shown {
    let (_, timeline) = html.split_once("id=\"live-timeline\"").expect("the timeline's section");
    let (counted, _) = between(timeline, "<span class=\"muted small\">", " events, newest first").unwrap();
    let (total, all) = counted.split_once(" of ").unwrap();
    let (mut counts, mut rest) = (Vec::new(), between(timeline, "<option value=\"all\">", "").unwrap().1);
    while let Some((option, after)) = between(rest, "<option value=\"", "</option>") {
        let (kind, label) = option.split_once('"').unwrap();
        let count = label.rsplit_once('(').unwrap().1.trim_end_matches(')');
        counts.push((kind.to_string(), count.parse().unwrap()));
        rest = after;
    }
    let mut entries = Vec::new();
    let mut rest = timeline;
    while let Some((kind, after)) = between(rest, "<li class=\"event kind-", "\">") {
        let (seq, after) = between(after, "<span class=\"seq\">#", "</span>").unwrap();
        entries.push((seq.parse().unwrap(), kind.to_string()));
        rest = after;
    }
    let (pager, _) = between(timeline, "<span>Page ", "</span>").unwrap();
    let (page, pages) = pager.split_once(" of ").unwrap();
    Shown {
        total: total.parse().unwrap(),
        all: all.parse().unwrap(),
        page: page.parse().unwrap(),
        pages: pages.parse().unwrap(),
        entries,
        counts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_pages_through_the_log_newest_first_of_one_kind_or_all() {
    let dashboard = Dashboard::start().await;
    let id = dashboard.start_incident().await;
    for n in 0..70 {
        let note = dashboard
            .client
            .post(format!("{}/api/v1/incidents/{id}/notes", dashboard.base))
            .bearer_auth(DANA)
            .header("content-type", "application/json")
            .body(json!({ "text": format!("note {n}") }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(note.status(), 200);
    }
    let mut dana = dashboard.sign_in(DANA).await;
    // Kind (empty: all), page asked, page shown.
    let views = [
        ("", 1, 1),
        ("", 2, 2),
        ("", 99, 2),
        ("note_added", 1, 1),
        ("note_added", 2, 2),
        ("note_added", 5, 2),
        ("phase_started", 1, 1),
        ("incident_started", 1, 1),
        ("no_such_kind", 3, 1),
    ];
    for (kind, asked, page) in views {
        let path = format!("/incidents/{id}?kind={kind}&page={asked}");
        let (status, _, html) = dana.get(&path).await;
        assert_eq!(status, 200, "{path}");
        let shown = shown(&html);
        // The log as the API gives it, as far as the page's version (the runtime may have
        // appended since): what the page must show, worked out from it.
        let log = dashboard.api(&format!("/api/v1/incidents/{id}/timeline?limit=1000")).await;
        let log: Vec<(u64, String)> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (entry["seq"].as_u64().unwrap(), entry["event"]["event"]["type"].as_str().unwrap().to_string())
            })
            .take_while(|(seq, _)| *seq <= shown.all)
            .collect();
        assert_eq!(log.len() as u64, shown.all, "{path}: every event of the log is counted");
        assert!(shown.all > 70, "{path}: the notes and the runtime's own events");
        let matching: Vec<(u64, String)> =
            log.iter().rev().filter(|(_, type_)| kind.is_empty() || type_ == kind).cloned().collect();
        let pages = matching.len().div_ceil(50).max(1);
        let mut counts: Vec<(String, u64)> = Vec::new();
        for (_, type_) in &log {
            match counts.iter_mut().find(|(counted, _)| counted == type_) {
                Some((_, count)) => *count += 1,
                None => counts.push((type_.clone(), 1)),
            }
        }
        counts.sort();
        let expected = Shown {
            total: matching.len() as u64,
            all: log.len() as u64,
            page,
            pages,
            entries: matching.into_iter().skip((page - 1) * 50).take(50).collect(),
            counts,
        };
        assert_eq!(shown, expected, "{path}");
    }
    assert_eq!(shown(&dana.get(&format!("/incidents/{id}?kind=note_added&page=2")).await.2).entries.len(), 20);

    // The API pages through one kind with its cursor.
    let mut after = 0;
    let mut notes = Vec::new();
    loop {
        let page =
            dashboard.api(&format!("/api/v1/incidents/{id}/timeline?kind=note_added&limit=30&after={after}")).await;
        for entry in page["events"].as_array().unwrap() {
            assert_eq!(entry["event"]["event"]["type"], "note_added");
            notes.push((entry["seq"].as_u64().unwrap(), entry["event"]["reason"].as_str().unwrap().to_string()));
        }
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(notes.len(), 70);
    assert!(notes.windows(2).all(|pair| pair[0].0 < pair[1].0), "oldest first: {notes:?}");
    assert_eq!(
        notes.iter().map(|(_, text)| text.clone()).collect::<Vec<_>>(),
        (0..70).map(|n| format!("note {n}")).collect::<Vec<_>>()
    );
    for bad in ["%3Cscript%3E", "Note_Added", ""] {
        let response = dashboard
            .client
            .get(format!("{}/api/v1/incidents/{id}/timeline?kind={bad}", dashboard.base))
            .bearer_auth(DANA)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "kind `{bad}`");
    }
    dashboard.stop().await;
}
