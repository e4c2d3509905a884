//! Campaign recipient lists on real files: preparing (rejects, duplicates, suppression, batches)
//! and reading batches back.

use std::path::{Path, PathBuf};

use phasegate::campaign::plan::{self, Prepared};
use phasegate::campaign::{BatchPlan, Counts, ListSpec};

fn spec(batch_size: u32) -> ListSpec {
    ListSpec { id_field: "member_id".into(), address_field: "email".into(), batch_size }
}

struct List {
    directory: tempfile::TempDir,
    path: PathBuf,
}

impl List {
    fn new(name: &str, text: &str) -> List {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(name);
        std::fs::write(&path, text).unwrap();
        List { directory, path }
    }

    fn rejects(&self) -> PathBuf {
        self.directory.path().join("out/rejects.csv")
    }

    fn prepare(&self, batch_size: u32, suppression: Option<&str>) -> Prepared {
        // `out/` does not exist yet: `prepare` makes it.
        let suppression = suppression.map(|text| {
            let path = self.directory.path().join("suppression.txt");
            std::fs::write(&path, text).unwrap();
            path
        });
        plan::prepare(&self.path, &spec(batch_size), suppression.as_deref(), &self.rejects()).unwrap()
    }

    /// The rejects file's rows after its header.
    fn rejected(&self) -> Vec<(u64, String, String)> {
        let mut reader = csv::Reader::from_path(self.rejects()).unwrap();
        assert_eq!(reader.headers().unwrap(), vec!["line", "reason", "text"]);
        reader
            .records()
            .map(|record| {
                let record = record.unwrap();
                (record[0].parse().unwrap(), record[1].to_string(), record[2].to_string())
            })
            .collect()
    }

    /// Every batch read back: (line, id) of each recipient.
    fn read_all(&self, prepared: &Prepared, batch_size: u32) -> Vec<Vec<(u64, String)>> {
        prepared
            .batches
            .iter()
            .map(|batch| {
                let recipients = plan::read_batch(&self.path, &spec(batch_size), batch).unwrap();
                recipients.into_iter().map(|recipient| (recipient.line, recipient.id)).collect()
            })
            .collect()
    }

    /// The file's bytes in a batch's range.
    fn range(&self, batch: &BatchPlan) -> String {
        let bytes = std::fs::read(&self.path).unwrap();
        String::from_utf8(bytes[batch.start as usize..batch.end as usize].to_vec()).unwrap()
    }
}

fn member(id: u64) -> String {
    format!("{{\"member_id\":{id},\"email\":\"m{id}@members.example\",\"first_name\":\"Ana\",\"offer_points\":{id}}}\n")
}

fn counts(read: u64, accepted: u64, rejected: u64, duplicates: u64, suppressed: u64) -> Counts {
    Counts { read, accepted, rejected, duplicates, suppressed }
}

fn ids(batch: &[(u64, String)]) -> Vec<&str> {
    batch.iter().map(|(_, id)| id.as_str()).collect()
}

#[test]
fn a_repeated_id_is_sent_once_from_its_first_line() {
    let ids_in_order = [1, 2, 1, 3, 2, 4, 1, 5];
    let text: String = ids_in_order.iter().map(|&id| member(id)).collect();
    let list = List::new("members.jsonl", &text);
    let prepared = list.prepare(2, None);
    assert_eq!(prepared.counts, counts(8, 5, 0, 3, 0));
    let summary: Vec<(u64, Vec<u64>, u32)> =
        prepared.batches.iter().map(|batch| (batch.first_line, batch.skip.clone(), batch.recipients)).collect();
    // Batch 1 is lines 1-2; batch 2 runs from line 4 to 6 with line 5 (a repeat of 2) skipped;
    // line 3 (a repeat of 1) is between them, and line 7 is between batch 2 and 3.
    assert_eq!(summary, vec![(1, vec![], 2), (4, vec![5], 2), (8, vec![], 1)]);
    let batches = list.read_all(&prepared, 2);
    assert_eq!(
        batches.iter().map(|batch| ids(batch)).collect::<Vec<_>>(),
        vec![vec!["1", "2"], vec!["3", "4"], vec!["5"]]
    );
    assert_eq!(batches[1], vec![(4, "3".to_string()), (6, "4".to_string())]);
    assert_eq!(list.rejected(), vec![]);
}

