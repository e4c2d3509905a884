//! Preparing a campaign's list once, and reading its batches again later.
//!
//! [`prepare`] reads the list once, as a stream, and hashes its bytes as it goes. A line that
//! cannot be sent goes to the rejects file (CSV: `line,reason,text`). A recipient id seen before
//! is a duplicate: only its first line is sent. Finding them keeps memory bounded: each id's
//! keyed 128-bit fingerprint (SipHash-1-3, a key drawn for this run) and line go to one of up to
//! [`MAX_PARTITIONS`] temporary files by the fingerprint's first bits, and each file is then
//! sorted alone; two different ids share a fingerprint with odds of about n²/2¹²⁹ (10⁻²⁵ for
//! ten million ids). The duplicates' line numbers are the one thing held for the whole list
//! (8 bytes each), since the plan lists them anyway. A recipient whose id or address (ignoring
//! case) is on the suppression list is not sent either; when a suppressed recipient's id comes
//! again, that later line is a duplicate. The recipients left are cut into batches of
//! `batch_size`, each a byte range of the file from its first recipient's line to the end of
//! its last one's, with the duplicate and suppressed lines inside it listed; a rejected line
//! inside it is found rejected again when the batch is read.
//!
//! [`read_batch`] reads a batch's bytes again and gives back exactly the recipients planned, or
//! an error if the file no longer gives as many (it changed since).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use siphasher::sip128::SipHasher13;

use super::recipients::{self, Entry, Format, Reader};
use super::{BatchPlan, Counts, ListSpec, Recipient};

/// The most temporary files that finding duplicates spreads fingerprints over.
pub const MAX_PARTITIONS: usize = 256;
/// About how many bytes of the list go to one partition (a 250-byte line gives 24 bytes).
const LIST_BYTES_PER_PARTITION: u64 = 16 << 20;
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// A recipient line in the order file: line (top bit set when suppressed), start, end.
const ORDER_RECORD_BYTES: usize = 24;
/// A fingerprint and its line in a partition file.
const PARTITION_RECORD_BYTES: usize = 24;
const SUPPRESSED: u64 = 1 << 63;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    List(#[from] recipients::Error),
    #[error("a batch must hold at least one recipient (`batch_size` is 0)")]
    BatchSize,
    #[error("cannot read the suppression list `{}`: {source}", file.display())]
    Suppression { file: PathBuf, source: io::Error },
    #[error("the suppression list `{}` is not UTF-8 at line {line}", file.display())]
    SuppressionText { file: PathBuf, line: u64 },
    #[error("cannot write the rejects file `{}`: {source}", file.display())]
    Rejects { file: PathBuf, source: io::Error },
    #[error("cannot use temporary files beside `{}`: {source}", file.display())]
    Work { file: PathBuf, source: io::Error },
    #[error(
        "the recipient list `{}` changed since it was prepared: batch {batch} (bytes {start}..{end}) \
         has {found} recipients to send, not {planned}",
        file.display()
    )]
    Changed { file: PathBuf, batch: u32, start: u64, end: u64, planned: u32, found: u32 },
}

/// A prepared list: its batches in order, what reading it found, and the SHA-256 of its bytes
/// (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub batches: Vec<BatchPlan>,
    pub counts: Counts,
    pub sha256: String,
}

