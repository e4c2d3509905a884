//! A campaign template compiled for its campaign: rendered millions of times with contexts that
//! differ only in `recipient` and `code`, it is read once ([`syntax`]) and specialised for the
//! campaign's shared context (`incident`, `runbook`, `campaign`, `now`), so that what remains is
//! literal text (HTML-escaped at compile time where the variant is HTML), the recipient's fields
//! to print, and the few conditions on them. A render then reads the recipient's JSON fields in
//! place: no tera context to build, no interpreter.
//!
//! It follows tera 2's semantics exactly where it renders, and nowhere else: a template that
//! uses what [`syntax`] does not follow is not compiled, and a render that meets anything tera
//! would refuse or might treat otherwise (an undefined value printed, a missing field in the
//! middle of a path, `trim` of a number, a comparison with a list) gives up ([`Bail`]) and the
//! caller renders that recipient with tera, which gives the message or the error it always gave.
//! A property test holds the two to the same bytes (`render::campaign`'s tests).

mod syntax;

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use syntax::{Expr, Node};

/// The render needs tera: the caller renders this recipient's file with tera instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail;

/// One file of a campaign template, specialised for its campaign.
#[derive(Debug)]
pub struct Compiled {
    steps: Vec<Step>,
    /// How many values `set` gives at render time.
    slots: usize,
    html: bool,
}

#[derive(Debug)]
enum Step {
    /// Literal text, and the same escaped for a JSON string (see [`Compiled::render_json`]).
    Text(String, Vec<u8>),
    Print(X),
    If(Vec<(X, Vec<Step>)>, Vec<Step>),
    Set(usize, X),
    /// What tera would refuse for every recipient who gets here.
    Fail,
}

/// An expression, specialised: what the shared context decides is folded into constants.
#[derive(Debug)]
enum X {
    Const(Konst),
    Fail,
    /// `recipient` and the attributes read from it.
    Recipient(Vec<String>),
    Code(Vec<String>),
    /// A value a `set` gave at render time.
    Slot(usize, Vec<String>),
    Concat(Box<X>, Box<X>),
    /// `==` (`true`) or `!=` (`false`).
    Equal(Box<X>, Box<X>, bool),
    And(Box<X>, Box<X>),
    Or(Box<X>, Box<X>),
    Not(Box<X>),
    Ternary(Box<X>, Box<X>, Box<X>),
    Defined(Box<X>, bool),
    Trim(Box<X>),
}

#[derive(Debug, Clone)]
enum Konst {
    Undefined,
    Json(Json),
}