#[test]
fn rejected_lines_go_to_the_rejects_file_with_their_line_numbers() {
    let text = [
        member(1),
        "{\"member_id\": 2, \"email\": \"m2@members.example\"\n".to_string(),
        "[\"not\", \"an\", \"object\"]\n".to_string(),
        "{\"email\":\"m4@members.example\"}\n".to_string(),
        "\n".to_string(),
        "{\"member_id\":5}\n".to_string(),
        "{\"member_id\":6,\"email\":\"m6.members.example\"}\n".to_string(),
        format!("{{\"member_id\":\"{}\",\"email\":\"m7@members.example\"}}\n", "7".repeat(300)),
        member(8),
    ]
    .concat();
    let list = List::new("members.jsonl", &text);
    let prepared = list.prepare(10, None);
    assert_eq!(prepared.counts, counts(8, 2, 6, 0, 0));
    let rejected: Vec<(u64, String)> = list.rejected().into_iter().map(|(line, reason, _)| (line, reason)).collect();
    assert_eq!(
        rejected,
        vec![
            (2, "unparsable: not JSON: EOF while parsing an object (column 46)".to_string()),
            (3, "unparsable: not a JSON object".to_string()),
            (4, "missing id".to_string()),
            (6, "missing address".to_string()),
            (7, "malformed address: not exactly one `@`".to_string()),
            (8, "malformed id: 300 bytes, more than 256".to_string()),
        ]
    );
    assert_eq!(list.rejected()[1].2, "[\"not\", \"an\", \"object\"]", "the text, without its line ending");
    // One batch from line 1 to line 9: the rejected lines inside it are found again on reading.
    assert_eq!(prepared.batches.len(), 1);
    assert_eq!((prepared.batches[0].first_line, prepared.batches[0].skip.clone()), (1, vec![]));
    assert_eq!(list.read_all(&prepared, 10), vec![vec![(1, "1".to_string()), (9, "8".to_string())]]);
}

#[test]
fn a_rejected_line_keeps_one_kibibyte_of_its_text() {
    let text = format!("{{\"member_id\": 1, \"note\": \"{}\"\n", "x".repeat(5000));
    let list = List::new("members.jsonl", &text);
    list.prepare(10, None);
    let rejected = list.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].2.len(), 1024);
    assert!(text.starts_with(&rejected[0].2));
}

#[test]
fn suppressed_recipients_are_counted_and_skipped() {
    let text: String = (1..=6).map(member).collect::<String>() + &member(3);
    let list = List::new("members.jsonl", &text);
    // By id (2), by address in another case (4), a comment and blank lines.
    let suppression = "# opted out\n2\n\n   M4@Members.EXAMPLE  \n# 5\nnobody@members.example\n";
    let prepared = list.prepare(10, Some(suppression));
    // Line 7 repeats id 3, which is a duplicate rather than suppressed or sent again.
    assert_eq!(prepared.counts, counts(7, 4, 0, 1, 2));
    assert_eq!(prepared.batches.len(), 1);
    assert_eq!(prepared.batches[0].skip, vec![2, 4]);
    assert_eq!(ids(&list.read_all(&prepared, 10)[0]), vec!["1", "3", "5", "6"]);
}

#[test]
fn a_suppressed_recipient_is_not_sent_from_a_later_line() {
    // The first line of id 1 is suppressed by its address; its later line, with another
    // address, repeats the id: not sent either.
    let text = format!("{}{}{{\"member_id\":1,\"email\":\"other@members.example\"}}\n", member(1), member(2));
    let list = List::new("members.jsonl", &text);
    let prepared = list.prepare(10, Some("m1@members.example\n"));
    assert_eq!(prepared.counts, counts(3, 1, 0, 1, 1));
    assert_eq!(ids(&list.read_all(&prepared, 10)[0]), vec!["2"]);
}