/// Reads the list at `list` once, writes the lines it sets aside to `rejects` (replaced whole,
/// written even when there are none; its directory is created if need be), and plans its
/// batches. `suppression` is a file of ids and addresses not to send to, one a line (blank
/// lines and lines starting with `#` are skipped). The temporary files go beside `rejects` and
/// are removed. Nothing is written if the list, its header or the suppression list cannot be
/// read.
pub fn prepare(list: &Path, spec: &ListSpec, suppression: Option<&Path>, rejects: &Path) -> Result<Prepared, Error> {
    if spec.batch_size == 0 {
        return Err(Error::BatchSize);
    }
    let fingerprint = Fingerprint::new();
    let suppression = match suppression {
        Some(file) => Suppression::read(file, &fingerprint)?,
        None => Suppression::default(),
    };
    let format = Format::of(list)?;
    let file = File::open(list).map_err(|source| recipients::Error::Read { file: list.to_path_buf(), source })?;
    let list_bytes = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let mut reader = Reader::new(Hashing { input: file, sha256: Sha256::new() }, format, spec, list)?.without_fields();

    let rejects_error = |source| Error::Rejects { file: rejects.to_path_buf(), source };
    let directory = match rejects.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let work_error = |source| Error::Work { file: rejects.to_path_buf(), source };
    std::fs::create_dir_all(directory).map_err(rejects_error)?;
    let work = tempfile::Builder::new().prefix(".campaign-prepare-").tempdir_in(directory).map_err(work_error)?;
    let rejected_file =
        tempfile::Builder::new().prefix(".campaign-rejects-").tempfile_in(directory).map_err(rejects_error)?;
    let mut rejected = csv::Writer::from_writer(BufWriter::new(rejected_file));
    let csv_error = |error: csv::Error| rejects_error(io::Error::other(error));
    rejected.write_record(["line", "reason", "text"]).map_err(csv_error)?;

    let partitions = (list_bytes / LIST_BYTES_PER_PARTITION + 1).next_power_of_two().min(MAX_PARTITIONS as u64);
    let mut spill = Spill::create(work.path(), partitions as usize).map_err(work_error)?;
    let order_path = work.path().join("order");
    let mut order = BufWriter::new(File::create(&order_path).map_err(work_error)?);

    let mut counts = Counts::default();
    while let Some(item) = reader.next_item()? {
        counts.read += 1;
        match item.entry {
            Entry::Rejected { reason, text } => {
                counts.rejected += 1;
                rejected.write_record([item.line.to_string(), reason.to_string(), text]).map_err(csv_error)?;
            }
            Entry::Recipient(recipient) => {
                let key = fingerprint.of(recipient.id.as_bytes());
                spill.push(key, item.line).map_err(work_error)?;
                let flag = if suppression.contains(&fingerprint, &recipient) { SUPPRESSED } else { 0 };
                let mut record = [0; ORDER_RECORD_BYTES];
                record[..8].copy_from_slice(&(item.line | flag).to_le_bytes());
                record[8..16].copy_from_slice(&item.start.to_le_bytes());
                record[16..].copy_from_slice(&item.end.to_le_bytes());
                order.write_all(&record).map_err(work_error)?;
            }
        }
    }
    let mut hashing = reader.into_inner();
    // The reader stops at the end of the input, so every byte went through the hash; reading
    // on makes sure of it.
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|source| recipients::Error::Read { file: list.to_path_buf(), source })?;
    let sha256 = hex::encode(hashing.sha256.finalize());

    order.flush().map_err(work_error)?;
    drop(order);
    let duplicates = spill.duplicates().map_err(work_error)?;
    let order = BufReader::new(File::open(&order_path).map_err(work_error)?);
    let batches = cut(order, &duplicates, spec.batch_size, &mut counts).map_err(work_error)?;

    let rejected_file = rejected.into_inner().map_err(|error| rejects_error(error.into_error()))?;
    let rejected_file = rejected_file.into_inner().map_err(|error| rejects_error(error.into_error()))?;
    rejected_file.as_file().sync_all().map_err(rejects_error)?;
    rejected_file.persist(rejects).map_err(|error| rejects_error(error.error))?;
    Ok(Prepared { batches, counts, sha256 })
}

/// Reads a prepared batch again: exactly the recipients it planned, in order, or
/// [`Error::Changed`] if the file no longer gives as many.
pub fn read_batch(list: &Path, spec: &ListSpec, plan: &BatchPlan) -> Result<Vec<Recipient>, Error> {
    let format = Format::of(list)?;
    let read_error = |source| recipients::Error::Read { file: list.to_path_buf(), source };
    let columns = match format {
        Format::Csv => Reader::open(list, spec)?.columns().cloned(),
        Format::JsonLines => None,
    };
    let mut file = File::open(list).map_err(read_error)?;
    file.seek(SeekFrom::Start(plan.start)).map_err(read_error)?;
    let input = file.take(plan.end.saturating_sub(plan.start));
    let reader = Reader::resume(input, format, spec, list, columns, plan.start, plan.first_line);
    let mut recipients = Vec::with_capacity(plan.recipients as usize);
    for item in reader {
        if let Entry::Recipient(recipient) = item?.entry
            && plan.skip.binary_search(&recipient.line).is_err()
        {
            recipients.push(recipient);
        }
        if recipients.len() > plan.recipients as usize {
            break;
        }
    }
    let first_line = recipients.first().map(|recipient| recipient.line);
    if recipients.len() != plan.recipients as usize || first_line != Some(plan.first_line) {
        return Err(Error::Changed {
            file: list.to_path_buf(),
            batch: plan.number,
            start: plan.start,
            end: plan.end,
            planned: plan.recipients,
            found: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
        });
    }
    Ok(recipients)
}