/// A value while rendering, borrowed where it can be.
#[derive(Debug, Clone)]
enum Val<'a> {
    Undefined,
    Json(&'a Json),
    Str(Cow<'a, str>),
    Bool(bool),
    /// The recipient's fields.
    Fields(&'a Map<String, Json>),
}

struct Scope<'a> {
    recipient: &'a Map<String, Json>,
    code: Option<&'a str>,
    slots: Vec<Val<'a>>,
}

impl Compiled {
    /// `source` compiled with `base` as the shared context (`recipient` and `code` are the
    /// recipient's, whatever `base` holds); `html` escapes what is printed as tera's autoescape
    /// does for `.html` files. `None` when the template uses what is not followed here.
    pub fn new(source: &str, base: &Map<String, Json>, html: bool) -> Option<Compiled> {
        let nodes = syntax::parse(source).ok()?;
        let mut compiler = Compiler { base, names: HashMap::new(), slots: 0, html };
        let mut steps = Vec::new();
        compiler.block(&nodes, false, &mut steps).ok()?;
        escape_literals(&mut steps);
        Some(Compiled { steps, slots: compiler.slots, html })
    }

    /// Appends the message for a recipient with these `fields` and offer `code` to `out`, or
    /// gives up (leaving `out` as it found it) where tera must render it.
    pub fn render(&self, fields: &Map<String, Json>, code: Option<&str>, out: &mut String) -> Result<(), Bail> {
        self.render_into(fields, code, out, None)
    }

    /// [`Compiled::render`], the message also appended to `json` escaped for a JSON string (as
    /// `render::json` escapes): the literal text was escaped once, when compiled, so only what the
    /// recipient brings is escaped here. Both are left as they were when it gives up.
    pub fn render_json(
        &self,
        fields: &Map<String, Json>,
        code: Option<&str>,
        out: &mut String,
        json: &mut Vec<u8>,
    ) -> Result<(), Bail> {
        let start = json.len();
        let result = self.render_into(fields, code, out, Some(&mut *json));
        if result.is_err() {
            json.truncate(start);
        }
        result
    }

    fn render_into(
        &self,
        fields: &Map<String, Json>,
        code: Option<&str>,
        out: &mut String,
        json: Option<&mut Vec<u8>>,
    ) -> Result<(), Bail> {
        let start = out.len();
        let mut scope = Scope { recipient: fields, code, slots: vec![Val::Undefined; self.slots] };
        let result = run(&self.steps, &mut scope, self.html, out, json);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

struct Compiler<'b> {
    base: &'b Map<String, Json>,
    names: HashMap<String, Bound>,
    slots: usize,
    html: bool,
}

enum Bound {
    Const(Konst),
    Slot(usize),
}

impl Compiler<'_> {
    /// `nodes` specialised into `out`; `conditional` when they run only for some recipients, where
    /// a `set` is not followed (what it binds after the condition would depend on the recipient).
    fn block(&mut self, nodes: &[Node], conditional: bool, out: &mut Vec<Step>) -> Result<(), syntax::Unsupported> {
        for node in nodes {
            match node {
                Node::Text(text) => text_step(out, text),
                Node::Print(expr) => match self.expr(expr) {
                    X::Const(value) => match shown(&value.val()) {
                        Ok(text) if self.html => text_step(out, &escaped(&text)),
                        Ok(text) => text_step(out, &text),
                        Err(Bail) => out.push(Step::Fail),
                    },
                    X::Fail => out.push(Step::Fail),
                    dynamic => out.push(Step::Print(dynamic)),
                },
                Node::If { branches, otherwise } => {
                    let mut dynamic = Vec::new();
                    let mut chosen: &[Node] = otherwise;
                    for (condition, body) in branches {
                        match self.expr(condition) {
                            X::Const(value) => {
                                if truthy(&value.val()) {
                                    chosen = body;
                                    break;
                                }
                            }
                            X::Fail if dynamic.is_empty() => {
                                out.push(Step::Fail);
                                chosen = &[];
                                break;
                            }
                            condition => dynamic.push((condition, body)),
                        }
                    }
                    if dynamic.is_empty() {
                        self.block(chosen, conditional, out)?;
                        continue;
                    }
                    let mut branches = Vec::with_capacity(dynamic.len());
                    for (condition, body) in dynamic {
                        let mut steps = Vec::new();
                        self.block(body, true, &mut steps)?;
                        branches.push((condition, steps));
                    }
                    let mut otherwise = Vec::new();
                    self.block(chosen, true, &mut otherwise)?;
                    out.push(Step::If(branches, otherwise));
                }
                Node::Set(name, expr) => {
                    if conditional {
                        return Err(syntax::Unsupported);
                    }
                    let bound = match self.expr(expr) {
                        X::Const(value) => Bound::Const(value),
                        dynamic => {
                            out.push(Step::Set(self.slots, dynamic));
                            self.slots += 1;
                            Bound::Slot(self.slots - 1)
                        }
                    };
                    self.names.insert(name.clone(), bound);
                }
            }
        }
        Ok(())
    }

    fn boxed(&mut self, expr: &Expr) -> Box<X> {
        Box::new(self.expr(expr))
    }

    fn expr(&mut self, expr: &Expr) -> X {
        let specialised = match expr {
            Expr::Str(text) => return X::Const(Konst::Json(Json::String(text.clone()))),
            Expr::Int(n) => return X::Const(Konst::Json(Json::from(*n))),
            Expr::Bool(b) => return X::Const(Konst::Json(Json::Bool(*b))),
            Expr::None => return X::Const(Konst::Json(Json::Null)),
            Expr::Path(name, attributes) => match self.names.get(name) {
                Some(Bound::Slot(slot)) => return X::Slot(*slot, attributes.clone()),
                Some(Bound::Const(value)) => return const_path(value.val(), attributes),
                None if name == "recipient" => return X::Recipient(attributes.clone()),
                None if name == "code" => return X::Code(attributes.clone()),
                None => return const_path(self.base.get(name).map_or(Val::Undefined, Val::Json), attributes),
            },
            Expr::Concat(a, b) => X::Concat(self.boxed(a), self.boxed(b)),
            Expr::Equal(a, b) => X::Equal(self.boxed(a), self.boxed(b), true),
            Expr::NotEqual(a, b) => X::Equal(self.boxed(a), self.boxed(b), false),
            Expr::And(a, b) => X::And(self.boxed(a), self.boxed(b)),
            Expr::Or(a, b) => X::Or(self.boxed(a), self.boxed(b)),
            Expr::Not(a) => X::Not(self.boxed(a)),
            Expr::Ternary { condition, then, otherwise } => {
                X::Ternary(self.boxed(condition), self.boxed(then), self.boxed(otherwise))
            }
            Expr::Defined(a, defined) => X::Defined(self.boxed(a), *defined),
            Expr::Trim(a) => X::Trim(self.boxed(a)),
        };
        fold(specialised)
    }
}

/// A path read from a constant: a constant itself, or a failure.
fn const_path(value: Val<'_>, attributes: &[String]) -> X {
    match follow(value, attributes) {
        Ok(found) => X::Const(found.owned()),
        Err(Bail) => X::Fail,
    }
}

/// `x` with what its constant parts decide worked out.
fn fold(x: X) -> X {
    let constant = |x: &X| matches!(x, X::Const(_));
    let decided = match &x {
        X::Const(_) | X::Fail => return x,
        X::And(a, _) | X::Or(a, _) | X::Ternary(a, _, _) => constant(a),
        X::Concat(a, b) | X::Equal(a, b, _) => constant(a) && constant(b),
        X::Not(a) | X::Defined(a, _) | X::Trim(a) => constant(a),
        X::Recipient(_) | X::Code(_) | X::Slot(..) => false,
    };
    if !decided {
        return x;
    }
    match &x {
        // The side the constant chooses, itself folded already.
        X::And(a, _) | X::Or(a, _) => {
            let X::Const(a) = a.as_ref() else { unreachable!("checked constant") };
            let keep_left = truthy(&a.val()) == matches!(x, X::Or(..));
            let (X::And(a, b) | X::Or(a, b)) = x else { unreachable!("matched above") };
            if keep_left { *a } else { *b }
        }
        X::Ternary(condition, _, _) => {
            let X::Const(condition) = condition.as_ref() else { unreachable!("checked constant") };
            let take_then = truthy(&condition.val());
            let X::Ternary(_, then, otherwise) = x else { unreachable!("matched above") };
            if take_then { *then } else { *otherwise }
        }
        _ => {
            let empty = Map::new();
            let scope = Scope { recipient: &empty, code: None, slots: Vec::new() };
            match eval(&x, &scope) {
                Ok(value) => X::Const(value.owned()),
                Err(Bail) => X::Fail,
            }
        }
    }
}

fn text_step(out: &mut Vec<Step>, text: &str) {
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(Step::Text(last, _)) => last.push_str(text),
        _ => out.push(Step::Text(text.to_string(), Vec::new())),
    }
}