#[test]
fn csv_quoting_with_line_breaks_keeps_line_numbers_and_byte_ranges() {
    let text = "member_id,email,first_name,note\n\
                1,m1@members.example,Ana,\"two\nlines\"\n\
                2,m2@members.example,\"Bo, \"\"the\"\" second\",plain\n\
                3,m3@members.example,Cy,\"three\n\nlines, one blank\"\n\
                4,m4@members.example,Di\n\
                5,m5@members.example,Ed,\"last\"\n";
    let list = List::new("members.csv", text);
    let prepared = list.prepare(2, None);
    assert_eq!(prepared.counts, counts(5, 4, 1, 0, 0));
    assert_eq!(
        list.rejected().into_iter().map(|(line, reason, _)| (line, reason)).collect::<Vec<_>>(),
        vec![(8, "unparsable: 3 fields, the header has 4".to_string())]
    );
    let batches = list.read_all(&prepared, 2);
    assert_eq!(
        batches,
        vec![vec![(2, "1".to_string()), (4, "2".to_string())], vec![(5, "3".to_string()), (9, "5".to_string())]]
    );
    assert_eq!(
        list.range(&prepared.batches[0]),
        "1,m1@members.example,Ana,\"two\nlines\"\n2,m2@members.example,\"Bo, \"\"the\"\" second\",plain\n"
    );
    assert_eq!(
        list.range(&prepared.batches[1]),
        "3,m3@members.example,Cy,\"three\n\nlines, one blank\"\n4,m4@members.example,Di\n5,m5@members.example,Ed,\"last\"\n"
    );
    let recipients = plan::read_batch(&list.path, &spec(2), &prepared.batches[0]).unwrap();
    assert_eq!(recipients[1].fields["first_name"], serde_json::json!("Bo, \"the\" second"));
    assert_eq!(recipients[0].fields["note"], serde_json::json!("two\nlines"));
}

#[test]
fn a_byte_order_mark_and_crlf_line_endings() {
    let cases = [
        (
            "members.csv",
            "\u{feff}member_id,email\r\n1,m1@members.example\r\n\r\n2,m2@members.example\r\n3,bad\r\n4,m4@members.example\r\n",
            vec![(2, "1"), (4, "2"), (6, "4")],
            5,
        ),
        (
            "members.jsonl",
            "\u{feff}{\"member_id\":1,\"email\":\"m1@members.example\"}\r\n\r\n{\"member_id\":2,\"email\":\"m2@members.example\"}\r\n{\"member_id\":3}\r\n{\"member_id\":4,\"email\":\"m4@members.example\"}\r\n",
            vec![(1, "1"), (3, "2"), (5, "4")],
            4,
        ),
    ];
    for (name, text, expected, rejected_line) in cases {
        let list = List::new(name, text);
        let prepared = list.prepare(2, None);
        assert_eq!(prepared.counts, counts(4, 3, 1, 0, 0), "{name}");
        let expected: Vec<Vec<(u64, String)>> =
            expected.chunks(2).map(|chunk| chunk.iter().map(|&(line, id)| (line, id.to_string())).collect()).collect();
        assert_eq!(list.read_all(&prepared, 2), expected, "{name}");
        assert_eq!(list.rejected()[0].0, rejected_line, "{name}");
        // Ranges start at a record and end past its CRLF.
        for batch in &prepared.batches {
            let range = list.range(batch);
            assert!(!range.starts_with(['\u{feff}', '\r', '\n']) && range.ends_with("\r\n"), "{name}: {range:?}");
        }
    }
}

#[test]
fn a_list_of_nothing_but_rejects() {
    let list = List::new("members.jsonl", "{\"member_id\":1}\nnot json\n\n{\"email\":\"a@b.example\"}\n");
    let prepared = list.prepare(10, None);
    assert_eq!(prepared.counts, counts(3, 0, 3, 0, 0));
    assert_eq!(prepared.batches, vec![]);
    assert_eq!(list.rejected().iter().map(|(line, ..)| *line).collect::<Vec<_>>(), vec![1, 2, 4]);
}

#[test]
fn the_rejects_file_is_written_when_nothing_is_rejected() {
    let list = List::new("members.jsonl", &member(1));
    let prepared = list.prepare(10, None);
    assert_eq!(prepared.counts, counts(1, 1, 0, 0, 0));
    assert_eq!(std::fs::read_to_string(list.rejects()).unwrap(), "line,reason,text\n");
    // Only the rejects file is left: the temporary files are gone.
    let left: Vec<_> =
        std::fs::read_dir(list.directory.path().join("out")).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(left, vec!["rejects.csv"]);
}