/// Cuts the recipients (in file order, from the order file) into batches, skipping duplicates
/// and suppressed recipients, and counts them.
fn cut(mut order: impl Read, duplicates: &[u64], batch_size: u32, counts: &mut Counts) -> io::Result<Vec<BatchPlan>> {
    let mut batches = Vec::new();
    let mut current: Option<BatchPlan> = None;
    // Skipped lines after the batch's last recipient so far: they join its `skip` only if
    // another recipient joins it after them.
    let mut pending = Vec::new();
    let mut duplicates = duplicates.iter().peekable();
    let mut record = [0; ORDER_RECORD_BYTES];
    loop {
        match order.read_exact(&mut record) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error),
        }
        let word = |index: usize| u64::from_le_bytes(record[index * 8..index * 8 + 8].try_into().expect("8 bytes"));
        let (line, start, end) = (word(0) & !SUPPRESSED, word(1), word(2));
        let suppressed = word(0) & SUPPRESSED != 0;
        let duplicate = duplicates.next_if(|&&duplicate| duplicate == line).is_some();
        if duplicate || suppressed {
            if duplicate {
                counts.duplicates += 1;
            } else {
                counts.suppressed += 1;
            }
            if current.is_some() {
                pending.push(line);
            }
            continue;
        }
        counts.accepted += 1;
        let batch = current.get_or_insert_with(|| BatchPlan {
            number: batches.len() as u32 + 1,
            start,
            end,
            first_line: line,
            skip: Vec::new(),
            recipients: 0,
        });
        batch.skip.append(&mut pending);
        batch.end = end;
        batch.recipients += 1;
        if batch.recipients == batch_size {
            batches.extend(current.take());
        }
    }
    batches.extend(current);
    Ok(batches)
}

/// The keyed hash that stands for an id or an address: 128 bits of SipHash-1-3 under a key
/// drawn from the operating system, so nobody can write a list whose ids collide on purpose.
struct Fingerprint(SipHasher13);

impl Fingerprint {
    fn new() -> Fingerprint {
        Fingerprint(SipHasher13::new_with_keys(OsRng.next_u64(), OsRng.next_u64()))
    }

    fn of(&self, bytes: &[u8]) -> u128 {
        self.0.hash(bytes).as_u128()
    }
}

/// The suppression list, as sorted fingerprints: every entry as an id, and the entries with an
/// `@` in lower case as addresses. 16 bytes an entry.
#[derive(Default)]
struct Suppression {
    ids: Vec<u128>,
    addresses: Vec<u128>,
}

impl Suppression {
    fn read(file: &Path, fingerprint: &Fingerprint) -> Result<Suppression, Error> {
        let read_error = |source| Error::Suppression { file: file.to_path_buf(), source };
        let mut input = BufReader::new(File::open(file).map_err(read_error)?);
        let mut suppression = Suppression::default();
        let (mut bytes, mut line) = (Vec::new(), 0);
        loop {
            bytes.clear();
            if io::BufRead::read_until(&mut input, b'\n', &mut bytes).map_err(read_error)? == 0 {
                break;
            }
            line += 1;
            let text =
                std::str::from_utf8(&bytes).map_err(|_| Error::SuppressionText { file: file.to_path_buf(), line })?;
            let text = text.trim_start_matches('\u{feff}').trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            suppression.ids.push(fingerprint.of(text.as_bytes()));
            if text.contains('@') {
                suppression.addresses.push(fingerprint.of(text.to_lowercase().as_bytes()));
            }
        }
        for fingerprints in [&mut suppression.ids, &mut suppression.addresses] {
            fingerprints.sort_unstable();
            fingerprints.dedup();
        }
        Ok(suppression)
    }

    fn contains(&self, fingerprint: &Fingerprint, recipient: &Recipient) -> bool {
        if !self.ids.is_empty() && self.ids.binary_search(&fingerprint.of(recipient.id.as_bytes())).is_ok() {
            return true;
        }
        !self.addresses.is_empty()
            && self.addresses.binary_search(&fingerprint.of(recipient.address.to_lowercase().as_bytes())).is_ok()
    }
}

