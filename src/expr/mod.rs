//! CEL conditions: compiled once when a runbook is validated, with every name they use checked.
//!
//! A condition is refused before it reaches the CEL parser when it is too long or nests too
//! deeply: the parser recurses on nesting and can overflow the stack on hostile input.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use cel::Program;
use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use serde::Serialize;

mod size;

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
}

impl Condition {
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
                let place = if source.contains('\n') { format!("line {line}, column {column}") } else { format!("column {column}") };
                // `Error::Syntax` already says that the condition does not parse.
                let message = error.msg.strip_prefix("Syntax error: ").unwrap_or(&error.msg);
                Error::Syntax { message: format!("{message} (at {place})") }
            })
            .collect::<Vec<_>>()
    })?;
    let mut errors = Vec::new();
    let mut bound = Vec::new();
    check_names(program.expression(), names, &mut bound, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Condition { source: source.to_string(), program: Arc::new(program) })
}

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
        Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 && ident(&call.args[0]) == Some("steps") => {
            string_literal(&call.args[1])
        }
        _ => None,
    }
}

fn unknown(kind: &str, name: &str, known: &[String], errors: &mut Vec<Error>) {
    let help = crate::runbook::diagnostic::did_you_mean(name, known.iter().map(String::as_str))
        .map(|meant| format!("did you mean `{meant}`?"))
        .or_else(|| Some(if known.is_empty() { format!("the runbook declares no {kind}s") } else { format!("known {kind}s: {}", known.join(", ")) }));
    errors.push(Error::Reference { message: format!("condition refers to unknown {kind} `{name}`"), help });
}

/// Checks a reference to a named thing (`phases["x"]`, `inputs.x`) against the known names.
fn check_member(root: &str, member: &str, names: &Names, errors: &mut Vec<Error>) {
    match root {
        "inputs" if !names.inputs.iter().any(|n| n == member) => unknown("input", member, &names.inputs, errors),
        "phases" if !names.phases.iter().any(|n| n == member) => unknown("phase", member, &names.phases, errors),
        "controls" if !names.controls.iter().any(|n| n == member) => unknown("control", member, &names.controls, errors),
        "steps" if !names.steps.iter().any(|(n, _)| n == member) => {
            let known: Vec<String> = names.steps.iter().map(|(n, _)| n.clone()).collect();
            unknown("step", member, &known, errors);
            if !member.contains('/')
                && let Some(Error::Reference { help, .. }) = errors.last_mut()
            {
                *help = Some("steps are named `PHASE/STEP`, for example `steps[\"contain/isolate-hosts\"]`".to_string());
            }
        }
        _ => {}
    }
}

fn check_names(expr: &IdedExpr, names: &Names, bound: &mut Vec<String>, errors: &mut Vec<Error>) {
    match &expr.expr {
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) && !names.variables.contains(&name.as_str()) {
                let known: Vec<String> = names.variables.iter().map(|v| v.to_string()).collect();
                unknown("variable", name, &known, errors);
            }
        }
        Expr::Select(select) => {
            if let Some(root) = ident(&select.operand)
                && !bound.iter().any(|b| b == root)
            {
                check_member(root, &select.field, names, errors);
            }
            if let Some(step) = step_index(&select.operand)
                && !matches!(select.field.as_str(), "state" | "outputs")
            {
                errors.push(Error::Reference {
                    message: format!("step `{step}` has no field `{}`", select.field),
                    help: Some("a step has `state` and `outputs`".to_string()),
                });
            }
            if let Expr::Select(inner) = &select.operand.expr
                && inner.field == "outputs"
                && let Some(step) = step_index(&inner.operand)
                && let Some((_, outputs)) = names.steps.iter().find(|(n, _)| n == step)
                && !outputs.iter().any(|o| o == &select.field)
            {
                let message = format!("step `{step}` declares no output `{}`", select.field);
                let help = if outputs.is_empty() {
                    "the step declares no outputs".to_string()
                } else {
                    format!("its outputs are: {}", outputs.join(", "))
                };
                errors.push(Error::Reference { message, help: Some(help) });
            }
            check_names(&select.operand, names, bound, errors);
        }
        Expr::Call(call) => {
            if (call.func_name == operators::INDEX || call.func_name == operators::OPT_INDEX)
                && call.args.len() == 2
                && let (Some(root), Some(member)) = (ident(&call.args[0]), string_literal(&call.args[1]))
                && !bound.iter().any(|b| b == root)
            {
                check_member(root, member, names, errors);
            }
            if let Some(target) = &call.target {
                check_names(target, names, bound, errors);
            }
            for arg in &call.args {
                check_names(arg, names, bound, errors);
            }
        }
        Expr::Comprehension(comprehension) => {
            check_names(&comprehension.iter_range, names, bound, errors);
            check_names(&comprehension.accu_init, names, bound, errors);
            let depth = bound.len();
            bound.push(comprehension.iter_var.clone());
            bound.extend(comprehension.iter_var2.clone());
            bound.push(comprehension.accu_var.clone());
            check_names(&comprehension.loop_cond, names, bound, errors);
            check_names(&comprehension.loop_step, names, bound, errors);
            check_names(&comprehension.result, names, bound, errors);
            bound.truncate(depth);
        }
        Expr::List(list) => list.elements.iter().for_each(|e| check_names(e, names, bound, errors)),
        Expr::Map(map) => {
            for entry in &map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                    check_names(&entry.key, names, bound, errors);
                    check_names(&entry.value, names, bound, errors);
                }
            }
        }
        Expr::Struct(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    dedup(errors);
}

fn dedup(errors: &mut Vec<Error>) {
    let mut seen = HashSet::new();
    errors.retain(|error| seen.insert(error.to_string()));
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
    fn refused_conditions() {
        let table: &[(&str, &str)] = &[
            ("inputs.severty == 'high'", "condition refers to unknown input `severty`"),
            ("phases[\"restore\"] == 'done'", "condition refers to unknown phase `restore`"),
            ("steps[\"contain/nope\"].state == 'done'", "condition refers to unknown step `contain/nope`"),
            ("steps[\"contain/isolate-hosts\"].outputs.total > 1", "step `contain/isolate-hosts` declares no output `total`"),
            ("controls[\"waf\"] == 'relaxed'", "condition refers to unknown control `waf`"),
            ("payload.x == 1", "condition refers to unknown variable `payload`"),
            ("inputs.severity ==", "condition does not parse"),
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
