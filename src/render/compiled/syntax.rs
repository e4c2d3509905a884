//! The part of tera 2's template language that a compiled campaign template understands, read
//! the way tera reads it: the same split into text and tags, the same whitespace control
//! (`{{-`, `-%}`, `{#- -#}`), the same operator precedence. Anything else (loops, includes,
//! blocks, macros, function calls, subscripts, arithmetic, other filters and tests) is
//! [`Unsupported`], and the template is rendered by tera instead.
//!
//! Only templates that tera has already parsed come here, so a malformed template needs no
//! message: whatever this reader does not follow is unsupported, never an error of its own.

/// The template uses something this reader does not follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// A template as nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Print(Expr),
    /// `if`, its `elif`s in order, and what `else` holds (empty without one).
    If {
        branches: Vec<(Expr, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Set(String, Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    /// A variable and the attributes read from it: `recipient.first_name`.
    Path(String, Vec<String>),
    Concat(Box<Expr>, Box<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    NotEqual(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `then if condition else otherwise`.
    Ternary {
        condition: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    /// `is defined` (`true`) or `is undefined` (`false`).
    Defined(Box<Expr>, bool),
    /// `| trim`.
    Trim(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Content(&'a str),
    VariableStart(bool),
    VariableEnd(bool),
    TagStart(bool),
    TagEnd(bool),
    /// Whether each end trims whitespace; never reaches the parser.
    Comment(bool, bool),
    Ident(&'a str),
    Str(String),
    Int(i64),
    Bool(bool),
    Equal,
    NotEqual,
    Tilde,
    Pipe,
    Assign,
    Dot,
    LeftParen,
    RightParen,
}

/// Reads `source` into nodes.
pub fn parse(source: &str) -> Result<Vec<Node>, Unsupported> {
    let tokens = trim_whitespace(tokenize(source)?);
    let mut parser = Parser { tokens, at: 0 };
    let (nodes, end) = parser.nodes(&[])?;
    match end {
        None => Ok(nodes),
        Some(_) => Err(Unsupported),
    }
}

/// Where text stops: the next `{{`, `{%` or `{#`.
fn next_marker(text: &str) -> Option<usize> {
    text.as_bytes().windows(2).position(|pair| matches!(pair, b"{{" | b"{%" | b"{#"))
}

fn tokenize(source: &str) -> Result<Vec<Token<'_>>, Unsupported> {
    #[derive(PartialEq)]
    enum Inside {
        Text,
        Variable,
        Tag,
    }
    let mut tokens = Vec::new();
    let mut rest = source;
    let mut inside = Inside::Text;
    while !rest.is_empty() {
        if inside == Inside::Text {
            let trims = rest.as_bytes().get(2) == Some(&b'-');
            let skip = if trims { 3 } else { 2 };
            if rest.starts_with("{{") {
                tokens.push(Token::VariableStart(trims));
                rest = &rest[skip..];
                inside = Inside::Variable;
            } else if rest.starts_with("{%") {
                rest = &rest[skip..];
                // `{% raw %}` keeps its body as text: not followed here.
                if rest.trim_start_matches('-').trim_start_matches(|c: char| c.is_ascii_whitespace()).starts_with("raw")
                {
                    return Err(Unsupported);
                }
                tokens.push(Token::TagStart(trims));
                inside = Inside::Tag;
            } else if rest.starts_with("{#") {
                rest = &rest[skip..];
                let end = rest.find("#}").ok_or(Unsupported)?;
                let trims_after = end > 0 && rest.as_bytes()[end - 1] == b'-';
                tokens.push(Token::Comment(trims, trims_after));
                rest = &rest[end + 2..];
            } else {
                let end = next_marker(rest).unwrap_or(rest.len());
                tokens.push(Token::Content(&rest[..end]));
                rest = &rest[end..];
            }
            continue;
        }
        let blank = rest.bytes().take_while(u8::is_ascii_whitespace).count();
        rest = &rest[blank..];
        if rest.is_empty() {
            break;
        }
        let end = if inside == Inside::Tag { "%}" } else { "}}" };
        if rest.starts_with(end) || (rest.starts_with('-') && rest[1..].starts_with(end)) {
            let trims = rest.starts_with('-');
            tokens.push(if inside == Inside::Tag { Token::TagEnd(trims) } else { Token::VariableEnd(trims) });
            rest = &rest[end.len() + usize::from(trims)..];
            inside = Inside::Text;
            continue;
        }
        let (token, length) = match rest.as_bytes() {
            [b'=', b'=', ..] => (Token::Equal, 2),
            [b'!', b'=', ..] => (Token::NotEqual, 2),
            [b'~', ..] => (Token::Tilde, 1),
            [b'|', ..] => (Token::Pipe, 1),
            [b'=', ..] => (Token::Assign, 1),
            [b'(', ..] => (Token::LeftParen, 1),
            [b')', ..] => (Token::RightParen, 1),
            // `...` (spread) is not followed; `.` before anything else is.
            [b'.', b'.', ..] => return Err(Unsupported),
            [b'.', ..] => (Token::Dot, 1),
            [quote @ (b'"' | b'\'' | b'`'), ..] => string(rest, *quote)?,
            [digit, ..] if digit.is_ascii_digit() => {
                let length = rest.bytes().take_while(u8::is_ascii_digit).count();
                // A float (`1.5`) is not followed.
                if rest.as_bytes().get(length) == Some(&b'.') {
                    return Err(Unsupported);
                }
                (Token::Int(rest[..length].parse().map_err(|_| Unsupported)?), length)
            }
            [first, ..] if *first == b'_' || first.is_ascii_alphabetic() => {
                let length = rest.bytes().take_while(|c| *c == b'_' || c.is_ascii_alphanumeric()).count();
                match &rest[..length] {
                    "true" | "True" => (Token::Bool(true), length),
                    "false" | "False" => (Token::Bool(false), length),
                    ident => (Token::Ident(ident), length),
                }
            }
            _ => return Err(Unsupported),
        };
        tokens.push(token);
        rest = &rest[length..];
    }
    Ok(tokens)
}

/// A string literal at the start of `rest`, unescaped as tera unescapes it, and its length.
fn string(rest: &str, quote: u8) -> Result<(Token<'static>, usize), Unsupported> {
    let bytes = rest.as_bytes();
    let mut at = 1;
    let mut escaped = false;
    while at < bytes.len() {
        match bytes[at] {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            byte if byte == quote => break,
            _ => {}
        }
        at += 1;
    }
    if bytes.get(at) != Some(&quote) {
        return Err(Unsupported);
    }
    let mut text = String::with_capacity(at);
    let mut chars = rest[1..at].chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next().ok_or(Unsupported)? {
            c @ ('"' | '\'' | '/' | '\\') => text.push(c),
            'n' => text.push('\n'),
            't' => text.push('\t'),
            'r' => text.push('\r'),
            _ => return Err(Unsupported),
        }
    }
    Ok((Token::Str(text), at + 1))
}

/// tera's whitespace control: text after a tag that ends with `-` loses its leading whitespace,
/// text before a tag that starts with `-` its trailing whitespace; a comment becomes empty text.
fn trim_whitespace(tokens: Vec<Token<'_>>) -> Vec<Token<'_>> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut trim_next = false;
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Content(text) => {
                let mut text = *text;
                if trim_next {
                    trim_next = false;
                    text = text.trim_start();
                }
                if matches!(
                    tokens.get(index + 1),
                    Some(Token::VariableStart(true) | Token::TagStart(true) | Token::Comment(true, _))
                ) {
                    text = text.trim_end();
                }
                out.push(Token::Content(text));
            }
            Token::VariableEnd(true) | Token::TagEnd(true) => {
                trim_next = true;
                out.push(token.clone());
            }
            // As tera: a comment whose end does not trim leaves the flag as it was.
            Token::Comment(_, trims_after) => {
                if *trims_after {
                    trim_next = true;
                }
                out.push(Token::Content(""));
            }
            other => {
                trim_next = false;
                out.push(other.clone());
            }
        }
    }
    out
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
}

/// tera's binding powers (left, right) of the binary operators followed here.
fn binding_power(token: &Token<'_>) -> Option<(u8, u8)> {
    Some(match token {
        Token::Ident("or") => (1, 2),
        Token::Ident("and") => (3, 4),
        Token::Ident("is") => (5, 6),
        Token::Equal | Token::NotEqual => (7, 8),
        Token::Tilde => (13, 14),
        Token::Pipe => (17, 18),
        _ => return None,
    })
}

/// The binding power of `not`'s operand.
const NOT_POWER: u8 = 5;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token<'a>, Unsupported> {
        let token = self.tokens.get(self.at).cloned().ok_or(Unsupported)?;
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, expected: &Token<'_>) -> Result<(), Unsupported> {
        if self.next()? == *expected { Ok(()) } else { Err(Unsupported) }
    }

    fn expect_tag_end(&mut self) -> Result<(), Unsupported> {
        match self.next()? {
            Token::TagEnd(_) => Ok(()),
            _ => Err(Unsupported),
        }
    }

    /// Nodes up to the end of the template or a tag named in `ends`, which is consumed (its
    /// `{%` and name) and returned.
    fn nodes(&mut self, ends: &[&str]) -> Result<(Vec<Node>, Option<&'a str>), Unsupported> {
        let mut nodes = Vec::new();
        while let Some(token) = self.peek().cloned() {
            self.at += 1;
            match token {
                Token::Content(text) => {
                    if !text.is_empty() {
                        nodes.push(Node::Text(text.to_string()));
                    }
                }
                Token::VariableStart(_) => {
                    let expr = self.expression(0)?;
                    match self.next()? {
                        Token::VariableEnd(_) => nodes.push(Node::Print(expr)),
                        _ => return Err(Unsupported),
                    }
                }
                Token::TagStart(_) => match self.next()? {
                    Token::Ident(name) if ends.contains(&name) => return Ok((nodes, Some(name))),
                    Token::Ident("if") => nodes.push(self.if_tag()?),
                    Token::Ident("set" | "set_global") => {
                        let Token::Ident(name) = self.next()? else { return Err(Unsupported) };
                        self.expect(&Token::Assign)?;
                        let value = self.expression(0)?;
                        self.expect_tag_end()?;
                        nodes.push(Node::Set(name.to_string(), value));
                    }
                    _ => return Err(Unsupported),
                },
                _ => return Err(Unsupported),
            }
        }
        Ok((nodes, None))
    }

    /// After `{% if`: the condition, the branches, up to `{% endif %}`.
    fn if_tag(&mut self) -> Result<Node, Unsupported> {
        let mut branches = Vec::new();
        let mut condition = self.expression(0)?;
        loop {
            self.expect_tag_end()?;
            let (body, end) = self.nodes(&["elif", "else", "endif"])?;
            branches.push((condition, body));
            match end {
                Some("elif") => condition = self.expression(0)?,
                Some("else") => {
                    self.expect_tag_end()?;
                    let (otherwise, end) = self.nodes(&["endif"])?;
                    if end != Some("endif") {
                        return Err(Unsupported);
                    }
                    self.expect_tag_end()?;
                    return Ok(Node::If { branches, otherwise });
                }
                Some("endif") => {
                    self.expect_tag_end()?;
                    return Ok(Node::If { branches, otherwise: Vec::new() });
                }
                _ => return Err(Unsupported),
            }
        }
    }

    /// tera's Pratt parser, for the operators followed here.
    fn expression(&mut self, min_power: u8) -> Result<Expr, Unsupported> {
        let mut left = match self.next()? {
            Token::Int(n) => Expr::Int(n),
            Token::Str(text) => Expr::Str(text),
            Token::Bool(b) => Expr::Bool(b),
            Token::Ident("none" | "None" | "null") => Expr::None,
            Token::Ident("not") => {
                if matches!(self.peek(), Some(Token::Ident("not"))) {
                    return Err(Unsupported);
                }
                Expr::Not(Box::new(self.expression(NOT_POWER)?))
            }
            Token::Ident(name) => {
                // A function call, and `loop` (whose fields tera renames inside loops), are not followed.
                if matches!(self.peek(), Some(Token::LeftParen)) || name == "loop" || name.starts_with("__tera") {
                    return Err(Unsupported);
                }
                let mut attributes = Vec::new();
                while self.peek() == Some(&Token::Dot) {
                    self.at += 1;
                    match self.next()? {
                        Token::Ident(attribute) => attributes.push(attribute.to_string()),
                        _ => return Err(Unsupported),
                    }
                }
                if matches!(self.peek(), Some(Token::LeftParen)) {
                    return Err(Unsupported);
                }
                Expr::Path(name.to_string(), attributes)
            }
            Token::LeftParen => {
                let inner = self.expression(0)?;
                self.expect(&Token::RightParen)?;
                inner
            }
            _ => return Err(Unsupported),
        };
        while let Some(token) = self.peek().cloned() {
            if token == Token::Ident("if") {
                // A ternary takes the rest of the expression, as in tera.
                if min_power > 0 {
                    break;
                }
                self.at += 1;
                let condition = self.expression(0)?;
                self.expect(&Token::Ident("else"))?;
                let otherwise = self.expression(0)?;
                return Ok(Expr::Ternary {
                    condition: Box::new(condition),
                    then: Box::new(left),
                    otherwise: Box::new(otherwise),
                });
            }
            if matches!(token, Token::Ident("not" | "in")) {
                return Err(Unsupported);
            }
            let Some((left_power, right_power)) = binding_power(&token) else { break };
            if left_power < min_power {
                break;
            }
            self.at += 1;
            left = match token {
                Token::Ident("is") => {
                    let negated = self.peek() == Some(&Token::Ident("not"));
                    if negated {
                        self.at += 1;
                    }
                    let test = match self.next()? {
                        Token::Ident("defined") => Expr::Defined(Box::new(left), true),
                        Token::Ident("undefined") => Expr::Defined(Box::new(left), false),
                        _ => return Err(Unsupported),
                    };
                    if matches!(self.peek(), Some(Token::LeftParen)) {
                        return Err(Unsupported);
                    }
                    if negated { Expr::Not(Box::new(test)) } else { test }
                }
                Token::Pipe => {
                    if self.next()? != Token::Ident("trim") || matches!(self.peek(), Some(Token::LeftParen)) {
                        return Err(Unsupported);
                    }
                    Expr::Trim(Box::new(left))
                }
                operator => {
                    let right = self.expression(right_power)?;
                    let (left, right) = (Box::new(left), Box::new(right));
                    match operator {
                        // tera refuses a unary operator after `~`.
                        Token::Tilde if matches!(*right, Expr::Not(_)) => return Err(Unsupported),
                        Token::Tilde => Expr::Concat(left, right),
                        Token::Equal => Expr::Equal(left, right),
                        Token::NotEqual => Expr::NotEqual(left, right),
                        Token::Ident("and") => Expr::And(left, right),
                        Token::Ident("or") => Expr::Or(left, right),
                        _ => return Err(Unsupported),
                    }
                }
            };
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, attributes: &[&str]) -> Expr {
        Expr::Path(name.to_string(), attributes.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn precedence_is_teras() {
        let table: [(&str, Expr); 5] = [
            (
                "{{ a or b ~ \"x\" }}",
                Expr::Or(
                    Box::new(path("a", &[])),
                    Box::new(Expr::Concat(Box::new(path("b", &[])), Box::new(Expr::Str("x".into())))),
                ),
            ),
            (
                "{{ not a.b == \"no\" }}",
                Expr::Not(Box::new(Expr::Equal(Box::new(path("a", &["b"])), Box::new(Expr::Str("no".into()))))),
            ),
            (
                "{{ a if b else c | trim }}",
                Expr::Ternary {
                    condition: Box::new(path("b", &[])),
                    then: Box::new(path("a", &[])),
                    otherwise: Box::new(Expr::Trim(Box::new(path("c", &[])))),
                },
            ),
            (
                "{{ a is not defined and b }}",
                Expr::And(
                    Box::new(Expr::Not(Box::new(Expr::Defined(Box::new(path("a", &[])), true)))),
                    Box::new(path("b", &[])),
                ),
            ),
            ("{{ 'it\\'s' }}", Expr::Str("it's".into())),
        ];
        for (source, expected) in table {
            assert_eq!(parse(source), Ok(vec![Node::Print(expected)]), "{source}");
        }
    }

    #[test]
    fn what_is_not_followed_is_unsupported() {
        let table = [
            "{% for x in xs %}{% endfor %}",
            "{% include \"x.txt\" %}",
            "{{ f() }}",
            "{{ a[0] }}",
            "{{ a + 1 }}",
            "{{ 1.5 }}",
            "{{ a | default(value=1) }}",
            "{{ a | upper }}",
            "{{ a is odd }}",
            "{{ a in b }}",
            "{{ a?.b }}",
            "{% raw %}{{ x }}{% endraw %}",
            "{% if a %}",
            "{% set x %}y{% endset %}",
            "{{ -a }}",
        ];
        for source in table {
            assert_eq!(parse(source), Err(Unsupported), "{source}");
        }
    }
}