/// Ids' fingerprints and lines, spread over partition files by the fingerprint's first bits.
struct Spill {
    paths: Vec<PathBuf>,
    files: Vec<BufWriter<File>>,
    shift: u32,
}

impl Spill {
    fn create(directory: &Path, partitions: usize) -> io::Result<Spill> {
        debug_assert!(partitions.is_power_of_two());
        let mut spill = Spill { paths: Vec::new(), files: Vec::new(), shift: 128 - partitions.trailing_zeros() };
        for number in 0..partitions {
            let path = directory.join(format!("ids-{number}"));
            spill.files.push(BufWriter::with_capacity(WRITE_BUFFER_BYTES, File::create(&path)?));
            spill.paths.push(path);
        }
        Ok(spill)
    }

    fn partition(&self, fingerprint: u128) -> usize {
        // With one partition the shift is 128, which `checked_shr` turns into 0.
        fingerprint.checked_shr(self.shift).unwrap_or(0) as usize
    }

    fn push(&mut self, fingerprint: u128, line: u64) -> io::Result<()> {
        let partition = self.partition(fingerprint);
        let mut record = [0; PARTITION_RECORD_BYTES];
        record[..16].copy_from_slice(&fingerprint.to_le_bytes());
        record[16..].copy_from_slice(&line.to_le_bytes());
        self.files[partition].write_all(&record)
    }

    /// The lines whose id came earlier in the list, in order; one partition in memory at a time.
    fn duplicates(self) -> io::Result<Vec<u64>> {
        let mut duplicates = Vec::new();
        for file in self.files {
            file.into_inner().map_err(|error| error.into_error())?;
        }
        let mut entries: Vec<(u128, u64)> = Vec::new();
        for path in &self.paths {
            let bytes = std::fs::read(path)?;
            std::fs::remove_file(path)?;
            entries.clear();
            entries.extend(bytes.chunks_exact(PARTITION_RECORD_BYTES).map(|record| {
                let fingerprint = u128::from_le_bytes(record[..16].try_into().expect("16 bytes"));
                let line = u64::from_le_bytes(record[16..].try_into().expect("8 bytes"));
                (fingerprint, line)
            }));
            drop(bytes);
            entries.sort_unstable();
            for pair in entries.windows(2) {
                if pair[0].0 == pair[1].0 {
                    duplicates.push(pair[1].1);
                }
            }
        }
        duplicates.sort_unstable();
        Ok(duplicates)
    }
}

/// A reader that hashes what it reads.
struct Hashing<R> {
    input: R,
    sha256: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.input.read(buffer)?;
        self.sha256.update(&buffer[..count]);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `cut` over recipient lines (line, suppressed), each line 10 bytes long.
    fn cut_lines(lines: &[(u64, bool)], duplicates: &[u64], batch_size: u32) -> (Vec<BatchPlan>, Counts) {
        let mut order = Vec::new();
        for &(line, suppressed) in lines {
            let flag = if suppressed { SUPPRESSED } else { 0 };
            for word in [line | flag, (line - 1) * 10, line * 10] {
                order.extend_from_slice(&word.to_le_bytes());
            }
        }
        let mut counts = Counts::default();
        let batches = cut(order.as_slice(), duplicates, batch_size, &mut counts).unwrap();
        (batches, counts)
    }

    fn batch(number: u32, first_line: u64, last_line: u64, skip: &[u64], recipients: u32) -> BatchPlan {
        BatchPlan {
            number,
            start: (first_line - 1) * 10,
            end: last_line * 10,
            first_line,
            skip: skip.to_vec(),
            recipients,
        }
    }