/// Each literal text's JSON-escaped form, once the texts are whole.
fn escape_literals(steps: &mut [Step]) {
    for step in steps {
        match step {
            Step::Text(text, json) => {
                json.clear();
                super::json::escape(json, text);
            }
            Step::If(branches, otherwise) => {
                for (_, body) in branches.iter_mut() {
                    escape_literals(body);
                }
                escape_literals(otherwise);
            }
            Step::Print(_) | Step::Set(..) | Step::Fail => {}
        }
    }
}

fn run<'a>(
    steps: &'a [Step],
    scope: &mut Scope<'a>,
    html: bool,
    out: &mut String,
    mut json: Option<&mut Vec<u8>>,
) -> Result<(), Bail> {
    for step in steps {
        match step {
            Step::Text(text, escaped) => {
                out.push_str(text);
                if let Some(json) = json.as_deref_mut() {
                    json.extend_from_slice(escaped);
                }
            }
            Step::Print(x) => {
                let value = eval(x, scope)?;
                let text = shown(&value)?;
                let start = out.len();
                if html {
                    escape_into(out, &text);
                } else {
                    out.push_str(&text);
                }
                if let Some(json) = json.as_deref_mut() {
                    super::json::escape(json, &out[start..]);
                }
            }
            Step::If(branches, otherwise) => {
                let mut taken = otherwise;
                for (condition, body) in branches {
                    if truthy(&eval(condition, scope)?) {
                        taken = body;
                        break;
                    }
                }
                run(taken, scope, html, out, json.as_deref_mut())?;
            }
            Step::Set(slot, x) => {
                let value = eval(x, scope)?;
                scope.slots[*slot] = value;
            }
            Step::Fail => return Err(Bail),
        }
    }
    Ok(())
}

