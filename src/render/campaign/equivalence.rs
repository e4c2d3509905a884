//! The compiled form of the campaign templates against tera: for recipients with hostile field
//! values, under incidents whose inputs are given with markup, missing or empty, a render gives
//! tera's bytes (or tera's refusal), and the compiled form, where it renders, renders them too.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::tests::{base, recipient};
use super::{Catalog, Recipient, Renderer};

/// Values that break careless renderers: markup and quotes (escaped in HTML, and JSON's own
/// specials), control characters, non-ASCII, whitespace alone, the values the templates test
/// for, and kinds that tera prints or compares its own way.
const HOSTILE: &[&str] = &[
    "",
    " ",
    " \t\n ",
    "Ann",
    "  Ann  ",
    "<script>alert('x')</script>",
    "Tom & \"Jerry\" <b>",
    "O'Brien",
    "back\\slash \\\" quote",
    "line\nbreak\r\n\u{0}\u{1f}\u{7f}",
    "Siobhán Ó Briain, £20, 名前, 🎉, \u{200b}",
    "{{ recipient.first_name }}",
    "{% if %}",
    "gift_card",
    "points",
    "yes",
    "no",
    "0",
    "true",
];

/// The fields the campaign templates read, and one they do not.
const FIELDS: &[&str] = &[
    "first_name",
    "member_id",
    "offer_kind",
    "offer_points",
    "gift_card_code",
    "gift_card_value",
    "data_involved",
    "card_data_involved",
    "customer_id",
    "advice",
    "monitoring_code",
    "unrelated",
];

fn hostile_value() -> impl proptest::strategy::Strategy<Value = Option<Json>> {
    use proptest::prelude::*;
    prop_oneof![
        Just(None),
        Just(Some(Json::Null)),
        any::<bool>().prop_map(|b| Some(json!(b))),
        any::<i64>().prop_map(|n| Some(json!(n))),
        any::<u64>().prop_map(|n| Some(json!(n))),
        (-1.0e6f64..1.0e6).prop_map(|f| Some(json!(f))),
        prop::sample::select(HOSTILE).prop_map(|text| Some(json!(text))),
        prop::sample::select(HOSTILE).prop_map(|text| Some(json!(text))),
        "\\PC{0,16}".prop_map(|text| Some(json!(text))),
        "[ \\t\\n<>&\"'\\\\a-z]{0,8}".prop_map(|text| Some(json!(text))),
        Just(Some(json!(["a", 1]))),
        Just(Some(json!({ "k": "<v>" }))),
    ]
}

/// The incident's inputs three ways: every one given (with markup), none declared, and all
/// declared but empty.
fn bases() -> Vec<Json> {
    let names = [
        "brand_name",
        "data_involved",
        "dpo_contact",
        "goodwill_points",
        "help_url",
        "helpline_number",
        "loyalty_programme",
        "notice_signatory",
        "supervisory_authority",
    ];
    let given: serde_json::Map<String, Json> =
        names.iter().map(|name| (name.to_string(), json!(format!("<{name}> & \"{name}\" 'é'")))).collect();
    let empty: serde_json::Map<String, Json> = names.iter().map(|name| (name.to_string(), json!(""))).collect();
    [Json::Object(given), json!({}), Json::Object(empty)]
        .into_iter()
        .map(|inputs| {
            let mut base = base();
            base["incident"]["inputs"] = inputs;
            base
        })
        .collect()
}

/// The campaign templates (the built-ins and the campaign bench's customer notice, which
/// prints `code`), with what tera makes of them.
fn campaign_catalog() -> Catalog {
    let mut sources: BTreeMap<String, String> =
        super::super::BUILT_IN.iter().map(|(name, source)| (name.to_string(), source.to_string())).collect();
    let text = format!("{}\nYour personal offer code: {{{{ code }}}}\n", sources["customer-notice.txt"]);
    sources.insert("bench-notice.txt".to_string(), text);
    let html = sources["customer-notice.html"].replacen(
        "</body>",
        "<p>Your personal offer code: <strong>{{ code }}</strong></p>\n</body>",
        1,
    );
    sources.insert("bench-notice.html".to_string(), html);
    Catalog::from_sources(sources)
}

/// Tera's render of one file for a recipient, with the whole context built as JSON: the way
/// that shares no code with the renderer.
fn teras(catalog: &Catalog, file: &str, base: &Json, recipient: &Recipient, code: Option<&str>) -> Option<String> {
    let mut context = base.clone();
    context["recipient"] = Json::Object(recipient.fields.clone());
    if let Some(code) = code {
        context["code"] = json!(code);
    }
    catalog.render(file, &context).ok()
}

/// `text` as serde_json escapes it in a string, without the quotes.
fn escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

type Written = (Result<(String, Option<String>), String>, String);

/// `recipient`'s message as [`Renderer::render_parts`] writes it between `[` and `]` (the HTML
/// after `|between|`), with the text and HTML it gives as rendered, or its error.
fn written(renderer: &Renderer, recipient: &Recipient, code: Option<&str>) -> Written {
    let codes = code.map(|code| vec![code.to_string()]);
    let (mut made, parts) = renderer.render_parts(
        std::slice::from_ref(recipient),
        codes.as_deref(),
        1,
        || b"[".to_vec(),
        |escaping, recipient, code, out| {
            let written = escaping
                .message(recipient, code, out, b"|between|")
                .map(|raw| (raw.text.to_string(), raw.html.map(str::to_string)))
                .map_err(|error| error.to_string());
            out.push(b']');
            written
        },
    );
    assert_eq!((made.len(), parts.len()), (1, 1));
    (made.remove(0), String::from_utf8(parts.concat()).unwrap())
}