    #[test]
    fn cutting_batches() {
        let plain = |lines: &[u64]| lines.iter().map(|&line| (line, false)).collect::<Vec<_>>();
        // (name, recipient lines (line, suppressed), duplicate lines, batch size, batches,
        // (accepted, duplicates, suppressed))
        type Case<'a> = (&'a str, Vec<(u64, bool)>, Vec<u64>, u32, Vec<BatchPlan>, (u64, u64, u64));
        let cases: Vec<Case> = vec![
            ("nothing", vec![], vec![], 2, vec![], (0, 0, 0)),
            ("one short batch", plain(&[1, 2, 3]), vec![], 5, vec![batch(1, 1, 3, &[], 3)], (3, 0, 0)),
            (
                "full batches and a short last one",
                plain(&[1, 2, 3, 4, 5]),
                vec![],
                2,
                vec![batch(1, 1, 2, &[], 2), batch(2, 3, 4, &[], 2), batch(3, 5, 5, &[], 1)],
                (5, 0, 0),
            ),
            (
                // Rejected lines (3) are not in the order file: a batch's range covers them.
                "skips inside a batch are listed; around batches they are not",
                vec![(1, true), (2, false), (4, false), (5, true), (6, false), (7, false), (8, true), (9, false)],
                vec![6],
                2,
                vec![batch(1, 2, 4, &[], 2), batch(2, 7, 9, &[8], 2)],
                (4, 1, 3),
            ),
            (
                "skips at the end are in no batch",
                plain(&[1, 2, 3]),
                vec![2, 3],
                5,
                vec![batch(1, 1, 1, &[], 1)],
                (1, 2, 0),
            ),
        ];
        for (name, lines, duplicates, batch_size, expected, (accepted, duplicate, suppressed)) in cases {
            let (batches, counts) = cut_lines(&lines, &duplicates, batch_size);
            assert_eq!(batches, expected, "{name}");
            assert_eq!(
                (counts.accepted, counts.duplicates, counts.suppressed),
                (accepted, duplicate, suppressed),
                "{name}"
            );
        }
    }

    #[test]
    fn duplicates_are_found_across_partitions() {
        let directory = tempfile::tempdir().unwrap();
        let fingerprint = Fingerprint::new();
        let mut spill = Spill::create(directory.path(), 16).unwrap();
        // 20,000 lines of 7,000 ids: each id first on line id + 1, then again every 7,000 lines.
        let mut expected = Vec::new();
        for line in 1..=20_000u64 {
            let id = (line - 1) % 7_000;
            spill.push(fingerprint.of(id.to_string().as_bytes()), line).unwrap();
            if line > 7_000 {
                expected.push(line);
            }
        }
        let used = spill
            .files
            .iter()
            .filter(|file| !file.buffer().is_empty() || file.get_ref().metadata().unwrap().len() > 0)
            .count();
        assert!(used > 8, "fingerprints spread over the partitions: {used} of 16");
        assert_eq!(spill.duplicates().unwrap(), expected);
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0, "partition files removed");
    }

    #[test]
    fn one_partition_takes_every_fingerprint() {
        let directory = tempfile::tempdir().unwrap();
        let spill = Spill::create(directory.path(), 1).unwrap();
        assert_eq!((spill.partition(u128::MAX), spill.partition(0)), (0, 0));
        let spill = Spill::create(directory.path(), 256).unwrap();
        assert_eq!((spill.partition(u128::MAX), spill.partition(1 << 120), spill.partition(0)), (255, 1, 0));
    }

    #[test]
    fn suppression_entries() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("suppression.txt");
        std::fs::write(&path, "\u{feff}# header comment\n1001\n  Ana@Example.COM \r\n\n#1002\nzoë@bücher.example\n")
            .unwrap();
        let fingerprint = Fingerprint::new();
        let suppression = Suppression::read(&path, &fingerprint).unwrap();
        let recipient = |id: &str, address: &str| Recipient {
            line: 1,
            id: id.into(),
            address: address.into(),
            fields: serde_json::Map::new(),
        };
        let cases = [
            (recipient("1001", "x@y.example"), true),
            (recipient("1002", "x@y.example"), false),
            (recipient("7", "ana@example.com"), true),
            (recipient("7", "ANA@EXAMPLE.COM"), true),
            (recipient("7", "ana@example.org"), false),
            (recipient("Ana@Example.COM", "x@y.example"), true),
            (recipient("ana@example.com", "x@y.example"), false),
            (recipient("7", "ZOË@BÜCHER.example"), true),
        ];
        for (recipient, expected) in cases {
            assert_eq!(suppression.contains(&fingerprint, &recipient), expected, "{recipient:?}");
        }

        std::fs::write(&path, b"ok\n\xff\xfe\n").unwrap();
        let error = Suppression::read(&path, &fingerprint).err().unwrap();
        assert_eq!(error.to_string(), format!("the suppression list `{}` is not UTF-8 at line 2", path.display()));
    }
}