#[test]
fn the_list_is_hashed_whole() {
    use sha2::Digest;
    let text = format!("\u{feff}{}{}\n\n", member(1), member(2));
    let list = List::new("members.jsonl", &text);
    let prepared = list.prepare(10, None);
    assert_eq!(prepared.sha256, hex::encode(sha2::Sha256::digest(text.as_bytes())));
}

#[test]
fn read_batch_gives_exactly_the_planned_recipients() {
    // Ids 1..=40, except every fifth line repeats the id of the line before and every seventh
    // is a reject; ids 9 and 30 are suppressed. Line 15 repeats id 14, whose line 14 was
    // rejected: it is that id's first recipient line, so it is sent; id 30 never comes.
    let mut text = String::new();
    for line in 1..=40u64 {
        if line % 7 == 0 {
            text.push_str("{\"member_id\": \"broken\"\n");
        } else if line % 5 == 0 {
            text.push_str(&member(line - 1));
        } else {
            text.push_str(&member(line));
        }
    }
    let sent =
        [1, 2, 3, 4, 6, 8, 11, 12, 13, 15, 16, 17, 18, 19, 22, 23, 24, 26, 27, 29, 31, 32, 33, 34, 36, 37, 38, 39];
    let expected: Vec<(u64, String)> =
        sent.iter().map(|&line: &u64| (line, if line == 15 { "14".to_string() } else { line.to_string() })).collect();
    let list = List::new("members.jsonl", &text);
    let prepared = list.prepare(3, Some("9\n30\n"));
    assert_eq!(prepared.counts, counts(40, 28, 5, 6, 1));
    let batches = list.read_all(&prepared, 3);
    assert_eq!(batches.concat(), expected);
    assert!(batches[..batches.len() - 1].iter().all(|batch| batch.len() == 3));
    for (index, batch) in prepared.batches.iter().enumerate() {
        assert_eq!(batch.number as usize, index + 1);
        assert_eq!(batch.first_line, batches[index][0].0);
    }
}

#[test]
fn a_changed_list_is_found_out_when_a_batch_is_read() {
    let text: String = (1..=6).map(member).collect();
    let list = List::new("members.jsonl", &text);
    let prepared = list.prepare(3, None);
    let cases = [
        // A line added at the top shifts every byte.
        format!("{}{text}", member(99)),
        // A recipient of batch 2 broken.
        text.replace("\"member_id\":5,", "\"member_id\":,"),
        // The file cut short.
        text[..text.len() - 20].to_string(),
    ];
    for changed in cases {
        std::fs::write(&list.path, &changed).unwrap();
        let error = plan::read_batch(&list.path, &spec(3), &prepared.batches[1]).unwrap_err();
        assert!(matches!(error, plan::Error::Changed { batch: 2, planned: 3, .. }), "{error}");
        assert!(error.to_string().contains("changed since it was prepared"), "{error}");
    }
}

#[test]
fn what_cannot_be_read_is_an_error_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let rejects = directory.path().join("rejects.csv");
    let missing = directory.path().join("missing.jsonl");
    let error = plan::prepare(&missing, &spec(10), None, &rejects).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("cannot read the recipient list `{}`", missing.display())),
        "{error}"
    );

    let csv = directory.path().join("members.csv");
    std::fs::write(&csv, "id,email\n1,a@b.example\n").unwrap();
    let error = plan::prepare(&csv, &spec(10), None, &rejects).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("the header of the recipient list `{}` has no `member_id` column", csv.display())
    );

    let other = directory.path().join("members.txt");
    std::fs::write(&other, "1\n").unwrap();
    let error = plan::prepare(&other, &spec(10), None, &rejects).unwrap_err();
    assert!(error.to_string().contains("is neither CSV"), "{error}");

    let list = directory.path().join("members.jsonl");
    std::fs::write(&list, member(1)).unwrap();
    let suppression = directory.path().join("missing-suppression.txt");
    let error = plan::prepare(&list, &spec(10), Some(&suppression), &rejects).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("cannot read the suppression list `{}`", suppression.display())),
        "{error}"
    );

    let error = plan::prepare(&list, &spec(0), None, &rejects).unwrap_err();
    assert!(matches!(error, plan::Error::BatchSize), "{error}");

    // Nothing was written for any of them.
    assert!(!Path::new(&rejects).exists());
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 3);
}
