//! CEL conditions: compiled once when a runbook is validated, with every name they use checked.
//!
//! A condition is refused before it reaches the CEL parser when it is too long or nests too
//! deeply: the parser recurses on nesting and can overflow the stack on hostile input.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use cel::Program;
use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use serde::Serialize;

mod interpolate;
mod size;

pub use interpolate::{Part, interpolate};
pub use size::check_size;

/// Longest condition accepted, in bytes.
pub const MAX_LENGTH: usize = 4096;
/// Deepest nesting of brackets accepted.
///
/// CEL's parser takes about 170 KiB of stack for each level in a debug build: at 8 levels, with
/// every operator allowed, compiling uses about 1.6 MiB of the 2 MiB a spawned thread has (test
/// threads, async runtime workers). At 12 levels a bare `Program::compile` overflows such a thread.
pub const MAX_NESTING: usize = 8;
/// Most operators (including `.`, `in`, unary `!`/`-` and opening brackets) in one condition.
pub const MAX_OPERATORS: usize = 256;

/// A compiled CEL expression and its source text.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    references: References,
}

/// The phases and steps a condition reads by name, so validation can check that they come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub phases: BTreeSet<String>,
    /// As `PHASE/STEP`.
    pub steps: BTreeSet<String>,
}

impl Condition {
    pub fn references(&self) -> &References {
        &self.references
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn program(&self) -> &Program {
        &self.program
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// Why a condition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("condition does not parse: {message}")]
    Syntax { message: String },
    #[error("condition is too complex: {message}")]
    TooComplex { message: String },
    #[error("{message}")]
    Reference { message: String, help: Option<String> },
}

/// The names a condition may use where it is written.
#[derive(Debug, Default)]
pub struct Names {
    /// Top-level variables, for example `inputs`, `phases`, `response`, `payload`.
    pub variables: Vec<&'static str>,
    pub inputs: Vec<String>,
    pub phases: Vec<String>,
    /// `PHASE/STEP` and the outputs the step declares.
    pub steps: Vec<(String, Vec<String>)>,
    pub controls: Vec<String>,
}

/// Compiles `source`, checking its size first and every name it uses after.
pub fn compile(source: &str, names: &Names) -> Result<Condition, Vec<Error>> {
    check_size(source).map_err(|error| vec![error])?;
    let program = Program::compile(source).map_err(|errors| {
        errors
            .errors
            .iter()
            .map(|error| {
                // The parser's positions are already 1-based.
                let (line, column) = error.pos;
                let place = if source.contains('\n') {
                    format!("line {line}, column {column}")
                } else {
                    format!("column {column}")
                };
                // `Error::Syntax` already says that the condition does not parse.
                let message = error.msg.strip_prefix("Syntax error: ").unwrap_or(&error.msg);
                Error::Syntax { message: format!("{message} (at {place})") }
            })
            .collect::<Vec<_>>()
    })?;
    let mut checker = Checker { names, bound: Vec::new(), errors: Vec::new(), references: References::default() };
    checker.check(program.expression());
    let references = checker.finish()?;
    Ok(Condition { source: source.to_string(), program: Arc::new(program), references })
}

/// The CEL standard library's functions and macros, as the engine's environment has them.
/// Operators (`_&&_`, `@in`, `_[_]` ...) are named differently and always allowed.
pub const FUNCTIONS: &[&str] = &[
    "all",
    "bool",
    "bytes",
    "contains",
    "double",
    "duration",
    "dyn",
    "endsWith",
    "exists",
    "exists_one",
    "filter",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "has",
    "int",
    "map",
    "matches",
    "size",
    "startsWith",
    "string",
    "timestamp",
    "type",
    "uint",
];

/// What conditions may read of `incident`.
pub const INCIDENT_FIELDS: &[&str] = &["id", "title", "started_by", "started_at"];

/// CEL's type names, which conditions may use as values: `type(x) == int`.
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "type",
    "uint",
];

fn string_literal(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Literal(LiteralValue::String(text)) => Some(text.inner()),
        _ => None,
    }
}

fn ident(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Ident(name) => Some(name),
        _ => None,
    }
}

/// The `steps["PHASE/STEP"]` a node indexes, if it is one.
fn step_index(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Call(call)
            if call.func_name == operators::INDEX && call.args.len() == 2 && ident(&call.args[0]) == Some("steps") =>
        {
            string_literal(&call.args[1])
        }
        _ => None,
    }
}

