//! JSON text to a tree of values that remember where they were written (line, column, and the
//! JSON pointer of each), with limits on size and depth so that hostile input is refused early.
//!
//! serde_json reports the first error only and forgets positions; an author fixing a CACAO
//! playbook needs every problem located, so the importer reads JSON through this small parser.

use crate::runbook::Mark;

/// How much a CACAO file may hold before it is refused as hostile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_bytes: 4 * 1024 * 1024, max_depth: 64, max_values: 200_000 }
    }
}

/// One JSON value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Json {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written, so that nothing is lost before it is typed.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in the order written; each key with where it is written.
    Object(Vec<(String, Mark, Json)>),
}

impl Json {
    /// The member `key` of an object (the last one, should a key be repeated: that is reported).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match &self.value {
            Value::Object(members) => members.iter().rev().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// What the value is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }

    /// The value as serde_json's, for bodies.
    pub fn to_serde(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(Json::to_serde).collect()),
            Value::Object(members) => {
                serde_json::Value::Object(members.iter().map(|(k, _, v)| (k.clone(), v.to_serde())).collect())
            }
        }
    }
}

/// A problem with the JSON text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub mark: Mark,
    pub message: String,
    /// True when a limit was reached rather than the grammar broken.
    pub limit: bool,
}

/// A key written twice in one object, with where (its JSON pointer, line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub key: String,
    pub pointer: String,
    pub mark: Mark,
}

/// Parses `text` as one JSON value; duplicate keys are returned beside the tree.
pub fn parse(text: &str, limits: Limits) -> Result<(Json, Vec<Duplicate>), SyntaxError> {
    if text.len() > limits.max_bytes {
        return Err(SyntaxError {
            mark: Mark::START,
            message: format!(
                "the file is {} bytes, CACAO playbooks may be at most {} bytes",
                text.len(),
                limits.max_bytes
            ),
            limit: true,
        });
    }
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        at: 0,
        line: 1,
        column: 1,
        limits,
        values: 0,
        duplicates: Vec::new(),
        path: Vec::new(),
    };
    parser.skip_space();
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.at < parser.bytes.len() {
        return Err(parser.error("text after the JSON value"));
    }
    Ok((value, parser.duplicates))
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    line: u32,
    column: u32,
    limits: Limits,
    values: usize,
    duplicates: Vec<Duplicate>,
    /// The keys and indices from the top to the value being read, for duplicates' pointers.
    path: Vec<String>,
}

