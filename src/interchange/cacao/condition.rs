//! CACAO conditions (STIX patterning over playbook variables) to CEL, where they are simple
//! comparisons: `VAR OP VALUE`, `VAR IN (...)`, `VAR MATCHES '...'`, joined by `AND`, `OR`, with
//! `NOT` before an operator and brackets; `VAR` is `__name__:value`. Anything else of STIX
//! patterning (object paths such as `ipv4-addr:value`, `LIKE`, `ISSUBSET`, qualifiers, observation
//! operators) is refused with a reason, never guessed at.
//!
//! [`to_stix`] goes the other way for export, over the same vocabulary, so that a condition it
//! translates comes back from [`to_cel`] as the CEL it was (in the form `to_cel` writes: operands
//! of `&&` and `||` in a row, brackets only around an `||` inside an `&&`).

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};

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

/// Turns a phase's CEL `when` into STIX patterning over playbook variables, where it is made of
/// comparisons of inputs (`inputs.NAME OP VALUE`, `in [...]`, `.matches(...)`, an input alone as
/// a flag) joined by `&&` and `||`, with `!` before a comparison. The error says what is not
/// translated, for the author.
pub fn to_stix(cel: &str) -> Result<String, String> {
    let program = cel::Program::compile(cel).map_err(|_| "the condition does not parse as CEL".to_string())?;
    stix_or(program.expression())
}

fn call<'a>(expr: &'a IdedExpr, func: &str) -> Option<&'a [IdedExpr]> {
    match &expr.expr {
        Expr::Call(call) if call.func_name == func && call.target.is_none() => Some(&call.args),
        _ => None,
    }
}

/// The operands of a row of `func` (`&&` or `||`), however CEL's parser nested them.
fn operands<'a>(expr: &'a IdedExpr, func: &str, out: &mut Vec<&'a IdedExpr>) {
    match call(expr, func) {
        Some(args) => args.iter().for_each(|arg| operands(arg, func, out)),
        None => out.push(expr),
    }
}

fn stix_or(expr: &IdedExpr) -> Result<String, String> {
    let mut parts = Vec::new();
    operands(expr, operators::LOGICAL_OR, &mut parts);
    Ok(parts.into_iter().map(stix_and).collect::<Result<Vec<_>, _>>()?.join(" OR "))
}

