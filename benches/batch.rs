//! Batch HTTP's own cost: `cargo bench --bench batch` prints a Markdown table for BENCHMARKS.md.
//!
//! Messages shaped like the reference customer notice (a text part of about 3 KB and an HTML part
//! of about 5 KB, with quotes and line breaks to escape, each recipient's own id, address and
//! code), in batches of 1000. (a) Writing the request body: one thread, nothing else. (b) Sending:
//! `BatchHttp` POSTing to a sink on loopback that reads each body whole and answers 202, with 4
//! batches in flight, as the campaign runner keeps them; the sink shares the machine's cores.
//! The rendering, the store and the recipient list are not in it: those are measured with the
//! campaign as a whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use phasegate::actions::campaign::batch::{BatchHttp, body};
use phasegate::actions::campaign::{Answer, Batch, Message};

const BATCH: usize = 1000;
const IN_FLIGHT: usize = 4;

fn message(number: usize) -> Message {
    let id = format!("M{number:08}");
    let paragraph = "We are writing to tell you about a security incident that affected the \"Harbour & Hale\" \
                     loyalty programme. Your name, email address and points balance may have been seen.\n";
    let text = format!("Dear member {id},\n\n{}\nYour goodwill code: X7K-{number:06}\n", paragraph.repeat(14));
    let html = format!(
        "<html><body><p class=\"greeting\">Dear member {id},</p>{}<p>Your goodwill code: <b>X7K-{number:06}</b></p></body></html>",
        format!("<p style=\"margin:0 0 1em\">{}</p>\n", paragraph.trim_end()).repeat(22)
    );
    Message {
        id,
        to: format!("member{number}@members.example"),
        subject: "About your Harbour & Hale account".to_string(),
        text,
        html: Some(html),
    }
}

fn batches(count: usize) -> Vec<Vec<Message>> {
    (0..count).map(|batch| (0..BATCH).map(|i| message(batch * BATCH + i)).collect()).collect()
}

async fn sink(State(bytes): State<Arc<AtomicU64>>, body: Bytes) -> StatusCode {
    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    StatusCode::ACCEPTED
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let prepared = batches(20);
    let size: usize = prepared[0].iter().map(|m| m.text.len() + m.html.as_ref().map_or(0, String::len)).sum();
    println!(
        "messages of {:.1} KB on average (text and HTML), batches of {BATCH}\n",
        size as f64 / BATCH as f64 / 1024.0
    );

    // (a) The body alone, several rounds over the prepared batches.
    let rounds = 5;
    let started = Instant::now();
    let mut written = 0usize;
    for _ in 0..rounds {
        for (number, messages) in prepared.iter().enumerate() {
            let batch = Batch { campaign: "inc-1/notify/apology", number: number as u32 + 1, messages };
            written += std::hint::black_box(body(&batch)).len();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let messages = (rounds * prepared.len() * BATCH) as f64;
    println!("| what | messages | MB | seconds | messages/s | MB/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| body written (1 thread) | {messages:.0} | {:.0} | {elapsed:.2} | {:.0} | {:.0} |",
        written as f64 / 1e6,
        messages / elapsed,
        written as f64 / 1e6 / elapsed
    );

    // (b) Sent to a loopback sink, IN_FLIGHT batches at a time.
    runtime.block_on(async {
        let received = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/batches", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/batches", axum::routing::post(sink))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(Arc::clone(&received));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = reqwest::Client::new();
        let sender = Arc::new(BatchHttp::new(url, Vec::new(), &client, Duration::from_secs(60)).unwrap());
        let prepared = Arc::new(prepared);
        let rounds = 5;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for lane in 0..IN_FLIGHT {
            let sender = Arc::clone(&sender);
            let prepared = Arc::clone(&prepared);
            tasks.push(tokio::spawn(async move {
                let mut sent = 0usize;
                for round in 0..rounds {
                    for (index, messages) in prepared.iter().enumerate().skip(lane).step_by(IN_FLIGHT) {
                        let number = (round * prepared.len() + index) as u32 + 1;
                        let batch = Batch { campaign: "inc-1/notify/apology", number, messages };
                        match sender.send(batch).await {
                            Answer::Accepted { .. } => sent += messages.len(),
                            Answer::Failed { error, .. } => panic!("{error}"),
                        }
                    }
                }
                sent
            }));
        }
        let mut sent = 0;
        for task in tasks {
            sent += task.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let megabytes = received.load(Ordering::Relaxed) as f64 / 1e6;
        println!(
            "| sent to a loopback sink ({IN_FLIGHT} in flight) | {sent} | {megabytes:.0} | {elapsed:.2} | {:.0} | {:.0} |",
            sent as f64 / elapsed,
            megabytes / elapsed
        );
    });
}