fn eval<'a>(x: &'a X, scope: &Scope<'a>) -> Result<Val<'a>, Bail> {
    Ok(match x {
        X::Const(value) => value.val(),
        X::Fail => return Err(Bail),
        X::Recipient(attributes) => follow(Val::Fields(scope.recipient), attributes)?,
        X::Code(attributes) => {
            let code = scope.code.map_or(Val::Undefined, |code| Val::Str(Cow::Borrowed(code)));
            follow(code, attributes)?
        }
        X::Slot(slot, attributes) => follow(scope.slots[*slot].clone(), attributes)?,
        X::Concat(a, b) => {
            let (a, b) = (eval(a, scope)?, eval(b, scope)?);
            let (a, b) = (concatenated(&a)?, concatenated(&b)?);
            let mut text = String::with_capacity(a.len() + b.len());
            text.push_str(&a);
            text.push_str(&b);
            Val::Str(Cow::Owned(text))
        }
        X::Equal(a, b, want) => Val::Bool(equal(&eval(a, scope)?, &eval(b, scope)?)? == *want),
        X::And(a, b) => {
            let a = eval(a, scope)?;
            if truthy(&a) { eval(b, scope)? } else { a }
        }
        X::Or(a, b) => {
            let a = eval(a, scope)?;
            if truthy(&a) { a } else { eval(b, scope)? }
        }
        X::Not(a) => Val::Bool(!truthy(&eval(a, scope)?)),
        X::Ternary(condition, then, otherwise) => {
            if truthy(&eval(condition, scope)?) {
                eval(then, scope)?
            } else {
                eval(otherwise, scope)?
            }
        }
        X::Defined(a, want) => Val::Bool(!matches!(eval(a, scope)?, Val::Undefined) == *want),
        X::Trim(a) => match eval(a, scope)? {
            Val::Json(Json::String(text)) => Val::Str(Cow::Borrowed(text.trim())),
            Val::Str(Cow::Borrowed(text)) => Val::Str(Cow::Borrowed(text.trim())),
            Val::Str(Cow::Owned(text)) => Val::Str(Cow::Owned(text.trim().to_string())),
            // tera's `trim` takes only strings.
            _ => return Err(Bail),
        },
    })
}

impl Konst {
    fn val(&self) -> Val<'_> {
        match self {
            Konst::Undefined => Val::Undefined,
            Konst::Json(json) => Val::Json(json),
        }
    }
}

impl Val<'_> {
    fn owned(self) -> Konst {
        match self {
            Val::Undefined => Konst::Undefined,
            Val::Json(json) => Konst::Json(json.clone()),
            Val::Str(text) => Konst::Json(Json::String(text.into_owned())),
            Val::Bool(b) => Konst::Json(Json::Bool(b)),
            Val::Fields(fields) => Konst::Json(Json::Object(fields.clone())),
        }
    }
}

