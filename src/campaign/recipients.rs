//! Reading a recipient list as a stream, one item per line (per record, for CSV): a recipient,
//! or a line set aside with the reason. Each item knows its line number and its byte range in
//! the file, so a batch can be read again later from its bytes alone.
//!
//! The format comes from the file's extension: `.csv` (a header line, then RFC 4180 records; a
//! quoted field may hold line breaks) or `.jsonl` / `.ndjson` (one JSON object per line). A UTF-8
//! byte order mark at the start is skipped; lines may end in CRLF; blank lines (nothing but
//! spaces and tabs) are skipped and not counted. Memory does not grow with the list: one record
//! is held at a time, and a record longer than [`MAX_RECORD_BYTES`] is set aside without being
//! held whole.
//!
//! CSV is read with `csv-core` (the `csv` crate's own parser) driven here rather than through
//! `csv::Reader`, whose positions are taken before the blank lines and the `\n` of a CRLF that it
//! skips ahead of a record: a CRLF file would get wrong line numbers and start offsets.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{ListSpec, Recipient};

mod address;
mod line;
mod probe;
pub use address::check_address;
mod source;
use probe::Probe;
use source::{Raw, Source};

/// A recipient id longer than this is set aside.
pub const MAX_ID_BYTES: usize = 256;
/// An address longer than this is malformed (RFC 5321's limit on a forward path, less the
/// angle brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// An address whose part before the `@` is longer than this is malformed (RFC 5321).
pub const MAX_LOCAL_PART_BYTES: usize = 64;
/// A line (a CSV record) longer than this is set aside unread.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// How much of a set-aside line its [`Entry::Rejected`] text keeps.
pub const MAX_TEXT_BYTES: usize = 1024;

const BUFFER_BYTES: usize = 64 * 1024;
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Reading a list failed as a whole (a line that cannot be used is an [`Entry::Rejected`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the recipient list `{}`: {source}", file.display())]
    Read { file: PathBuf, source: io::Error },
    #[error(
        "the recipient list `{}` is neither CSV (`.csv`) nor JSON Lines (`.jsonl`, `.ndjson`)",
        file.display()
    )]
    Format { file: PathBuf },
    #[error("the header of the recipient list `{}` {problem}", file.display())]
    Header { file: PathBuf, problem: String },
    #[error("the header of the recipient list `{}` has no `{field}` column", file.display())]
    MissingColumn { file: PathBuf, field: String },
}

/// A list's format, from its file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, Error> {
        let extension = path.extension().and_then(|extension| extension.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson") => Ok(Format::JsonLines),
            _ => Err(Error::Format { file: path.to_path_buf() }),
        }
    }
}

/// One line of the list (one record, which for CSV may span lines), where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based number of the line the item starts on (for CSV, the header is line 1).
    pub line: u64,
    /// Byte offset of the item's first byte.
    pub start: u64,
    /// Byte offset just past the item's line ending.
    pub end: u64,
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Recipient(Recipient),
    /// Set aside: why, and the line's text (at most [`MAX_TEXT_BYTES`], without its line ending).
    Rejected {
        reason: Reason,
        text: String,
    },
}

/// Why a line is set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Not valid JSON, or not UTF-8.
    Unparsable(String),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A CSV record with a different number of fields than the header.
    FieldCount {
        found: usize,
        expected: usize,
    },
    /// Longer than [`MAX_RECORD_BYTES`].
    TooLong,
    MissingId,
    /// The id is neither a string nor a number.
    IdNotText,
    IdTooLong {
        bytes: usize,
    },
    /// No address, or an empty one.
    MissingAddress,
    MalformedAddress(&'static str),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Unparsable(why) => write!(formatter, "unparsable: {why}"),
            Reason::NotAnObject => write!(formatter, "unparsable: not a JSON object"),
            Reason::FieldCount { found, expected } => {
                write!(formatter, "unparsable: {found} fields, the header has {expected}")
            }
            Reason::TooLong => write!(formatter, "unparsable: longer than {MAX_RECORD_BYTES} bytes"),
            Reason::MissingId => write!(formatter, "missing id"),
            Reason::IdNotText => write!(formatter, "malformed id: neither a string nor a number"),
            Reason::IdTooLong { bytes } => write!(formatter, "malformed id: {bytes} bytes, more than {MAX_ID_BYTES}"),
            Reason::MissingAddress => write!(formatter, "missing address"),
            Reason::MalformedAddress(why) => write!(formatter, "malformed address: {why}"),
        }
    }
}