/// `NODE.FIELD` or `NODE["FIELD"]`: the node and the field, when the field is written literally.
fn member(expr: &IdedExpr) -> Option<(&IdedExpr, &str)> {
    match &expr.expr {
        Expr::Select(select) => Some((&select.operand, select.field.as_str())),
        Expr::Call(call)
            if (call.func_name == operators::INDEX || call.func_name == operators::OPT_INDEX)
                && call.args.len() == 2 =>
        {
            string_literal(&call.args[1]).map(|field| (&call.args[0], field))
        }
        _ => None,
    }
}

fn is_operator(name: &str) -> bool {
    name.starts_with(['_', '@', '!', '-'])
}

/// Walks a compiled condition, checking every name against [`Names`] and noting which phases and
/// steps it reads.
struct Checker<'n> {
    names: &'n Names,
    /// Variables bound by comprehensions (`x` in `list.all(x, ...)`), innermost last.
    bound: Vec<String>,
    errors: Vec<Error>,
    references: References,
}

impl Checker<'_> {
    fn is_variable(&self, name: &str) -> bool {
        !self.bound.iter().any(|b| b == name) && self.names.variables.contains(&name)
    }

    fn unknown(&mut self, kind: &str, name: &str, known: &[String]) {
        let help = crate::spelling::did_you_mean(name, known.iter().map(String::as_str))
            .map(|meant| format!("did you mean `{meant}`?"))
            .unwrap_or_else(|| {
                if known.is_empty() {
                    format!("the runbook declares no {kind}s")
                } else {
                    format!("known {kind}s: {}", known.join(", "))
                }
            });
        self.errors.push(Error::Reference {
            message: format!("condition refers to unknown {kind} `{name}`"),
            help: Some(help),
        });
    }

    /// A reference to a named thing (`phases["x"]`, `inputs.x`, `steps["p/s"]`).
    fn member(&mut self, root: &str, member: &str) {
        let names = self.names;
        match root {
            "inputs" if !names.inputs.iter().any(|n| n == member) => self.unknown("input", member, &names.inputs),
            "controls" if !names.controls.iter().any(|n| n == member) => {
                self.unknown("control", member, &names.controls)
            }
            "phases" if !names.phases.iter().any(|n| n == member) => self.unknown("phase", member, &names.phases),
            "phases" => {
                self.references.phases.insert(member.to_string());
            }
            "incident" if !INCIDENT_FIELDS.contains(&member) => {
                let known: Vec<String> = INCIDENT_FIELDS.iter().map(|f| f.to_string()).collect();
                self.unknown("incident field", member, &known);
            }
            "steps" if !names.steps.iter().any(|(n, _)| n == member) => {
                let known: Vec<String> = names.steps.iter().map(|(n, _)| n.clone()).collect();
                self.unknown("step", member, &known);
                if !member.contains('/')
                    && let Some(Error::Reference { help, .. }) = self.errors.last_mut()
                {
                    *help = Some(
                        "steps are named `PHASE/STEP`, for example `steps[\"contain/isolate-hosts\"]`".to_string(),
                    );
                }
            }
            "steps" => {
                self.references.steps.insert(member.to_string());
            }
            _ => {}
        }
    }

    /// `steps["P/S"].FIELD` and `steps["P/S"].outputs.NAME`, in either spelling.
    fn step_fields(&mut self, expr: &IdedExpr) {
        let Some((operand, field)) = member(expr) else { return };
        if let Some(step) = step_index(operand)
            && !matches!(field, "state" | "outputs")
        {
            self.errors.push(Error::Reference {
                message: format!("step `{step}` has no field `{field}`"),
                help: Some("a step has `state` and `outputs`".to_string()),
            });
        }
        if let Some((inner, "outputs")) = member(operand)
            && let Some(step) = step_index(inner)
            && let Some((_, outputs)) = self.names.steps.iter().find(|(n, _)| n == step)
            && !outputs.iter().any(|o| o == field)
        {
            let help = if outputs.is_empty() {
                "the step declares no outputs".to_string()
            } else {
                format!("its outputs are: {}", outputs.join(", "))
            };
            self.errors.push(Error::Reference {
                message: format!("step `{step}` declares no output `{field}`"),
                help: Some(help),
            });
        }
    }

    fn check(&mut self, expr: &IdedExpr) {
        if let Some((operand, field)) = member(expr)
            && let Some(root) = ident(operand)
            && self.is_variable(root)
        {
            self.member(root, field);
        }
        self.step_fields(expr);
        match &expr.expr {
            Expr::Ident(name) => {
                let known = self.bound.iter().any(|b| b == name)
                    || self.names.variables.contains(&name.as_str())
                    || TYPE_NAMES.contains(&name.as_str());
                if !known {
                    let variables: Vec<String> = self.names.variables.iter().map(|v| v.to_string()).collect();
                    self.unknown("variable", name, &variables);
                    if let Some(Error::Reference { help, .. }) = self.errors.last_mut()
                        && help.as_deref().is_none_or(|h| !h.starts_with("did you mean"))
                    {
                        *help = Some(if variables.is_empty() {
                            "no variables are available here".to_string()
                        } else {
                            format!("the variables here are: {}", variables.join(", "))
                        });
                    }
                }
            }
            Expr::Select(select) => self.check(&select.operand),
            Expr::Call(call) => {
                if !is_operator(&call.func_name) && !FUNCTIONS.contains(&call.func_name.as_str()) {
                    let help = crate::spelling::did_you_mean(&call.func_name, FUNCTIONS.iter().copied()).map_or_else(
                        || format!("the functions are: {}", FUNCTIONS.join(", ")),
                        |meant| format!("did you mean `{meant}`?"),
                    );
                    self.errors.push(Error::Reference {
                        message: format!("condition calls unknown function `{}`", call.func_name),
                        help: Some(help),
                    });
                }
                if let Some(target) = &call.target {
                    self.check(target);
                }
                for arg in &call.args {
                    self.check(arg);
                }
            }
            Expr::Comprehension(comprehension) => {
                self.check(&comprehension.iter_range);
                self.check(&comprehension.accu_init);
                let depth = self.bound.len();
                self.bound.push(comprehension.iter_var.clone());
                self.bound.extend(comprehension.iter_var2.clone());
                self.bound.push(comprehension.accu_var.clone());
                self.check(&comprehension.loop_cond);
                self.check(&comprehension.loop_step);
                self.check(&comprehension.result);
                self.bound.truncate(depth);
            }
            Expr::List(list) => list.elements.iter().for_each(|e| self.check(e)),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                        self.check(&entry.key);
                        self.check(&entry.value);
                    }
                }
            }
            Expr::Struct(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn finish(mut self) -> Result<References, Vec<Error>> {
        let mut seen = HashSet::new();
        self.errors.retain(|error| seen.insert(error.to_string()));
        if self.errors.is_empty() { Ok(self.references) } else { Err(self.errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            variables: vec!["inputs", "phases", "steps", "controls"],
            inputs: vec!["severity".into()],
            phases: vec!["contain".into(), "relax-controls".into()],
            steps: vec![("contain/isolate-hosts".into(), vec!["count".into()])],
            controls: vec!["mfa-store-tills".into()],
        }
    }

    fn outcome(source: &str) -> Result<(), Vec<String>> {
        compile(source, &names()).map(|_| ()).map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn valid_conditions() {
        for source in [
            r#"inputs.severity in ["high", "critical"]"#,
            r#"phases["relax-controls"] == "done" && phases.contain == "done""#,
            r#"steps["contain/isolate-hosts"].outputs.count > 3"#,
            r#"controls["mfa-store-tills"] != "relaxed""#,
            r#"[1, 2, 3].all(x, x > 0 && inputs.severity != "low")"#,
            r#"has(inputs.severity)"#,
        ] {
            assert_eq!(outcome(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn every_allowed_function_exists_in_the_engines_environment() {
        let samples = [
            "size('ab') == 2 && 'ab'.size() == 2",
            "'ab'.startsWith('a') && 'ab'.endsWith('b') && 'ab'.contains('a') && 'ab'.matches('a.')",
            "int('3') == 3 && uint(3) == 3u && double(1) == 1.0 && string(1) == '1' && bool('true')",
            "bytes('a') == b'a' && dyn(1) == 1 && type(1) == int",
            "duration('1h') > duration('1m') && timestamp('2026-11-24T10:00:00Z').getFullYear() == 2026",
            "timestamp('2026-11-24T10:00:00Z').getMonth() == 10 && timestamp('2026-11-24T10:00:00Z').getDate() == 24",
            "timestamp('2026-11-24T10:00:00Z').getDayOfMonth() == 23 && timestamp('2026-11-24T10:00:00Z').getDayOfWeek() == 2",
            "timestamp('2026-11-24T10:00:00Z').getDayOfYear() == 327 && timestamp('2026-11-24T10:00:00Z').getHours() == 10",
            "timestamp('2026-11-24T10:00:00Z').getMinutes() == 0 && timestamp('2026-11-24T10:00:00Z').getSeconds() == 0",
            "timestamp('2026-11-24T10:00:00Z').getMilliseconds() == 0",
            "[1, 2].all(x, x > 0) && [1, 2].exists(x, x > 1) && [1, 2].exists_one(x, x > 1)",
            "[1, 2].map(x, x * 2) == [2, 4] && [1, 2].filter(x, x > 1) == [2] && has({'a': 1}.a)",
        ];
        let mut used = HashSet::new();
        let context = cel::Context::default();
        for sample in samples {
            let condition = compile(sample, &Names::default()).unwrap_or_else(|e| panic!("{sample}: {e:?}"));
            assert_eq!(condition.program().execute(&context), Ok(cel::Value::Bool(true)), "{sample}");
            for function in FUNCTIONS {
                if sample.contains(&format!("{function}(")) {
                    used.insert(*function);
                }
            }
        }
        let untested: Vec<&&str> = FUNCTIONS.iter().filter(|f| !used.contains(**f)).collect();
        assert!(untested.is_empty(), "allowed but not shown to exist: {untested:?}");
    }

    #[test]
    fn references_are_noted() {
        let condition =
            compile(r#"phases.contain == "done" && steps["contain/isolate-hosts"].outputs.count > 1"#, &names())
                .unwrap();
        assert_eq!(condition.references().phases.iter().collect::<Vec<_>>(), ["contain"]);
        assert_eq!(condition.references().steps.iter().collect::<Vec<_>>(), ["contain/isolate-hosts"]);
    }

    #[test]
    fn refused_conditions() {
        let table: &[(&str, &str)] = &[
            ("inputs.severty == 'high'", "condition refers to unknown input `severty`"),
            ("phases[\"restore\"] == 'done'", "condition refers to unknown phase `restore`"),
            ("steps[\"contain/nope\"].state == 'done'", "condition refers to unknown step `contain/nope`"),
            (
                "steps[\"contain/isolate-hosts\"].outputs.total > 1",
                "step `contain/isolate-hosts` declares no output `total`",
            ),
            ("controls[\"waf\"] == 'relaxed'", "condition refers to unknown control `waf`"),
            ("payload.x == 1", "condition refers to unknown variable `payload`"),
            ("inputs.severity ==", "condition does not parse"),
            (
                "steps[\"contain/isolate-hosts\"].outputs[\"total\"] > 1",
                "step `contain/isolate-hosts` declares no output `total`",
            ),
            ("steps[\"contain/isolate-hosts\"].status == 'done'", "step `contain/isolate-hosts` has no field `status`"),
            ("inputs.severity.lower() == 'high'", "condition calls unknown function `lower`"),
            ("foo(inputs.severity)", "condition calls unknown function `foo`"),
        ];
        for (source, expected) in table {
            let errors = outcome(source).expect_err(source);
            assert!(errors[0].starts_with(expected), "{source}: {errors:?}");
        }
    }

    /// The column of a syntax error was one past the character at fault.
    #[test]
    fn syntax_error_columns_point_at_the_fault() {
        let table: &[(&str, &str)] = &[
            ("inputs.severity ==", "(at column 19)"),
            ("inputs.severity == = 'high'", "(at column 20)"),
            ("inputs.severity == 'high' &&\n  (", "(at line 2, column 4)"),
        ];
        for (source, place) in table {
            let errors = outcome(source).expect_err(source);
            assert!(errors[0].ends_with(place), "{source:?}: {errors:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let source = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(check_size(&source), Err(Error::TooComplex { .. })));
        let source = "!".repeat(10_000) + "true";
        assert!(matches!(check_size(&source), Err(Error::TooComplex { .. })));
        let source = format!("'{}'", "(".repeat(1000));
        assert_eq!(check_size(&source), Ok(()));
    }
}