fn stix_and(expr: &IdedExpr) -> Result<String, String> {
    let mut parts = Vec::new();
    operands(expr, operators::LOGICAL_AND, &mut parts);
    let parts = parts
        .into_iter()
        .map(|part| match call(part, operators::LOGICAL_OR) {
            Some(_) => Ok(format!("({})", stix_or(part)?)),
            None => stix_comparison(part),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(" AND "))
}

/// One comparison, or `!` before one (`NOT` before its operator).
fn stix_comparison(expr: &IdedExpr) -> Result<String, String> {
    if let Some([inner]) = call(expr, operators::LOGICAL_NOT) {
        let (variable, rest) = comparison(inner).map_err(|why| {
            format!("`!` is translated only before one comparison (STIX has `NOT` before an operator): {why}")
        })?;
        return Ok(match rest {
            Some(rest) => format!("{variable} NOT {rest}"),
            None => format!("{variable} = false"),
        });
    }
    let (variable, rest) = comparison(expr)?;
    Ok(format!("{variable} {}", rest.unwrap_or_else(|| "= true".into())))
}

/// The variable a comparison reads and the rest of it (`= 'x'`, `IN ('a')`, `MATCHES '^a'`);
/// no rest for an input alone, a flag.
fn comparison(expr: &IdedExpr) -> Result<(String, Option<String>), String> {
    const OPERATORS: &[(&str, &str)] = &[
        (operators::EQUALS, "="),
        (operators::NOT_EQUALS, "!="),
        (operators::LESS, "<"),
        (operators::LESS_EQUALS, "<="),
        (operators::GREATER, ">"),
        (operators::GREATER_EQUALS, ">="),
    ];
    if let Ok(variable) = stix_variable(expr) {
        return Ok((variable, None));
    }
    let Expr::Call(call) = &expr.expr else {
        return Err(
            "a comparison of an input is `inputs.NAME == VALUE` (or `!=`, `<`, `<=`, `>`, `>=`, `in`, `.matches`)"
                .into(),
        );
    };
    if call.func_name == "matches" {
        let (Some(target), [pattern]) = (&call.target, call.args.as_slice()) else {
            return Err("`matches` is translated as `inputs.NAME.matches(\"PATTERN\")`".into());
        };
        let Expr::Literal(LiteralValue::String(pattern)) = &pattern.expr else {
            return Err("the pattern of `matches` must be a string written in the condition".into());
        };
        return Ok((stix_variable(target)?, Some(format!("MATCHES {}", stix_string(pattern.inner())))));
    }
    let [left, right] = call.args.as_slice() else {
        return Err(format!(
            "`{}` is not translated: phasegate translates comparisons of inputs",
            shown(&call.func_name)
        ));
    };
    if call.func_name == operators::IN {
        let Expr::List(list) = &right.expr else {
            return Err(
                "`in` is translated with a list written in the condition: `inputs.NAME in [\"a\", \"b\"]`".into()
            );
        };
        if list.elements.is_empty() {
            return Err("`in []` holds nothing; STIX's `IN` takes at least one value".into());
        }
        let values = list.elements.iter().map(stix_operand).collect::<Result<Vec<_>, _>>()?;
        return Ok((stix_variable(left)?, Some(format!("IN ({})", values.join(", ")))));
    }
    let Some((_, op)) = OPERATORS.iter().find(|(func, _)| *func == call.func_name) else {
        return Err(format!(
            "`{}` is not translated: phasegate translates comparisons of inputs",
            shown(&call.func_name)
        ));
    };
    let variable = stix_variable(left).map_err(|why| match stix_variable(right) {
        Ok(_) => "write the input first (`inputs.NAME == VALUE`), as STIX comparisons are written".to_string(),
        Err(_) => why,
    })?;
    Ok((variable, Some(format!("{op} {}", stix_operand(right)?))))
}

/// What a variable is compared with: a constant or another input.
fn stix_operand(expr: &IdedExpr) -> Result<String, String> {
    stix_value(expr).or_else(|why| stix_variable(expr).map_err(|_| why))
}

/// `inputs.NAME` as `__NAME__:value`.
fn stix_variable(expr: &IdedExpr) -> Result<String, String> {
    if let Expr::Select(select) = &expr.expr
        && !select.test
        && matches!(&select.operand.expr, Expr::Ident(root) if root == "inputs")
    {
        let name = &select.field;
        let reference = format!("__{name}__:value");
        return match super::variable_at(&reference) {
            Some((_, used)) if used == reference.len() => Ok(reference),
            _ => Err(format!("the input `{name}` has no name a CACAO variable can have")),
        };
    }
    match root(expr) {
        Some(root) if root != "inputs" => Err(format!(
            "the condition reads `{root}`, which a CACAO playbook has no variable for; only inputs (`inputs.NAME`) are playbook variables"
        )),
        _ => Err("a comparison reads an input, `inputs.NAME`".into()),
    }
}

/// The name a path of fields and indexes starts from: `steps` of `steps["a/b"].outputs.x`.
fn root(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Ident(name) => Some(name),
        Expr::Select(select) => root(&select.operand),
        Expr::Call(call) if call.func_name == operators::INDEX => root(call.args.first()?),
        _ => None,
    }
}