#[test]
fn the_compiled_templates_render_what_tera_renders_for_hostile_recipients() {
    use proptest::prelude::*;
    let catalog = campaign_catalog();
    let templates = ["customer-notice", "bench-notice", "account-notice", "data-exposure-notice"];
    let renderers: Vec<(Json, Renderer, &str)> = bases()
        .into_iter()
        .flat_map(|base| templates.map(|name| (base.clone(), name)))
        .map(|(base, name)| (base.clone(), Renderer::new(&catalog, name, base).unwrap(), name))
        .collect();
    // The templates a campaign sends in the reference scenario are compiled; the others
    // use what the compiled form does not follow, and show that tera still renders them.
    for (_, renderer, name) in &renderers {
        assert_eq!(renderer.compiled(), matches!(*name, "customer-notice" | "bench-notice"), "{name}");
    }
    let fields = proptest::collection::vec(hostile_value(), FIELDS.len());
    let code = proptest::option::of(prop_oneof![prop::sample::select(HOSTILE).prop_map(String::from), "\\PC{0,8}"]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 400, ..ProptestConfig::default() });
    let compiled_renders = std::cell::Cell::new(0u32);
    runner
        .run(&(fields, code), |(values, code)| {
            let mut recipient = recipient(7, "M-7", "");
            recipient.fields.clear();
            for (name, value) in FIELDS.iter().zip(values) {
                if let Some(value) = value {
                    recipient.fields.insert(name.to_string(), value);
                }
            }
            for (base, renderer, name) in &renderers {
                let code = code.as_deref();
                let text = teras(&catalog, renderer.text_file(), base, &recipient, code);
                let html = renderer.html_file().and_then(|file| teras(&catalog, file, base, &recipient, code));
                let rendered = renderer.render(&recipient, code);
                match &rendered {
                    Ok(rendered) => {
                        prop_assert_eq!(Some(&rendered.text), text.as_ref(), "{} text", name);
                        prop_assert_eq!(rendered.html.as_ref(), html.as_ref(), "{} html", name);
                    }
                    Err(_) => prop_assert!(text.is_none() || html.is_none(), "{} failed where tera renders", name),
                }
                // Written for a JSON body: the same message, escaped as serde_json escapes it
                // (literal text escaped when compiled, the recipient's values as rendered), or
                // the same failure with nothing written.
                let (made, parts) = written(renderer, &recipient, code);
                let expected = rendered.map_err(|error| error.to_string()).map(|rendered| {
                    let mut json = escaped(&rendered.text);
                    if let Some(html) = &rendered.html {
                        json.push_str("|between|");
                        json.push_str(&escaped(html));
                    }
                    ((rendered.text, rendered.html), json)
                });
                match expected {
                    Ok((raw, json)) => {
                        prop_assert_eq!(made, Ok(raw), "{} written", name);
                        prop_assert_eq!(parts, format!("[{json}]"), "{} written", name);
                    }
                    Err(error) => {
                        prop_assert_eq!(made, Err(error), "{} written", name);
                        prop_assert_eq!(parts, "[]", "{} written", name);
                    }
                }
                // The compiled form alone: where it renders, it renders tera's bytes.
                for (compiled, expected) in [(&renderer.text_compiled, &text), (&renderer.html_compiled, &html)] {
                    let Some(compiled) = compiled else { continue };
                    let mut out = String::new();
                    if compiled.render(&recipient.fields, code, &mut out).is_ok() {
                        compiled_renders.set(compiled_renders.get() + 1);
                        prop_assert_eq!(Some(&out), expected.as_ref(), "{} compiled", name);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // Not every case was left to tera (how many depends on the values drawn; the plain member's
    // test below holds the compiled form to rendering every string field).
    assert!(compiled_renders.get() > 0, "{} compiled renders", compiled_renders.get());
}

#[test]
fn a_plain_member_is_rendered_by_the_compiled_form() {
    let catalog = campaign_catalog();
    for base in bases() {
        let renderer = Renderer::new(&catalog, "bench-notice", base.clone()).unwrap();
        for value in HOSTILE {
            let mut member = recipient(2, "M-1", value);
            member.fields.insert("gift_card_code".to_string(), json!(value));
            member.fields.insert("offer_kind".to_string(), json!("gift_card"));
            let mut text = String::new();
            let compiled = renderer.text_compiled.as_ref().unwrap();
            assert_eq!(compiled.render(&member.fields, Some(value), &mut text), Ok(()), "{value:?}");
            assert_eq!(Some(text), teras(&catalog, "bench-notice.txt", &base, &member, Some(value)), "{value:?}");
            let mut html = String::new();
            let compiled = renderer.html_compiled.as_ref().unwrap();
            assert_eq!(compiled.render(&member.fields, Some(value), &mut html), Ok(()), "{value:?}");
            assert_eq!(Some(html), teras(&catalog, "bench-notice.html", &base, &member, Some(value)), "{value:?}");
        }
    }
}