/// A CSV header: its names, and where the id and the address are.
#[derive(Debug, Clone)]
pub struct Columns {
    names: Vec<String>,
    id: usize,
    address: usize,
}

impl Columns {
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A list read as a stream of [`Item`]s.
pub struct Reader<R> {
    source: Source<R>,
    file: PathBuf,
    id_field: String,
    address_field: String,
    /// CSV only.
    columns: Option<Columns>,
    /// Whether recipients carry every field of their line (see [`Reader::without_fields`]).
    keep_fields: bool,
}

impl Reader<File> {
    /// Opens the list at `path` and, for CSV, reads its header.
    pub fn open(path: &Path, spec: &ListSpec) -> Result<Reader<File>, Error> {
        let format = Format::of(path)?;
        let file = File::open(path).map_err(|source| Error::Read { file: path.to_path_buf(), source })?;
        Reader::new(file, format, spec, path)
    }
}

impl<R: Read> Reader<R> {
    /// Reads the list from `input`, from its start: skips a byte order mark and, for CSV, reads
    /// the header. `file` names the list in errors.
    pub fn new(input: R, format: Format, spec: &ListSpec, file: &Path) -> Result<Reader<R>, Error> {
        let mut reader = Reader::resume(input, format, spec, file, None, 0, 1);
        reader.source.skip_byte_order_mark().map_err(|source| reader.read_error(source))?;
        if format == Format::Csv {
            reader.columns = Some(reader.header()?);
        }
        Ok(reader)
    }

    /// Reads a part of a list: `input` starts at byte `offset`, on line `line`, at a record's
    /// start. A CSV list's `columns` are those its header gave ([`Reader::columns`]).
    pub fn resume(
        input: R,
        format: Format,
        spec: &ListSpec,
        file: &Path,
        columns: Option<Columns>,
        offset: u64,
        line: u64,
    ) -> Reader<R> {
        Reader {
            source: Source::new(input, format, offset, line),
            file: file.to_path_buf(),
            id_field: spec.id_field.clone(),
            address_field: spec.address_field.clone(),
            columns,
            keep_fields: true,
        }
    }

    /// Gives recipients without their fields (an empty map): only what is needed to plan, read
    /// faster. Lines are checked just the same.
    pub fn without_fields(mut self) -> Reader<R> {
        self.keep_fields = false;
        self
    }

    /// A CSV list's header.
    pub fn columns(&self) -> Option<&Columns> {
        self.columns.as_ref()
    }

    /// The input, once read (to hash what was read, for instance).
    pub fn into_inner(self) -> R {
        self.source.input.into_inner()
    }

    fn read_error(&self, source: io::Error) -> Error {
        Error::Read { file: self.file.clone(), source }
    }

    fn header_error(&self, problem: impl Into<String>) -> Error {
        Error::Header { file: self.file.clone(), problem: problem.into() }
    }

    fn header(&mut self) -> Result<Columns, Error> {
        let Some(raw) = self.source.next_record().map_err(|source| self.read_error(source))? else {
            return Err(self.header_error("is missing: the file is empty"));
        };
        if raw.too_long {
            return Err(self.header_error(format!("is longer than {MAX_RECORD_BYTES} bytes")));
        }
        let csv = self.source.csv.as_ref().expect("a CSV source");
        let mut names = Vec::with_capacity(csv.count);
        for field in csv.fields() {
            let Ok(name) = std::str::from_utf8(field) else {
                return Err(self.header_error("is not UTF-8"));
            };
            let name = name.trim().to_string();
            if names.contains(&name) {
                return Err(self.header_error(format!("names `{name}` twice")));
            }
            names.push(name);
        }
        let position = |field: &str| {
            names
                .iter()
                .position(|name| name == field)
                .ok_or_else(|| Error::MissingColumn { file: self.file.clone(), field: field.to_string() })
        };
        let id = position(&self.id_field)?;
        let address = position(&self.address_field)?;
        Ok(Columns { names, id, address })
    }

