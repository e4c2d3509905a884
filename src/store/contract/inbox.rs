//! The webhook inbox's part of the contract: deliveries kept as received, with their headers,
//! until applied.

use std::sync::Arc;

use super::{Append, at, started};
use crate::store::{Delivery, Headers, Store};

pub async fn received_deliveries_wait_in_the_inbox_until_applied(store: Arc<impl Store>) {
    let delivery =
        |id: &str, minutes| Delivery { source: "alertmanager".into(), id: id.into(), received_at: at(minutes) };
    assert!(store.receive(&delivery("d-1", 1), &Headers::new(), b"{\"first\": true}").await.unwrap());
    assert!(store.receive(&delivery("d-2", 2), &Headers::new(), b"\xff not text").await.unwrap());
    // A retry, even with another body, is the delivery already received.
    let changed = Headers::from([("x-env".to_string(), "test".to_string())]);
    assert!(!store.receive(&delivery("d-1", 3), &changed, b"{\"changed\": true}").await.unwrap());
    let other = Delivery { source: "github".into(), ..delivery("d-1", 4) };
    let headers = Headers::from([("x-env".to_string(), "prod".to_string()), ("user-agent".into(), "GitHub".into())]);
    assert!(
        store.receive(&other, &headers, b"{}").await.unwrap(),
        "the same id from another source is another delivery"
    );

    let waiting = store.inbox(10, 1 << 20).await.unwrap();
    let seen: Vec<(&str, &str, &[u8])> = waiting
        .iter()
        .map(|inbound| (inbound.delivery.source.as_str(), inbound.delivery.id.as_str(), inbound.body.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            ("alertmanager", "d-1", &b"{\"first\": true}"[..]),
            ("alertmanager", "d-2", &b"\xff not text"[..]),
            ("github", "d-1", &b"{}"[..]),
        ]
    );
    assert_eq!(waiting[0].delivery.received_at, at(1));
    // Headers come back as given; none given reads as none, and a retry's do not replace them.
    assert_eq!(
        [&waiting[0].headers, &waiting[1].headers, &waiting[2].headers],
        [&Headers::new(), &Headers::new(), &headers]
    );
    assert!(waiting[0].seq < waiting[1].seq && waiting[1].seq < waiting[2].seq);
    // Each delivery's actions have ids of their own, in the order received (so that storing them
    // writes in order), the same when the delivery is read again.
    assert!(waiting[0].actions < waiting[1].actions && waiting[1].actions < waiting[2].actions);
    assert_eq!(store.inbox(10, 1 << 20).await.unwrap(), waiting);
    assert_eq!(store.inbox(1, 1 << 20).await.unwrap().len(), 1);
    // Bodies of 15, 10 and 2 bytes: a page stops once they reach its bytes, but always has one.
    assert_eq!(store.inbox(10, 15).await.unwrap().len(), 1);
    assert_eq!(store.inbox(10, 16).await.unwrap().len(), 2);
    assert_eq!(store.inbox(10, 25).await.unwrap().len(), 2);
    assert_eq!(store.inbox(10, 26).await.unwrap().len(), 3);
    assert_eq!(store.inbox(10, 0).await.unwrap().len(), 1);
    assert_eq!(store.inbox_depth().await.unwrap(), 3);
    assert_eq!(store.receipt("alertmanager", "d-2").await.unwrap().unwrap().applied, None);

    store.applied(&[(waiting[0].seq, "[\"first\"]".into()), (waiting[2].seq, "[]".into())], None).await.unwrap();
    // Marking again keeps the first outcome.
    store.applied(&[(waiting[0].seq, "[\"again\"]".into())], None).await.unwrap();
    let left = store.inbox(10, 1 << 20).await.unwrap();
    assert_eq!(left.iter().map(|inbound| inbound.delivery.id.as_str()).collect::<Vec<_>>(), ["d-2"]);
    assert_eq!(store.inbox_depth().await.unwrap(), 1);
    let receipt = store.receipt("alertmanager", "d-1").await.unwrap().unwrap();
    assert_eq!(receipt.received_at, at(1));
    assert_eq!(receipt.applied.map(|(_, outcome)| outcome).as_deref(), Some("[\"first\"]"));
    assert!(
        !store.receive(&delivery("d-1", 5), &Headers::new(), b"{}").await.unwrap(),
        "an applied delivery is still known"
    );
    assert_eq!(store.receipt("alertmanager", "d-9").await.unwrap(), None);
}

pub async fn deliveries_received_together_are_each_answered(store: Arc<impl Store>) {
    // Sent at once, they share commits with each other and with appends.
    let mut tasks = Vec::new();
    for n in 0..200 {
        let receiving = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let delivery = Delivery { source: "storm".into(), id: format!("d-{}", n % 100), received_at: at(1) };
            receiving.receive(&delivery, &Headers::new(), format!("{n}").as_bytes()).await.unwrap()
        }));
        let appending = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let id = format!("inc-{n}");
            appending.append(Append::new(&id, 0, &[started(&id, "breach", None)])).await.is_ok()
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let new = answers.iter().step_by(2).filter(|new| **new).count();
    assert_eq!(new, 100, "each id is new once");
    assert!(answers.iter().skip(1).step_by(2).all(|stored| *stored), "every append was stored");
    assert_eq!(store.inbox_depth().await.unwrap(), 100);
    assert_eq!(store.incidents().await.unwrap().len(), 200);
}
