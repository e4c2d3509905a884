//! Preparing a campaign's recipient list: `cargo bench --bench campaign_list` generates a JSON
//! Lines list like the reference member list (`LINES`, default 2,100,000, about 250 bytes a
//! line; kept under `target/campaign-list/` for the next run; `DIR` to put it elsewhere), then
//! times `campaign::plan::prepare` over it and reading every batch back with `read_batch`, and
//! prints the process's peak resident memory (`VmHWM`) after each.
//!
//! The list has a repeated member every 10,000 lines, a malformed address every 50,000, and a
//! suppression list of 10,000 members.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use phasegate::campaign::ListSpec;
use phasegate::campaign::plan;

const NAMES: &[&str] =
    &["Alexandra", "Mohammed", "Siobhan", "Oliver", "Priya", "Jack", "Zoë", "Wei", "Amelia", "Kwame"];
const LANGUAGES: &[&str] = &["en-GB", "en-GB", "en-GB", "cy-GB", "pl-PL", "ga-IE"];
const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];

fn line(number: u64) -> String {
    // A repeat of an earlier member every 10,000 lines; a bad address every 50,000.
    let member = if number % 10_000 == 9_999 { 1_000_000 + number / 2 } else { 1_000_000 + number };
    let email = if number % 50_000 == 49_999 {
        format!("member.{member}.harbourandhale-members.example")
    } else {
        format!("member.{member}@harbourandhale-members.example")
    };
    let name = NAMES[(number % NAMES.len() as u64) as usize];
    let language = LANGUAGES[(number % LANGUAGES.len() as u64) as usize];
    let tier = TIERS[(number / 7 % TIERS.len() as u64) as usize];
    if number.is_multiple_of(3) {
        format!(
            "{{\"member_id\":{member},\"email\":\"{email}\",\"first_name\":\"{name}\",\"preferred_language\":\"{language}\",\
             \"tier\":\"{tier}\",\"offer_kind\":\"gift_card\",\"offer_points\":null,\"gift_card_value\":\"£25\",\
             \"gift_card_code\":\"HHGC-{member:08}-{:04X}\"}}\n",
            number % 65_521
        )
    } else {
        format!(
            "{{\"member_id\":{member},\"email\":\"{email}\",\"first_name\":\"{name}\",\"preferred_language\":\"{language}\",\
             \"tier\":\"{tier}\",\"offer_kind\":\"points\",\"offer_points\":{},\"gift_card_value\":null,\
             \"gift_card_code\":null,\"segment\":\"affected-2026-11\"}}\n",
            500 + number % 4 * 500
        )
    }
}

fn generate(path: &Path, lines: u64) -> u64 {
    if let Ok(metadata) = std::fs::metadata(path) {
        return metadata.len();
    }
    let partial = path.with_extension("partial");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&partial).unwrap());
    for number in 0..lines {
        out.write_all(line(number).as_bytes()).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&partial, path).unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn peak_resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn main() {
    let lines: u64 = std::env::var("LINES").ok().and_then(|value| value.parse().ok()).unwrap_or(2_100_000);
    let directory = std::env::var_os("DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/campaign-list"));
    std::fs::create_dir_all(&directory).unwrap();
    let list = directory.join(format!("members-{lines}.jsonl"));
    let started = Instant::now();
    let bytes = generate(&list, lines);
    println!(
        "list: {} ({lines} lines, {:.0} MB), ready in {:.1} s",
        list.display(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let suppression = directory.join("suppression.txt");
    let mut out = BufWriter::new(File::create(&suppression).unwrap());
    writeln!(out, "# opted out").unwrap();
    for number in 0..10_000u64 {
        writeln!(out, "{}", 1_000_000 + number * 97 % lines).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    println!("peak resident before preparing: {:.1} MiB", peak_resident_mib());

    let spec = ListSpec { id_field: "member_id".into(), address_field: "email".into(), batch_size: 1000 };
    let rejects = directory.join("rejects.csv");
    let started = Instant::now();
    let prepared = plan::prepare(&list, &spec, Some(&suppression), &rejects).unwrap();
    let prepare_seconds = started.elapsed().as_secs_f64();
    println!(
        "| prepare | {lines} lines | {prepare_seconds:.2} s | {:.0} lines/s | peak resident {:.1} MiB |",
        lines as f64 / prepare_seconds,
        peak_resident_mib()
    );
    println!("counts: {:?}; {} batches; sha256 {}", prepared.counts, prepared.batches.len(), prepared.sha256);

    let started = Instant::now();
    let mut recipients = 0;
    for batch in &prepared.batches {
        recipients += plan::read_batch(&list, &spec, batch).unwrap().len();
    }
    let read_seconds = started.elapsed().as_secs_f64();
    assert_eq!(recipients as u64, prepared.counts.accepted);
    println!(
        "| read every batch | {recipients} recipients | {read_seconds:.2} s | {:.0} recipients/s | peak resident {:.1} MiB |",
        recipients as f64 / read_seconds,
        peak_resident_mib()
    );
}