    /// The next item, or `None` at the end of the list.
    pub fn next_item(&mut self) -> Result<Option<Item>, Error> {
        let Some(raw) = self.source.next_record().map_err(|source| self.read_error(source))? else {
            return Ok(None);
        };
        let entry = match self.entry(&raw) {
            Ok(recipient) => Entry::Recipient(recipient),
            Err(reason) => Entry::Rejected { reason, text: excerpt(&self.source.bytes) },
        };
        Ok(Some(Item { line: raw.line, start: raw.start, end: raw.end, entry }))
    }

    fn entry(&self, raw: &Raw) -> Result<Recipient, Reason> {
        if raw.too_long {
            return Err(Reason::TooLong);
        }
        let (fields, id, address) = match &self.columns {
            Some(columns) => self.csv_entry(columns)?,
            None => self.json_entry()?,
        };
        if id.is_empty() {
            return Err(Reason::MissingId);
        }
        if id.len() > MAX_ID_BYTES {
            return Err(Reason::IdTooLong { bytes: id.len() });
        }
        if address.is_empty() {
            return Err(Reason::MissingAddress);
        }
        check_address(&address).map_err(Reason::MalformedAddress)?;
        Ok(Recipient { line: raw.line, id, address, fields })
    }

    /// A CSV record's fields (empty without `keep_fields`), id and address.
    fn csv_entry(&self, columns: &Columns) -> Result<(Map<String, Value>, String, String), Reason> {
        let csv = self.source.csv.as_ref().expect("a CSV source");
        if csv.count != columns.names.len() {
            return Err(Reason::FieldCount { found: csv.count, expected: columns.names.len() });
        }
        let mut fields = Map::new();
        let (mut id, mut address) = (String::new(), String::new());
        for (index, (name, field)) in columns.names.iter().zip(csv.fields()).enumerate() {
            let Ok(value) = std::str::from_utf8(field) else {
                return Err(Reason::Unparsable(format!("field `{name}` is not UTF-8")));
            };
            if index == columns.id {
                id = value.trim().to_string();
            }
            if index == columns.address {
                address = value.trim().to_string();
            }
            if self.keep_fields {
                fields.insert(name.clone(), Value::String(value.to_string()));
            }
        }
        Ok((fields, id, address))
    }

    /// A JSON line's fields (empty without `keep_fields`), id and address.
    fn json_entry(&self) -> Result<(Map<String, Value>, String, String), Reason> {
        let line = self.source.bytes.strip_suffix(b"\n").unwrap_or(&self.source.bytes);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.keep_fields {
            // Only the id and the address are kept; every other value is checked and dropped.
            if let Some((id, address)) = line::probe(line, &self.id_field, &self.address_field) {
                return Ok((Map::new(), id_text(id.as_ref())?, address_text(address.as_ref())?));
            }
            let mut deserializer = serde_json::Deserializer::from_slice(line);
            let probe = Probe { id_field: &self.id_field, address_field: &self.address_field };
            let probed = serde::de::DeserializeSeed::deserialize(probe, &mut deserializer)
                .and_then(|probed| deserializer.end().map(|()| probed));
            // A line that does not pass is parsed again whole, for the reason.
            if let Ok((id, address)) = probed {
                return Ok((Map::new(), id_text(id.as_ref())?, address_text(address.as_ref())?));
            }
        }
        // The usual line without serde_json; any other the way it always was.
        let parsed = match line::object(line) {
            Some(fields) => Ok(Value::Object(fields)),
            None => serde_json::from_slice::<Value>(line),
        };
        let fields = match parsed {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(Reason::NotAnObject),
            Err(error) => return Err(Reason::Unparsable(json_problem(&error))),
        };
        let id = id_text(fields.get(&self.id_field))?;
        let address = address_text(fields.get(&self.address_field))?;
        Ok((fields, id, address))
    }
}

/// A JSON id as text: a string (trimmed) or a number; empty if absent or null.
fn id_text(value: Option<&Value>) -> Result<String, Reason> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(id)) => Ok(id.trim().to_string()),
        Some(Value::Number(id)) => Ok(id.to_string()),
        Some(_) => Err(Reason::IdNotText),
    }
}