/// tera's path: an undefined value has no attributes, a missing attribute is an error except
/// the last, which is undefined; only maps have attributes.
fn follow<'a>(root: Val<'a>, attributes: &[String]) -> Result<Val<'a>, Bail> {
    if attributes.is_empty() {
        return Ok(root);
    }
    let mut current = root;
    for (index, attribute) in attributes.iter().enumerate() {
        let fields = match current {
            Val::Fields(fields) | Val::Json(Json::Object(fields)) => Some(fields),
            Val::Undefined => return Err(Bail),
            _ => None,
        };
        match fields.and_then(|fields| fields.get(attribute)) {
            Some(value) => current = Val::Json(value),
            None if index + 1 < attributes.len() => return Err(Bail),
            None => return Ok(Val::Undefined),
        }
    }
    Ok(current)
}

/// tera's truthiness.
fn truthy(value: &Val<'_>) -> bool {
    match value {
        Val::Undefined => false,
        Val::Bool(b) => *b,
        Val::Str(text) => !text.is_empty(),
        Val::Fields(fields) => !fields.is_empty(),
        Val::Json(json) => match json {
            Json::Null => false,
            Json::Bool(b) => *b,
            Json::Number(n) => {
                if let Some(n) = n.as_u64() {
                    n != 0
                } else if let Some(n) = n.as_i64() {
                    n != 0
                } else {
                    n.as_f64().is_some_and(|n| n != 0.0)
                }
            }
            Json::String(text) => !text.is_empty(),
            Json::Array(items) => !items.is_empty(),
            Json::Object(fields) => !fields.is_empty(),
        },
    }
}

/// What a value prints as (`{{ }}`): tera refuses to print an undefined value; lists and maps
/// print in a form of tera's own, left to tera.
fn shown<'v>(value: &'v Val<'_>) -> Result<Cow<'v, str>, Bail> {
    match value {
        Val::Undefined => Err(Bail),
        other => concatenated(other),
    }
}

/// What a value gives to `~`: as printed, with nothing for an undefined value.
fn concatenated<'v>(value: &'v Val<'_>) -> Result<Cow<'v, str>, Bail> {
    Ok(match value {
        Val::Undefined => Cow::Borrowed(""),
        Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Val::Str(text) => Cow::Borrowed(text.as_ref()),
        Val::Fields(_) => return Err(Bail),
        Val::Json(json) => match json {
            Json::Null => Cow::Borrowed(""),
            Json::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Json::String(text) => Cow::Borrowed(text.as_str()),
            Json::Number(n) => {
                if let Some(n) = n.as_u64() {
                    Cow::Owned(n.to_string())
                } else if let Some(n) = n.as_i64() {
                    Cow::Owned(n.to_string())
                } else {
                    // tera prints a float with `{:?}`; left to it.
                    return Err(Bail);
                }
            }
            Json::Array(_) | Json::Object(_) => return Err(Bail),
        },
    })
}

/// tera's `==`, where it is plain: the same kind of value compared; numbers by value; values of
/// different kinds are not equal. Floats, lists and maps are left to tera.
fn equal(a: &Val<'_>, b: &Val<'_>) -> Result<bool, Bail> {
    #[derive(PartialEq)]
    enum Kind<'k> {
        Undefined,
        Null,
        Bool(bool),
        Int(i128),
        Str(&'k str),
    }
    fn kind<'k>(value: &'k Val<'_>) -> Result<Kind<'k>, Bail> {
        Ok(match value {
            Val::Undefined => Kind::Undefined,
            Val::Bool(b) => Kind::Bool(*b),
            Val::Str(text) => Kind::Str(text),
            Val::Fields(_) => return Err(Bail),
            Val::Json(json) => match json {
                Json::Null => Kind::Null,
                Json::Bool(b) => Kind::Bool(*b),
                Json::String(text) => Kind::Str(text),
                Json::Number(n) => match (n.as_u64(), n.as_i64()) {
                    (Some(n), _) => Kind::Int(i128::from(n)),
                    (None, Some(n)) => Kind::Int(i128::from(n)),
                    (None, None) => return Err(Bail),
                },
                Json::Array(_) | Json::Object(_) => return Err(Bail),
            },
        })
    }
    Ok(kind(a)? == kind(b)?)
}