/// A constant as STIX writes it.
fn stix_value(expr: &IdedExpr) -> Result<String, String> {
    let negated = call(expr, operators::NEGATE).and_then(|args| args.first());
    let literal = match (negated, &expr.expr) {
        (Some(inner), _) => match &inner.expr {
            Expr::Literal(LiteralValue::Int(n)) => return Ok(format!("-{}", n.inner())),
            Expr::Literal(LiteralValue::Double(n)) => return Ok(format!("-{}", stix_double(*n.inner()))),
            _ => return Err("only a number can be negative in a translated condition".into()),
        },
        (None, Expr::Literal(literal)) => literal,
        _ => return Err("a comparison of an input is with a constant or another input".into()),
    };
    match literal {
        LiteralValue::String(text) => Ok(stix_string(text.inner())),
        LiteralValue::Int(n) => Ok(n.inner().to_string()),
        LiteralValue::Double(n) if n.inner().is_finite() => Ok(stix_double(*n.inner())),
        LiteralValue::Boolean(b) => Ok(b.inner().to_string()),
        LiteralValue::UInt(_) => Err("unsigned numbers (`5u`) have no STIX form; write `5`".into()),
        _ => Err("null, bytes and other constants have no STIX form".into()),
    }
}

/// A double with its decimal point, so that it reads back as a double and not an integer.
fn stix_double(n: f64) -> String {
    let text = n.to_string();
    if text.contains('.') { text } else { format!("{text}.0") }
}