/// A JSON address as text (trimmed); empty if absent or null.
fn address_text(value: Option<&Value>) -> Result<String, Reason> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(address)) => Ok(address.trim().to_string()),
        Some(_) => Err(Reason::MalformedAddress("not a string")),
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Item, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// What is wrong with a line that is not JSON, without serde_json's "at line 1" (it is always
/// line 1 of the line).
fn json_problem(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("not JSON: {} (column {})", &text[..at], error.column()),
        None => format!("not JSON: {text}"),
    }
}

/// The start of a line's text, without its line ending: at most [`MAX_TEXT_BYTES`], cut at a
/// character boundary, bytes that are not UTF-8 replaced.
fn excerpt(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_TEXT_BYTES)];
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let kept = text.trim_end_matches(['\r', '\n']).len();
    text.truncate(kept);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ListSpec {
        ListSpec { id_field: "member_id".into(), address_field: "email".into(), batch_size: 10 }
    }

    /// An item read: (line, start, end, the recipient's id and address, or the reason).
    type Read = (u64, u64, u64, String);

    /// Each item of `text` read as `format`.
    fn read(format: Format, text: &str) -> Vec<Read> {
        let reader = Reader::new(text.as_bytes(), format, &spec(), Path::new("list")).unwrap();
        reader
            .map(|item| {
                let item = item.unwrap();
                let what = match &item.entry {
                    Entry::Recipient(recipient) => format!("{} <{}>", recipient.id, recipient.address),
                    Entry::Rejected { reason, .. } => reason.to_string(),
                };
                assert!(item.start < item.end && item.end <= text.len() as u64, "{item:?}");
                (item.line, item.start, item.end, what)
            })
            .collect()
    }

    #[test]
    fn json_lines() {
        let long_id = "9".repeat(257);
        let cases: Vec<(String, Vec<Read>)> = vec![
            (
                "{\"member_id\": 1, \"email\": \"a@b.example\"}\n".into(),
                vec![(1, 0, 41, "1 <a@b.example>".into())],
            ),
            // Blank lines are skipped, CRLF belongs to its line, the last line needs no ending.
            (
                "\n  \r\n{\"member_id\":\"x\",\"email\":\" A@B.example \"}\r\n\n{\"member_id\":\"y\",\"email\":\"c@d.example\"}"
                    .into(),
                vec![(3, 5, 48, "x <A@B.example>".into()), (5, 49, 88, "y <c@d.example>".into())],
            ),
            (
                "\u{feff}{\"member_id\":2,\"email\":\"a@b.example\"}\n".into(),
                vec![(1, 3, 41, "2 <a@b.example>".into())],
            ),
            ("{\"member_id\": 1,\n".into(), vec![(1, 0, 17, "unparsable: not JSON: EOF while parsing a value (column 16)".into())]),
            ("[1, 2]\n\"x\"\n".into(), vec![
                (1, 0, 7, "unparsable: not a JSON object".into()),
                (2, 7, 11, "unparsable: not a JSON object".into()),
            ]),
            ("{\"email\":\"a@b.example\"}\n".into(), vec![(1, 0, 24, "missing id".into())]),
            ("{\"member_id\":\"  \",\"email\":\"a@b.example\"}\n".into(), vec![(1, 0, 41, "missing id".into())]),
            ("{\"member_id\":null,\"email\":\"a@b.example\"}\n".into(), vec![(1, 0, 41, "missing id".into())]),
            (
                "{\"member_id\":true,\"email\":\"a@b.example\"}\n".into(),
                vec![(1, 0, 41, "malformed id: neither a string nor a number".into())],
            ),
            (
                format!("{{\"member_id\":\"{long_id}\",\"email\":\"a@b.example\"}}\n"),
                vec![(1, 0, 296, "malformed id: 257 bytes, more than 256".into())],
            ),
            ("{\"member_id\":1}\n".into(), vec![(1, 0, 16, "missing address".into())]),
            ("{\"member_id\":1,\"email\":\"\"}\n".into(), vec![(1, 0, 27, "missing address".into())]),
            (
                "{\"member_id\":1,\"email\":7}\n".into(),
                vec![(1, 0, 26, "malformed address: not a string".into())],
            ),
            (
                "{\"member_id\":1,\"email\":\"a.example\"}\n".into(),
                vec![(1, 0, 36, "malformed address: not exactly one `@`".into())],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(read(Format::JsonLines, &text), expected, "{text:?}");
        }
    }

    #[test]
    fn json_keeps_numbers_and_every_field() {
        let text = "{\"member_id\":7,\"email\":\"a@b.example\",\"offer_points\":1500,\"vip\":true,\"name\":\"Ana\"}\n";
        let mut reader = Reader::new(text.as_bytes(), Format::JsonLines, &spec(), Path::new("list")).unwrap();
        let Entry::Recipient(recipient) = reader.next_item().unwrap().unwrap().entry else { panic!("a recipient") };
        assert_eq!(recipient.fields["offer_points"], serde_json::json!(1500));
        assert_eq!(recipient.fields["vip"], serde_json::json!(true));
        assert_eq!(recipient.fields["member_id"], serde_json::json!(7));
        assert_eq!(recipient.fields.len(), 5);
        assert!(reader.next_item().unwrap().is_none());
    }

    #[test]
    fn planning_without_fields_judges_every_line_alike() {
        let deep =
            format!("{{\"member_id\":1,\"email\":\"a@b.example\",\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let lines: Vec<Vec<u8>> = vec![
            br#"{"member_id":1,"email":"a@b.example","note":"\ud83d alone"}"#.to_vec(),
            br#"{"member_id":1,"email":"a@b.example","note":"\ud83d\ude00 paired"}"#.to_vec(),
            b"{\"member_id\":1,\"email\":\"a@b.example\",\"note\":\"\xff\"}".to_vec(),
            b"{\"member_id\":1,\"email\":\"a@b.example\",\"note\":\"tab\tinside\"}".to_vec(),
            br#"{"member_id":1,"email":"a@b.example","nested":{"a":[1,2.5,-3,true,null,{"b":"c"}]}}"#.to_vec(),
            br#"{"member\u005fid":1,"em\u0061il":"a@b.example"}"#.to_vec(),
            br#"{"member_id":1,"member_id":2,"email":"x","email":"a@b.example"}"#.to_vec(),
            br#"{"member_id":1.5e3,"email":"a@b.example"}"#.to_vec(),
            br#"{"member_id":1,"email":"a@b.example"} trailing"#.to_vec(),
            br#"{"member_id":1,"email":"a@b.example",}"#.to_vec(),
            br#"{"member_id":1,"email":"a@b.example","n":01}"#.to_vec(),
            br#"{"member_id":[1],"email":"a@b.example"}"#.to_vec(),
            br#"{"member_id":1,"email":{"a":"b"}}"#.to_vec(),
            br#"{"member_id":"x","email":"a@b.example","x":1e999}"#.to_vec(),
            br#"[{"member_id":1,"email":"a@b.example"}]"#.to_vec(),
            br#""text""#.to_vec(),
            deep.into_bytes(),
        ];
        let mut accepted = 0;
        for line in lines {
            let mut text = line.clone();
            text.push(b'\n');
            let judge = |reader: Reader<&[u8]>| {
                let mut reader = reader;
                match reader.next_item().unwrap().unwrap().entry {
                    Entry::Recipient(recipient) => Ok((recipient.line, recipient.id, recipient.address)),
                    Entry::Rejected { reason, .. } => Err(reason),
                }
            };
            let whole = judge(Reader::new(text.as_slice(), Format::JsonLines, &spec(), Path::new("list")).unwrap());
            let probed = judge(
                Reader::new(text.as_slice(), Format::JsonLines, &spec(), Path::new("list")).unwrap().without_fields(),
            );
            assert_eq!(whole, probed, "{}", String::from_utf8_lossy(&line));
            accepted += usize::from(whole.is_ok());
        }
        // A paired surrogate, nesting, escaped keys, a repeated key, a number as the id.
        assert_eq!(accepted, 5);
    }

    #[test]
    fn csv() {
        let header = "member_id,email,first_name\n";
        let cases: Vec<(String, Vec<Read>)> = vec![
            (format!("{header}1,a@b.example,Ana\n"), vec![(2, 27, 45, "1 <a@b.example>".into())]),
            // A quoted field with a line break: the record starts on line 2, the next on line 4.
            (
                format!("{header}1,a@b.example,\"Ana\nMaria\"\n2,c@d.example,\"Bo \"\"B\"\"\"\n"),
                vec![(2, 27, 53, "1 <a@b.example>".into()), (4, 53, 78, "2 <c@d.example>".into())],
            ),
            // CRLF, and blank lines (empty, or spaces) between records.
            (
                "member_id,email,first_name\r\n1,a@b.example,Ana\r\n\r\n   \r\n2,c@d.example,Bo\r\n".into(),
                vec![(2, 28, 47, "1 <a@b.example>".into()), (5, 54, 72, "2 <c@d.example>".into())],
            ),
            (format!("\u{feff}{header}1,a@b.example,Ana"), vec![(2, 30, 47, "1 <a@b.example>".into())]),
            (format!("{header}1,a@b.example\n"), vec![(2, 27, 41, "unparsable: 2 fields, the header has 3".into())]),
            (format!("{header},a@b.example,Ana\n"), vec![(2, 27, 44, "missing id".into())]),
            (format!("{header}1,,Ana\n"), vec![(2, 27, 34, "missing address".into())]),
            (
                format!("{header}1,a b@c.example,Ana\n"),
                vec![(2, 27, 47, "malformed address: contains a space or a control character".into())],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(read(Format::Csv, &text), expected, "{text:?}");
        }
    }

    #[test]
    fn csv_fields_are_strings_by_header_name() {
        let text = "member_id , email,offer_points\n0042,a@b.example,1500\n";
        let mut reader = Reader::new(text.as_bytes(), Format::Csv, &spec(), Path::new("list")).unwrap();
        let Entry::Recipient(recipient) = reader.next_item().unwrap().unwrap().entry else { panic!("a recipient") };
        assert_eq!(recipient.id, "0042");
        assert_eq!(recipient.fields["offer_points"], serde_json::json!("1500"));
        assert_eq!(reader.columns().unwrap().names(), ["member_id", "email", "offer_points"]);
    }

    #[test]
    fn csv_header_problems_are_errors() {
        let cases = [
            ("", "the header of the recipient list `list` is missing: the file is empty"),
            ("\n\n", "the header of the recipient list `list` is missing: the file is empty"),
            ("id,email\n1,a@b.example\n", "the header of the recipient list `list` has no `member_id` column"),
            ("member_id,mail\n", "the header of the recipient list `list` has no `email` column"),
            ("member_id,email,email\n", "the header of the recipient list `list` names `email` twice"),
        ];
        for (text, expected) in cases {
            let error = Reader::new(text.as_bytes(), Format::Csv, &spec(), Path::new("list")).err().unwrap();
            assert_eq!(error.to_string(), expected, "{text:?}");
        }
    }

    #[test]
    fn a_line_too_long_is_set_aside_without_holding_it() {
        for format in [Format::JsonLines, Format::Csv] {
            let header = if format == Format::Csv { "member_id,email\n" } else { "" };
            let long = "x".repeat(MAX_RECORD_BYTES + 10);
            let text = match format {
                Format::Csv => format!("{header}\"{long}\",a@b.example\n2,c@d.example\n"),
                Format::JsonLines => {
                    format!("{{\"member_id\":\"{long}\"}}\n{{\"member_id\":2,\"email\":\"c@d.example\"}}\n")
                }
            };
            let items = read(format, &text);
            assert_eq!(items.len(), 2, "{format:?}");
            assert_eq!(items[0].3, format!("unparsable: longer than {MAX_RECORD_BYTES} bytes"), "{format:?}");
            assert_eq!(items[1].3, "2 <c@d.example>", "{format:?}");
        }
    }

    #[test]
    fn rejected_text_is_cut_to_a_kibibyte_at_a_character() {
        let text = format!("{}\r\n", "é".repeat(600));
        assert_eq!(excerpt(text.as_bytes()), "é".repeat(512));
        assert_eq!(excerpt(b"{bad\r\n"), "{bad");
        assert_eq!(excerpt(b"\xff{\n"), "\u{fffd}{");
    }

    #[test]
    fn formats_come_from_extensions() {
        let cases = [
            ("members.csv", Some(Format::Csv)),
            ("members.CSV", Some(Format::Csv)),
            ("members.jsonl", Some(Format::JsonLines)),
            ("members.ndjson", Some(Format::JsonLines)),
            ("members.json", None),
            ("members", None),
        ];
        for (name, expected) in cases {
            assert_eq!(Format::of(Path::new(name)).ok(), expected, "{name}");
        }
    }
}
