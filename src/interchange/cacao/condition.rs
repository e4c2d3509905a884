//! CACAO conditions (STIX patterning over playbook variables) to CEL, where they are simple
//! comparisons: `VAR OP VALUE`, `VAR IN (...)`, `VAR MATCHES '...'`, joined by `AND`, `OR`, with
//! `NOT` before an operator and brackets; `VAR` is `__name__:value`. Anything else of STIX
//! patterning (object paths such as `ipv4-addr:value`, `LIKE`, `ISSUBSET`, qualifiers, observation
//! operators) is refused with a reason, never guessed at.

/// Turns `condition` into CEL, reading each variable through `variable` (which gives the CEL for
/// a variable's name, or says why it cannot). The error is a message for the author.
pub fn to_cel(condition: &str, variable: &mut dyn FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let tokens = lex(condition)?;
    if tokens.is_empty() {
        return Err("the condition is empty".into());
    }
    let mut parser = Parser { tokens, at: 0, variable, depth: 0 };
    let cel = parser.or()?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(format!("unexpected {} after a complete comparison", token.describe()));
    }
    Ok(cel)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open(char),
    Close(char),
    Comma,
    Op(&'static str),
    Word(String),
    Var(String),
    Text(String),
    Number(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Open(c) | Token::Close(c) => format!("`{c}`"),
            Token::Comma => "`,`".into(),
            Token::Op(op) => format!("`{op}`"),
            Token::Word(word) => format!("`{word}`"),
            Token::Var(name) => format!("the variable `__{name}__`"),
            Token::Text(text) => format!("the string '{text}'"),
            Token::Number(n) => format!("the number {n}"),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '[' | '(') {
            tokens.push(Token::Open(c));
            i += 1;
        } else if matches!(c, ']' | ')') {
            tokens.push(Token::Close(c));
            i += 1;
        } else if c == ',' {
            tokens.push(Token::Comma);
            i += 1;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "!=" => "!=",
                "<=" => "<=",
                ">=" => ">=",
                "==" => "==",
                _ => match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => return Err("`!` is not an operator in STIX patterning; write `NOT` or `!=`".into()),
                },
            };
            i += op.len();
            tokens.push(Token::Op(op));
        } else if c == '\'' {
            let mut out = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("a quoted string is not closed".into()),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&escaped @ ('\'' | '\\')) => out.push(escaped),
                            _ => return Err("only `\\'` and `\\\\` are escapes in STIX strings".into()),
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        out.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(out));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while chars.get(i).is_some_and(|c| c.is_ascii_digit() || *c == '.') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c == '_' && chars.get(i + 1) == Some(&'_') {
            let rest: String = chars[i..].iter().collect();
            let Some((name, used)) = super::variable_at(&rest) else {
                return Err(format!(
                    "`{}` is not a CACAO variable reference (`__name__:value`)",
                    rest.split_whitespace().next().unwrap_or("")
                ));
            };
            tokens.push(Token::Var(name));
            i += rest[..used].chars().count();
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || matches!(*c, '-' | '_' | ':' | '.')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.contains(':') {
                return Err(format!(
                    "`{word}` is a STIX object path; phasegate conditions read playbook variables only (`__name__:value`)"
                ));
            }
            tokens.push(Token::Word(word));
        } else {
            return Err(format!("`{c}` has no meaning in a condition"));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    variable: &'a mut dyn FnMut(&str) -> Result<String, String>,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<String, String> {
        let mut parts = vec![self.and()?];
        while self.word("OR") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(parts.join(" || "))
    }

    fn and(&mut self) -> Result<String, String> {
        let mut parts = vec![self.comparison()?];
        while self.word("AND") {
            self.at += 1;
            parts.push(self.comparison()?);
        }
        Ok(parts.join(" && "))
    }

    fn comparison(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Token::Open(open)) => {
                self.depth += 1;
                if self.depth > 6 {
                    return Err("brackets nest more than 6 deep".into());
                }
                self.at += 1;
                let inner = self.or()?;
                let close = if open == '[' { ']' } else { ')' };
                if self.peek() != Some(&Token::Close(close)) {
                    return Err(format!("`{open}` is not closed by `{close}`"));
                }
                self.at += 1;
                self.depth -= 1;
                if let Some(Token::Word(word)) = self.peek()
                    && ["FOLLOWEDBY", "WITHIN", "REPEATS", "START", "STOP"].iter().any(|q| word.eq_ignore_ascii_case(q))
                {
                    return Err(format!("`{word}` (STIX observation operators and qualifiers) has no meaning here"));
                }
                Ok(format!("({inner})"))
            }
            Some(Token::Var(name)) => {
                self.at += 1;
                let left = (self.variable)(&name)?;
                let negated = self.word("NOT");
                if negated {
                    self.at += 1;
                }
                let cel = match self.peek().cloned() {
                    Some(Token::Op(op)) => {
                        self.at += 1;
                        let right = self.value()?;
                        let op = if matches!(op, "=" | "==") { "==" } else { op };
                        format!("{left} {op} {right}")
                    }
                    Some(Token::Word(word)) if word.eq_ignore_ascii_case("IN") => {
                        self.at += 1;
                        if self.peek() != Some(&Token::Open('(')) {
                            return Err("`IN` takes a list in brackets: `IN ('a', 'b')`".into());
                        }
                        self.at += 1;
                        let mut values = vec![self.value()?];
                        while self.peek() == Some(&Token::Comma) {
                            self.at += 1;
                            values.push(self.value()?);
                        }
                        if self.peek() != Some(&Token::Close(')')) {
                            return Err("the list after `IN` is not closed by `)`".into());
                        }
                        self.at += 1;
                        format!("{left} in [{}]", values.join(", "))
                    }
                    Some(Token::Word(word)) if word.eq_ignore_ascii_case("MATCHES") => {
                        self.at += 1;
                        let Some(Token::Text(pattern)) = self.peek().cloned() else {
                            return Err("`MATCHES` takes a regular expression in quotes".into());
                        };
                        self.at += 1;
                        format!("{left}.matches({})", quote(&pattern))
                    }
                    Some(Token::Word(word)) => {
                        return Err(format!(
                            "`{word}` is not translated: phasegate takes =, !=, <, <=, >, >=, IN and MATCHES"
                        ));
                    }
                    // A variable alone is a boolean flag.
                    _ if !negated => return Ok(format!("{left} == true")),
                    _ => return Err("`NOT` must come before an operator".into()),
                };
                Ok(if negated { format!("!({cel})") } else { cel })
            }
            Some(token) => {
                Err(format!("a comparison starts with a variable (`__name__:value`), not {}", token.describe()))
            }
            None => Err("the condition ends where a comparison should be".into()),
        }
    }

    fn value(&mut self) -> Result<String, String> {
        let token = self.peek().cloned();
        self.at += 1;
        match token {
            Some(Token::Text(text)) => Ok(quote(&text)),
            Some(Token::Number(n)) => Ok(n),
            Some(Token::Word(w)) if w == "true" || w == "false" => Ok(w),
            Some(Token::Var(name)) => (self.variable)(&name),
            Some(Token::Word(w)) if ["t", "h", "b"].contains(&w.as_str()) => {
                Err("timestamps, hex and binary constants are not translated".into())
            }
            Some(token) => Err(format!("expected a value, found {}", token.describe())),
            None => Err("the condition ends where a value should be".into()),
        }
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cel(condition: &str) -> Result<String, String> {
        to_cel(condition, &mut |name| Ok(format!("inputs.{name}")))
    }

    #[test]
    fn simple_comparisons_become_cel() {
        assert_eq!(cel("__severity__:value = 'high'").unwrap(), "inputs.severity == \"high\"");
        assert_eq!(
            cel("[__count__:value > 5 AND __host__:value IN ('a', 'b')] OR __flag__:value").unwrap(),
            "(inputs.count > 5 && inputs.host in [\"a\", \"b\"]) || inputs.flag == true"
        );
        assert_eq!(cel("__name__:value NOT MATCHES '^ws-'").unwrap(), "!(inputs.name.matches(\"^ws-\"))");
    }

    #[test]
    fn the_rest_of_stix_is_refused_with_a_reason() {
        assert!(cel("[ipv4-addr:value = '198.51.100.1']").unwrap_err().contains("object path"));
        assert!(cel("__a__:value LIKE 'x%'").unwrap_err().contains("not translated"));
        assert!(cel("[__a__:value = 1] WITHIN 5 SECONDS").unwrap_err().contains("qualifiers"));
        assert!(cel("__a__:value = ").is_err());
    }
}