impl Parser<'_> {
    fn mark(&self) -> Mark {
        Mark::new(self.line, self.column)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError { mark: self.mark(), message: message.into(), limit: false }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Moves past one character (whole, for UTF-8), keeping line and column.
    fn bump(&mut self) -> Option<char> {
        let c = self.text[self.at..].chars().next()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), SyntaxError> {
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(format!("expected {what}, found {}", self.found())))
        }
    }

    fn found(&self) -> String {
        match self.text[self.at..].chars().next() {
            None => "the end of the file".to_string(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            let mut error = self.error(format!("more than {} values in the file", self.limits.max_values));
            error.limit = true;
            return Err(error);
        }
        let mark = self.mark();
        let value = match self.peek() {
            Some(b'{') | Some(b'[') if depth >= self.limits.max_depth => {
                let mut error = self.error(format!("lists and objects nest more than {} deep", self.limits.max_depth));
                error.limit = true;
                return Err(error);
            }
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.error(format!("expected a JSON value, found {}", self.found()))),
        };
        Ok(Json { mark, value })
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.text[self.at..].starts_with(word) {
            for _ in 0..word.len() {
                self.bump();
            }
            Ok(value)
        } else {
            Err(self.error(format!("expected a JSON value, found {}", self.found())))
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.bump();
            }
            p.at > from
        };
        if !digits(self) {
            return Err(self.error("a number needs digits"));
        }
        if self.peek() == Some(b'.') {
            self.bump();
            if !digits(self) {
                return Err(self.error("a number needs digits after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if !digits(self) {
                return Err(self.error("a number needs digits in its exponent"));
            }
        }
        Ok(Value::Number(self.text[start..self.at].to_string()))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.expect(b'"', "`\"`")?;
        let mut out = String::new();
        loop {
            let mark = self.mark();
            match self.bump() {
                None => return Err(SyntaxError { mark, message: "a string is not closed".into(), limit: false }),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => {
                        let high = self.hex4()?;
                        let code = if (0xD800..0xDC00).contains(&high) {
                            if !self.text[self.at..].starts_with("\\u") {
                                return Err(self.error("a `\\u` surrogate pair is cut in half"));
                            }
                            self.bump();
                            self.bump();
                            let low = self.hex4()?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err(self.error("a `\\u` surrogate pair is cut in half"));
                            }
                            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            high
                        };
                        match char::from_u32(code) {
                            Some(c) => out.push(c),
                            None => return Err(self.error("a `\\u` escape that is no character")),
                        }
                    }
                    _ => {
                        return Err(SyntaxError {
                            mark,
                            message: "an unknown escape in a string".into(),
                            limit: false,
                        });
                    }
                },
                Some(c) if (c as u32) < 0x20 => {
                    return Err(SyntaxError { mark, message: "a control character in a string".into(), limit: false });
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self.text.get(self.at..self.at + 4).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(digits) = digits else { return Err(self.error("`\\u` needs four hex digits")) };
        let value = u32::from_str_radix(digits, 16).map_err(|_| self.error("`\\u` needs four hex digits"))?;
        for _ in 0..4 {
            self.bump();
        }
        Ok(value)
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.bump();
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_space();
            self.path.push(items.len().to_string());
            items.push(self.value(depth + 1)?);
            self.path.pop();
            self.skip_space();
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error(format!("expected `,` or `]`, found {}", self.found()))),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.bump();
        let mut members: Vec<(String, Mark, Json)> = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            let key_mark = self.mark();
            if self.peek() != Some(b'"') {
                return Err(self.error(format!("expected a key in quotes, found {}", self.found())));
            }
            let key = self.string()?;
            self.skip_space();
            self.expect(b':', "`:`")?;
            self.skip_space();
            self.path.push(key.clone());
            let value = self.value(depth + 1)?;
            if members.iter().any(|(k, _, _)| *k == key) {
                let pointer = self.path.iter().fold(String::new(), |at, segment| pointer(&at, segment));
                self.duplicates.push(Duplicate { key: key.clone(), pointer, mark: key_mark });
            }
            self.path.pop();
            members.push((key, key_mark, value));
            self.skip_space();
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b'}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error(format!("expected `,` or `}}`, found {}", self.found()))),
            }
        }
    }
}

/// A JSON pointer (RFC 6901) built a segment at a time.
pub fn pointer(parent: &str, segment: &str) -> String {
    format!("{parent}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_remember_where_they_start() {
        let (json, _) = parse("{\n  \"a\": [1, \"x\\u00e9\"],\n  \"b\": null}", Limits::default()).unwrap();
        let a = json.get("a").unwrap();
        assert_eq!(a.mark, Mark::new(2, 8));
        let Value::Array(items) = &a.value else { panic!("a list") };
        assert_eq!(items[1].value, Value::String("xé".into()));
        assert_eq!(items[1].mark, Mark::new(2, 12));
    }

    #[test]
    fn errors_are_located_and_limits_hold() {
        let error = parse("{\"a\": [1,]}", Limits::default()).unwrap_err();
        assert_eq!(error.mark, Mark::new(1, 10));
        let deep = "[".repeat(100_000);
        let error = parse(&deep, Limits::default()).unwrap_err();
        assert!(error.limit);
        let (_, duplicates) = parse("{\"a\": 1, \"a\": 2}", Limits::default()).unwrap();
        assert_eq!(duplicates, vec![Duplicate { key: "a".into(), pointer: "/a".into(), mark: Mark::new(1, 10) }]);
    }
}