/// tera's HTML escaping (as `render::escape_html`), into a string.
fn escape_into(out: &mut String, text: &str) {
    let mut written = 0;
    for (at, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[written..at]);
        out.push_str(replacement);
        written = at + 1;
    }
    out.push_str(&text[written..]);
}

fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Json) -> Map<String, Json> {
        let Json::Object(map) = value else { panic!("not an object") };
        map
    }

    #[test]
    fn the_shared_context_is_folded_away() {
        let base = object(json!({ "incident": { "inputs": { "brand": "H&H", "empty": "" } } }));
        let source = "{% set brand = incident.inputs.brand if incident.inputs.brand is defined else 'us' %}\
                      {% if incident.inputs.empty %}never{% elif recipient.vip %}VIP {% endif %}\
                      {{ brand }} {{ recipient.name | trim }}";
        let compiled = Compiled::new(source, &base, true).unwrap();
        // What is left: the condition on the recipient, the text, the name.
        assert_eq!(compiled.steps.len(), 3, "{:?}", compiled.steps);
        assert!(matches!(&compiled.steps[1], Step::Text(text, _) if text == "H&amp;H "), "{:?}", compiled.steps);
        let mut out = String::new();
        compiled.render(&object(json!({ "vip": 1, "name": " <Ann> " })), None, &mut out).unwrap();
        assert_eq!(out, "VIP H&amp;H &lt;Ann&gt;");
    }

    #[test]
    fn what_tera_would_refuse_gives_up_and_leaves_the_output_as_it_was() {
        let base = Map::new();
        let table = [
            ("{{ recipient.missing }}", json!({})),
            ("{{ recipient.name | trim }}", json!({ "name": 7 })),
            ("{{ recipient.a.b }}", json!({ "a": {} })),
            ("{{ recipient.a.b.c }}", json!({ "a": {} })),
            ("{{ recipient.list }}", json!({ "list": [1] })),
            ("{{ recipient.ratio }}", json!({ "ratio": 0.5 })),
            ("{% if recipient.a == recipient.b %}{% endif %}", json!({ "a": [1], "b": [1] })),
            ("{{ nothing.at_all }}", json!({})),
        ];
        for (source, fields) in table {
            let compiled = Compiled::new(source, &base, false).unwrap();
            let mut out = String::from("kept");
            assert_eq!(compiled.render(&object(fields), None, &mut out), Err(Bail), "{source}");
            assert_eq!(out, "kept", "{source}");
        }
    }

    /// tera's own render of `source` with an empty context.
    fn teras(source: &str) -> String {
        let mut tera = tera::Tera::new();
        tera.add_raw_template("t.txt", source).unwrap();
        tera.render("t.txt", &tera::Context::new()).unwrap()
    }

    #[test]
    fn whitespace_control_is_teras() {
        let table = [
            "a  {{- 'x' -}}  b",
            "a {#- c -#}\n b",
            "a {# c #} b",
            "a\n{%- if true -%}\n x \n{%- endif %} b",
            "{{ 'x' -}} {# c #} b",
            "{{ 'x' -}} {#- c #} b",
            "{{ 'x' }} {#- c -#}\n\n{{- 'y' }}\t{%- set z = 1 %} {{ z }}",
            "\u{a0}a\u{2003} {%- if false %} no {%- else -%} \u{3000} yes {% endif -%}\u{2028} end",
            "{% if true %}\n{% if 'a' == 'a' -%}\n  nested\n{%- endif %}\n{% endif %}",
        ];
        for source in table {
            let compiled = Compiled::new(source, &Map::new(), false).unwrap();
            let mut out = String::new();
            compiled.render(&Map::new(), None, &mut out).unwrap();
            assert_eq!(out, teras(source), "{source:?}");
        }
    }

    #[test]
    fn escaping_is_teras() {
        for input in ["", "plain", "<b>\"Tom\" & 'Jerry'</b>", "&&", "end<", ">start", "café £20 <ü>"] {
            let mut teras = Vec::new();
            tera::escape_html(input, &mut teras).unwrap();
            assert_eq!(escaped(input), String::from_utf8(teras).unwrap(), "{input:?}");
        }
    }
}