fn stix_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An operator's CEL spelling (`_==_` is `==`), a function's name as it is.
fn shown(func: &str) -> String {
    let func = func.trim_start_matches('@');
    if func.starts_with('_') || func.ends_with('_') { func.replace('_', "") } else { func.to_string() }
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

    /// Export's STIX read back by import: the CEL it came from.
    fn round_trip(when: &str) -> Result<String, String> {
        cel(&to_stix(when)?)
    }

    #[test]
    fn comparisons_of_inputs_become_stix() {
        for (when, stix) in [
            (r#"inputs.severity == "high""#, "__severity__:value = 'high'"),
            (r#"inputs.a == "it's \\ 'q'""#, r"__a__:value = 'it\'s \\ \'q\''"),
            ("inputs.count >= -5 && inputs.ratio < 2.0", "__count__:value >= -5 AND __ratio__:value < 2.0"),
            (
                r#"(inputs.a == 1 || inputs.b in ["x", 2]) && inputs.c.matches("^ws-")"#,
                "(__a__:value = 1 OR __b__:value IN ('x', 2)) AND __c__:value MATCHES '^ws-'",
            ),
            (
                r#"!(inputs.host in ["a"]) || inputs.x != inputs.y"#,
                "__host__:value NOT IN ('a') OR __x__:value != __y__:value",
            ),
            // Written otherwise than import writes it: the same condition all the same.
            ("inputs.flag", "__flag__:value = true"),
            ("!inputs.flag", "__flag__:value = false"),
            ("((inputs.a=='x'))", "__a__:value = 'x'"),
            (
                "inputs.a == 1 && (inputs.b == 2 && inputs.c == 3)",
                "__a__:value = 1 AND __b__:value = 2 AND __c__:value = 3",
            ),
        ] {
            assert_eq!(to_stix(when).as_deref(), Ok(stix), "{when}");
        }
        assert_eq!(round_trip("inputs.flag").unwrap(), "inputs.flag == true");
    }

    #[test]
    fn what_stix_cannot_say_is_not_translated_and_says_why() {
        for (when, why) in [
            (r#"phases["triage"] != "skipped""#, "`phases`"),
            (r#"steps["triage/look"].outputs.scope == "yes""#, "`steps`"),
            (r#"controls["mfa"] in ["relaxed"]"#, "`controls`"),
            ("size(inputs.hosts) > 2", "a comparison reads an input"),
            (r#"!(inputs.a == "x" && inputs.b == "y")"#, "`!` is translated only before one comparison"),
            (r#""x" == inputs.a"#, "write the input first"),
            ("inputs.a in []", "at least one value"),
            ("inputs.a == 5u", "unsigned"),
            ("inputs.a == null", "null"),
            ("inputs.a + 1 == 2", "a comparison reads an input"),
            ("inputs.a.startsWith(\"x\")", "`startsWith` is not translated"),
            ("inputs.a == 1 ? true : false", "`?:` is not translated"),
            ("true", "a comparison of an input"),
        ] {
            let error = to_stix(when).expect_err(when);
            assert!(error.contains(why), "{when}: {error}");
        }
    }

    /// A condition built of the forms import writes, printed as `to_cel` prints it.
    #[derive(Debug, Clone)]
    enum Form {
        Comparison(String),
        And(Vec<Form>),
        Or(Vec<Form>),
    }

    impl Form {
        fn cel(&self) -> String {
            match self {
                Form::Comparison(cel) => cel.clone(),
                Form::And(parts) => parts
                    .iter()
                    .map(|part| match part {
                        Form::Or(_) => format!("({})", part.cel()),
                        _ => part.cel(),
                    })
                    .collect::<Vec<_>>()
                    .join(" && "),
                Form::Or(parts) => parts.iter().map(Form::cel).collect::<Vec<_>>().join(" || "),
            }
        }
    }

    /// An input's name as CEL reads it (`inputs.in` does not parse: `in` is a word of CEL's).
    fn input() -> impl proptest::strategy::Strategy<Value = String> {
        use crate::runbook::validate::CEL_RESERVED as WORDS;
        use proptest::prelude::*;
        "[a-z][a-z0-9]{0,4}(_[a-z0-9]{1,3})?"
            .prop_filter("not a word of CEL's", |name| !WORDS.contains(&name.as_str()))
            .prop_map(|name| format!("inputs.{name}"))
    }

    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[ -~é\n\t]{0,8}".prop_map(|text| quote(&text)),
            (-1000i64..1000).prop_map(|n| n.to_string()),
            (-100i64..100, 1u32..99)
                .prop_filter("no trailing zero", |(_, f)| f % 10 != 0)
                .prop_map(|(n, f)| format!("{n}.{f:02}")),
            any::<bool>().prop_map(|b| b.to_string()),
            input(),
        ]
    }

    fn comparison() -> impl proptest::strategy::Strategy<Value = Form> {
        use proptest::prelude::*;
        let plain = prop_oneof![
            (input(), prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]), value())
                .prop_map(|(input, op, value)| format!("{input} {op} {value}")),
            (input(), prop::collection::vec(value(), 1..4))
                .prop_map(|(input, values)| format!("{input} in [{}]", values.join(", "))),
            (input(), "[ -~]{0,8}").prop_map(|(input, pattern)| format!("{input}.matches({})", quote(&pattern))),
        ];
        (plain, any::<bool>())
            .prop_map(|(cel, negated)| Form::Comparison(if negated { format!("!({cel})") } else { cel }))
    }

    fn form() -> impl proptest::strategy::Strategy<Value = Form> {
        use proptest::prelude::*;
        comparison().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(
                    inner.clone().prop_filter("no `&&` in `&&`", |f| !matches!(f, Form::And(_))),
                    2..4
                )
                .prop_map(Form::And),
                prop::collection::vec(inner.prop_filter("no `||` in `||`", |f| !matches!(f, Form::Or(_))), 2..4)
                    .prop_map(Form::Or),
            ]
        })
    }

    proptest::proptest! {
        /// Export then import gives the same `when`, for every form import writes.
        #[test]
        fn export_then_import_gives_the_same_condition(form in form()) {
            let when = form.cel();
            proptest::prop_assert_eq!(round_trip(&when), Ok(when.clone()));
        }
    }

    #[test]
    fn the_rest_of_stix_is_refused_with_a_reason() {
        assert!(cel("[ipv4-addr:value = '198.51.100.1']").unwrap_err().contains("object path"));
        assert!(cel("__a__:value LIKE 'x%'").unwrap_err().contains("not translated"));
        assert!(cel("[__a__:value = 1] WITHIN 5 SECONDS").unwrap_err().contains("qualifiers"));
        assert!(cel("__a__:value = ").is_err());
    }
}
