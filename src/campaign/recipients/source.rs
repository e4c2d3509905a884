//! Splitting a list's bytes into records (a line, or a CSV record), with each one's byte range
//! and line number.

use std::io::{self, BufRead, BufReader, Read};

use super::{BUFFER_BYTES, BYTE_ORDER_MARK, Format, MAX_RECORD_BYTES, MAX_TEXT_BYTES};

/// The raw bytes of one record, and where it was.
pub(super) struct Raw {
    pub(super) line: u64,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) too_long: bool,
}

/// Splits the input into records and tracks byte offsets and line numbers.
pub(super) struct Source<R> {
    pub(super) input: BufReader<R>,
    /// Absolute offset of the next byte `input` gives.
    pub(super) offset: u64,
    /// Line number of the next byte `input` gives.
    pub(super) line: u64,
    /// The record's bytes (up to [`MAX_RECORD_BYTES`]; for CSV, up to [`MAX_TEXT_BYTES`]).
    pub(super) bytes: Vec<u8>,
    /// CSV only: the record's fields, one after the other, and where each ends.
    pub(super) csv: Option<CsvState>,
}

pub(super) struct CsvState {
    pub(super) core: csv_core::Reader,
    pub(super) fields: Vec<u8>,
    pub(super) ends: Vec<usize>,
    /// How many fields the last record had (`ends[..count]`).
    pub(super) count: usize,
}

impl CsvState {
    pub(super) fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let mut previous = 0;
        self.ends[..self.count].iter().map(move |&end| {
            let field = &self.fields[previous..end];
            previous = end;
            field
        })
    }
}

impl<R: Read> Source<R> {
    pub(super) fn new(input: R, format: Format, offset: u64, line: u64) -> Source<R> {
        let csv = (format == Format::Csv).then(|| CsvState {
            core: csv_core::Reader::new(),
            fields: vec![0; 1024],
            ends: vec![0; 32],
            count: 0,
        });
        Source { input: BufReader::with_capacity(BUFFER_BYTES, input), offset, line, bytes: Vec::new(), csv }
    }

    pub(super) fn consume(&mut self, count: usize) {
        self.input.consume(count);
        self.offset += count as u64;
    }

    /// Skips a byte order mark at the very start of the file.
    pub(super) fn skip_byte_order_mark(&mut self) -> io::Result<()> {
        // A buffer of 64 KiB at offset 0 holds the mark whole if the file has one.
        if self.input.fill_buf()?.starts_with(BYTE_ORDER_MARK) {
            self.consume(BYTE_ORDER_MARK.len());
        }
        Ok(())
    }

    /// The next record's raw bytes (JSON Lines: one line; CSV: one record, its fields parsed
    /// into `csv`), or `None` at the end of the input. Blank lines are skipped.
    pub(super) fn next_record(&mut self) -> io::Result<Option<Raw>> {
        loop {
            // Line endings before a record are blank lines (or a CRLF's second half). csv-core
            // would skip them too, but as part of the next record's bytes.
            loop {
                let buffer = self.input.fill_buf()?;
                let Some(&byte) = buffer.first() else { return Ok(None) };
                match byte {
                    b'\n' => {
                        self.consume(1);
                        self.line += 1;
                    }
                    b'\r' => self.consume(1),
                    _ => break,
                }
            }
            let (start, line) = (self.offset, self.line);
            self.bytes.clear();
            let too_long = if self.csv.is_some() { self.read_csv_record()? } else { self.read_line()? };
            let end = self.offset;
            // A line of spaces and tabs is blank too.
            let blank = !too_long
                && end - start <= MAX_TEXT_BYTES as u64
                && self.bytes.iter().all(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'));
            if !blank {
                return Ok(Some(Raw { line, start, end, too_long }));
            }
        }
    }

    /// Reads up to and including the next `\n` (or to the end), keeping up to
    /// [`MAX_RECORD_BYTES`] of it; true if the line was longer.
    pub(super) fn read_line(&mut self) -> io::Result<bool> {
        let mut too_long = false;
        loop {
            let buffer = self.input.fill_buf()?;
            if buffer.is_empty() {
                return Ok(too_long);
            }
            let (taken, done) = match buffer.iter().position(|&byte| byte == b'\n') {
                Some(index) => (index + 1, true),
                None => (buffer.len(), false),
            };
            let room = MAX_RECORD_BYTES.saturating_sub(self.bytes.len());
            if taken > room {
                too_long = true;
            }
            self.bytes.extend_from_slice(&buffer[..taken.min(room)]);
            self.consume(taken);
            if done {
                self.line += 1;
                return Ok(too_long);
            }
        }
    }

    /// Reads one CSV record into `csv`'s fields, keeping its first [`MAX_TEXT_BYTES`] raw bytes;
    /// true if its fields were longer than [`MAX_RECORD_BYTES`] (they are then dropped as read).
    pub(super) fn read_csv_record(&mut self) -> io::Result<bool> {
        use csv_core::ReadRecordResult;
        let csv = self.csv.as_mut().expect("a CSV source");
        let (mut written, mut ended, mut too_long) = (0, 0, false);
        loop {
            let buffer = self.input.fill_buf()?;
            let (result, read, wrote, ends) =
                csv.core.read_record(buffer, &mut csv.fields[written..], &mut csv.ends[ended..]);
            let consumed = &buffer[..read];
            let room = MAX_TEXT_BYTES.saturating_sub(self.bytes.len());
            self.bytes.extend_from_slice(&consumed[..read.min(room)]);
            let newlines = consumed.iter().filter(|&&byte| byte == b'\n').count() as u64;
            let last = consumed.last().copied();
            self.input.consume(read);
            self.offset += read as u64;
            self.line += newlines;
            written += wrote;
            ended += ends;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if csv.fields.len() >= MAX_RECORD_BYTES {
                        // Keep parsing to find the record's end, writing over what was read.
                        too_long = true;
                        written = 0;
                    } else {
                        let length = csv.fields.len() * 2;
                        csv.fields.resize(length, 0);
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    if csv.ends.len() >= MAX_RECORD_BYTES / 8 {
                        too_long = true;
                        ended = 0;
                    } else {
                        let length = csv.ends.len() * 2;
                        csv.ends.resize(length, 0);
                    }
                }
                ReadRecordResult::Record | ReadRecordResult::End => {
                    csv.count = ended;
                    // A record ends at its terminator's first byte; a CRLF's `\n` belongs to it.
                    if last == Some(b'\r') {
                        let buffer = self.input.fill_buf()?;
                        if buffer.first() == Some(&b'\n') {
                            self.consume(1);
                            self.line += 1;
                        }
                    }
                    return Ok(too_long);
                }
            }
        }
    }
}
