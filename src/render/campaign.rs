//! A campaign's message, rendered once per recipient: the text variant (`NAME.txt`, else
//! `NAME.md`) and the HTML variant (`NAME.html`) when the template has one.
//!
//! A campaign renders the same template millions of times with contexts that differ only in
//! `recipient` and `code`, so the rest (`incident`, `runbook`, `campaign`, `now`) is converted for
//! tera once, in [`Renderer::new`]. Each render then converts only the recipient's fields and
//! writes into a buffer sized from the previous message. [`Renderer::render_batch`] spreads a
//! batch over the machine's cores; a renderer is shared by reference between the threads.
//!
//! Where the template allows it, each file is also compiled for the campaign
//! ([`super::compiled`]): the shared context folded in, the recipient's fields read in place. A
//! render tries the compiled form first and renders with tera only where the compiled form gives
//! up (a template it does not follow, or a recipient whose values tera would refuse or might treat
//! otherwise), so the messages and the errors are tera's, byte for byte.
//!
//! A batch's messages are megabytes that the allocator would give back to the system when the
//! batch is sent and fault in again for the next one; the sender hands the buffers back
//! ([`Renderer::recycle`]) and the next batch renders into them.
//!
//! A channel whose batches are JSON has each message written straight into that form
//! ([`Renderer::render_parts`]): the compiled form's literal text is escaped for a JSON string
//! once, when compiled, and only what the recipient brings is escaped per message; the message
//! itself stays in the thread's buffers only until the caller has its digest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use tera::Value;

use super::compiled::Compiled;
use super::{Catalog, Error, Parsed, error_text};
use crate::campaign::Recipient;

/// Batches smaller than this are rendered on the calling thread: starting a thread costs more
/// than a few renders.
const MIN_PER_THREAD: usize = 64;

/// The most field names a thread keeps converted.
const MAX_KEYS: usize = 256;

/// The most spare buffers a renderer keeps: two messages (text and HTML) for each of four
/// batches of a thousand, what a campaign has in flight at once by default.
const MAX_SPARE: usize = 8192;

/// One recipient's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// From `NAME.txt`, or `NAME.md` when there is no `.txt`.
    pub text: String,
    /// From `NAME.html`; `None` when the template has no HTML variant.
    pub html: Option<String>,
}

/// A campaign template ready to render for each recipient. `Send + Sync`: threads share one.
pub struct Renderer {
    parsed: Arc<Parsed>,
    text_file: String,
    html_file: Option<String>,
    /// `incident`, `runbook`, `campaign` and `now`, converted once.
    base: tera::Context,
    /// The text and HTML files compiled for the campaign, where the template allows it.
    text_compiled: Option<Compiled>,
    html_compiled: Option<Compiled>,
    /// Buffers of messages already sent, emptied, for the next renders.
    spare: Mutex<Vec<String>>,
}

impl Renderer {
    /// A renderer for `template` (a name without extension) from `catalog`, with `base` holding
    /// what every recipient's message shares: `incident`, `runbook`, `campaign` and `now`, as
    /// [`super::context::campaign_base`] builds them. Fails when the template has neither a
    /// `.txt` nor a `.md` variant, when a variant does not parse, or when `base` is not an object.
    pub fn new(catalog: &Catalog, template: &str, base: Json) -> Result<Renderer, Error> {
        let files = catalog.files(template);
        let has = |variant: &str| files.iter().find(|file| file.strip_suffix(variant) == Some(template)).cloned();
        let text_file = has(".txt")
            .or_else(|| has(".md"))
            .ok_or_else(|| Error::Missing { name: format!("{template}.txt` or `{template}.md") })?;
        let html_file = has(".html");
        let parsed = Arc::clone(catalog.parsed());
        for file in std::iter::once(&text_file).chain(&html_file) {
            if let Some(message) = parsed.broken.get(file) {
                return Err(Error::Render { file: file.clone(), message: message.clone() });
            }
        }
        let Json::Object(entries) = base else {
            return Err(Error::Render {
                file: text_file,
                message: "the campaign's shared context is not a JSON object".to_string(),
            });
        };
        let mut context = tera::Context::new();
        let mut shared = entries;
        // The recipient's own variables are set per message; the shared ones cannot stand in.
        shared.remove("recipient");
        shared.remove("code");
        for (key, value) in &shared {
            context.insert_value(key.clone(), to_tera(value, &mut Keys::default()));
        }
        let compile = |file: &str| Compiled::new(catalog.sources.get(file)?, &shared, file.ends_with(".html"));
        let text_compiled = compile(&text_file);
        let html_compiled = html_file.as_deref().and_then(compile);
        Ok(Renderer {
            parsed,
            text_file,
            html_file,
            base: context,
            text_compiled,
            html_compiled,
            spare: Mutex::new(Vec::new()),
        })
    }

    /// Takes back the buffers of messages that were sent (their text and HTML), for the next
    /// renders to write into; beyond [`MAX_SPARE`] they are freed.
    pub fn recycle(&self, buffers: impl IntoIterator<Item = String>) {
        let mut spare = self.spare.lock().expect("never poisoned");
        for mut buffer in buffers.into_iter().take(MAX_SPARE.saturating_sub(spare.len())) {
            buffer.clear();
            spare.push(buffer);
        }
    }

    /// Up to `count` spare buffers, empty.
    fn spares(&self, count: usize) -> Vec<String> {
        let mut spare = self.spare.lock().expect("never poisoned");
        let keep = spare.len().saturating_sub(count);
        spare.split_off(keep)
    }

    /// Whether every variant of the template is compiled for the campaign (tera still renders the
    /// recipients the compiled form gives up on).
    pub fn compiled(&self) -> bool {
        self.text_compiled.is_some() && (self.html_file.is_none() || self.html_compiled.is_some())
    }

    /// The file the text variant comes from (`NAME.txt` or `NAME.md`).
    pub fn text_file(&self) -> &str {
        &self.text_file
    }

    /// The file the HTML variant comes from, if the template has one.
    pub fn html_file(&self) -> Option<&str> {
        self.html_file.as_deref()
    }

    /// `recipient`'s message: `recipient` is the recipient's fields, `code` their offer code when
    /// the campaign gives one (the template's `code` is undefined otherwise). A failed render
    /// names the file, the recipient's id and their line in the list.
    pub fn render(&self, recipient: &Recipient, code: Option<&str>) -> Result<Rendered, Error> {
        Worker::new(self).render(recipient, code)
    }

    /// Every recipient's message, in order, rendered on one thread per core
    /// (`available_parallelism`; fewer for a small batch). `codes`, when given, holds one offer
    /// code per recipient, in the same order.
    ///
    /// # Panics
    ///
    /// When `codes` is given and its length differs from `recipients`'.
    pub fn render_batch(&self, recipients: &[Recipient], codes: Option<&[String]>) -> Vec<Result<Rendered, Error>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.render_batch_on(recipients, codes, cores)
    }

    /// [`Renderer::render_batch`] on at most `threads` threads (at least one).
    pub fn render_batch_on(
        &self,
        recipients: &[Recipient],
        codes: Option<&[String]>,
        threads: usize,
    ) -> Vec<Result<Rendered, Error>> {
        self.render_batch_then(recipients, codes, threads, |_, rendered| rendered)
    }

    /// [`Renderer::render_batch_on`], each recipient's message then given to `then` on the
    /// thread that rendered it (what is done with each message, such as its digest, is spread
    /// over the threads too); its results in the recipients' order.
    pub fn render_batch_then<T: Send>(
        &self,
        recipients: &[Recipient],
        codes: Option<&[String]>,
        threads: usize,
        then: impl Fn(&Recipient, Result<Rendered, Error>) -> T + Sync,
    ) -> Vec<T> {
        let variants = 1 + usize::from(self.html_file.is_some());
        let parts: Vec<Vec<T>> = self.scatter(recipients, codes, threads, |part, code| {
            let mut worker = Worker::new(self);
            worker.spare = self.spares(part.len() * variants);
            part.iter().enumerate().map(|(n, recipient)| then(recipient, worker.render(recipient, code(n)))).collect()
        });
        parts.into_iter().flatten().collect()
    }

    /// `run` on one thread per part of `recipients` (at most `threads`, fewer for a small batch;
    /// the calling thread takes the first part), with each part and the offer code of its `n`th
    /// recipient; the results in the parts' order.
    fn scatter<'c, R: Send>(
        &self,
        recipients: &[Recipient],
        codes: Option<&'c [String]>,
        threads: usize,
        run: impl Fn(&[Recipient], &dyn Fn(usize) -> Option<&'c str>) -> R + Sync,
    ) -> Vec<R> {
        if let Some(codes) = codes {
            assert_eq!(codes.len(), recipients.len(), "one offer code per recipient");
        }
        let threads = threads.clamp(1, recipients.len().div_ceil(MIN_PER_THREAD).max(1));
        let chunk = recipients.len().div_ceil(threads).max(1);
        let run = &run;
        let part =
            move |start: usize, part: &[Recipient]| run(part, &|n: usize| codes.map(|codes| codes[start + n].as_str()));
        if threads == 1 {
            return vec![part(0, recipients)];
        }
        std::thread::scope(|scope| {
            let mut parts = recipients.chunks(chunk).enumerate();
            // The calling thread renders the first part itself.
            let (_, first) = parts.next().unwrap_or((0, &[]));
            let others: Vec<_> = parts.map(|(n, chunk_of)| scope.spawn(move || part(n * chunk, chunk_of))).collect();
            let mut all = vec![part(0, first)];
            for handle in others {
                match handle.join() {
                    Ok(done) => all.push(done),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            all
        })
    }
}

/// What one thread keeps between renders: the context (the shared part cloned once, the
/// recipient's part replaced when tera renders), the field names already converted, the sizes of
/// the last messages, and spare buffers to render into.
struct Worker<'r> {
    renderer: &'r Renderer,
    context: tera::Context,
    /// Whether `context` holds the current recipient.
    prepared: bool,
    keys: Keys,
    text_size: usize,
    html_size: usize,
    spare: Vec<String>,
}

impl<'r> Worker<'r> {
    fn new(renderer: &'r Renderer) -> Worker<'r> {
        Worker {
            renderer,
            context: renderer.base.clone(),
            prepared: false,
            keys: Keys::default(),
            text_size: 0,
            html_size: 0,
            spare: Vec::new(),
        }
    }

    fn render(&mut self, recipient: &Recipient, code: Option<&str>) -> Result<Rendered, Error> {
        self.prepared = false;
        let text = self.file(false, recipient, code)?;
        let html = match self.renderer.html_file {
            Some(_) => Some(self.file(true, recipient, code)?),
            None => None,
        };
        Ok(Rendered { text, html })
    }

    /// The recipient's fields and code in tera's context, once per recipient, when tera renders.
    fn prepare(&mut self, recipient: &Recipient, code: Option<&str>) {
        if self.prepared {
            return;
        }
        let fields = object(&recipient.fields, &mut self.keys);
        self.context.insert_value("recipient", fields);
        match code {
            Some(code) => self.context.insert_value("code", Value::from(code)),
            None => {
                self.context.remove("code");
            }
        }
        self.prepared = true;
    }

    /// One file of the recipient's message, in a buffer of its own.
    fn file(&mut self, html: bool, recipient: &Recipient, code: Option<&str>) -> Result<String, Error> {
        let last = if html { self.html_size } else { self.text_size };
        // A little over the last message: most messages of a campaign are about the same size.
        let mut out = self.spare.pop().unwrap_or_default();
        out.reserve(last + last / 8 + 64);
        self.file_into(html, recipient, code, &mut out, None)?;
        if html {
            self.html_size = out.len();
        } else {
            self.text_size = out.len();
        }
        Ok(out)
    }

    /// One file of the recipient's message into `out` (empty), and escaped for a JSON string
    /// appended to `json` when given: from the compiled form where it renders, else by tera.
    fn file_into(
        &mut self,
        html: bool,
        recipient: &Recipient,
        code: Option<&str>,
        out: &mut String,
        mut json: Option<&mut Vec<u8>>,
    ) -> Result<(), Error> {
        let renderer = self.renderer;
        let (file, compiled) = if html {
            (renderer.html_file.as_deref().unwrap_or_default(), &renderer.html_compiled)
        } else {
            (renderer.text_file.as_str(), &renderer.text_compiled)
        };
        let compiled = compiled.as_ref().is_some_and(|compiled| match json.as_deref_mut() {
            Some(json) => compiled.render_json(&recipient.fields, code, out, json).is_ok(),
            None => compiled.render(&recipient.fields, code, out).is_ok(),
        });
        if compiled {
            return Ok(());
        }
        self.prepare(recipient, code);
        let in_file = |message: String| Error::Recipient {
            file: file.to_string(),
            line: recipient.line,
            id: recipient.id.clone(),
            message,
        };
        let mut bytes = std::mem::take(out).into_bytes();
        bytes.clear();
        renderer.parsed.tera.render_to(file, &self.context, &mut bytes).map_err(|error| in_file(error_text(&error)))?;
        *out = String::from_utf8(bytes).map_err(|error| in_file(error.to_string()))?;
        if let Some(json) = json {
            super::json::escape(json, out);
        }
        Ok(())
    }
}

/// The field names already converted to tera's keys, in the order first seen: the lines of a
/// list mostly hold the same fields in the same order, so a field's name is first compared with
/// the name seen at its position, without hashing.
#[derive(Default)]
struct Keys {
    seen: Vec<(String, tera::value::Key<'static>)>,
}

impl Keys {
    fn key(&mut self, position: usize, name: &str) -> tera::value::Key<'static> {
        if let Some((seen, key)) = self.seen.get(position)
            && seen == name
        {
            return key.clone();
        }
        if let Some((_, key)) = self.seen.iter().find(|(seen, _)| seen == name) {
            return key.clone();
        }
        let key = tera::value::Key::String(Arc::from(name));
        // A list whose lines each bring new names would make every search longer: past a few
        // hundred names, the new ones are converted each time instead.
        if self.seen.len() < MAX_KEYS {
            self.seen.push((name.to_string(), key.clone()));
        }
        key
    }
}

/// A JSON object as a tera map, reusing the keys seen before.
fn object(entries: &serde_json::Map<String, Json>, keys: &mut Keys) -> Value {
    let mut map: BTreeMap<tera::value::Key<'static>, Value> = BTreeMap::new();
    for (position, (name, value)) in entries.iter().enumerate() {
        let key = keys.key(position, name);
        map.insert(key, to_tera(value, keys));
    }
    Value::from(map)
}

/// A JSON value as tera holds it.
fn to_tera(value: &Json, keys: &mut Keys) -> Value {
    match value {
        Json::Null => Value::none(),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(n) = n.as_u64() {
                Value::from(n)
            } else if let Some(n) = n.as_i64() {
                Value::from(n)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(|item| to_tera(item, keys)).collect::<Vec<Value>>()),
        Json::Object(entries) => object(entries, keys),
    }
}

mod parts;
pub use parts::{Escaping, Raw};

#[cfg(test)]
mod equivalence;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Template files as `(name, source)`.
    type Files = &'static [(&'static str, &'static str)];

    pub(super) fn catalog(files: &[(&str, &str)]) -> Catalog {
        Catalog::from_sources(files.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect())
    }

    pub(super) fn base() -> Json {
        json!({
            "incident": { "id": "inc-7", "inputs": { "brand_name": "Harbour & Hale" } },
            "runbook": { "id": "retail-breach" },
            "campaign": { "key": "inc-7/notify/apology", "phase": "notify", "step": "apology" },
            "now": "2026-11-25T09:00:00Z",
        })
    }

    pub(super) fn recipient(line: u64, id: &str, first_name: &str) -> Recipient {
        let fields = json!({ "member_id": id, "email": format!("{id}@example.net"), "first_name": first_name, "points": line * 10 });
        let Json::Object(fields) = fields else { unreachable!() };
        Recipient { line, id: id.to_string(), address: format!("{id}@example.net"), fields }
    }

    pub(super) const NOTE: &str = "{{ recipient.first_name }} ({{ recipient.member_id }}, {{ recipient.points }} points) \
                        {{ code | default(value=\"no code\") }} {{ campaign.key }} {{ incident.inputs.brand_name }} {{ now }}";

    #[test]
    fn a_recipients_fields_and_code_reach_the_template() {
        let catalog = catalog(&[("note.txt", NOTE)]);
        let renderer = Renderer::new(&catalog, "note", base()).unwrap();
        let table = [
            (Some("GC-1"), "Ann (M-1, 20 points) GC-1 inc-7/notify/apology Harbour & Hale 2026-11-25T09:00:00Z"),
            (None, "Ann (M-1, 20 points) no code inc-7/notify/apology Harbour & Hale 2026-11-25T09:00:00Z"),
        ];
        for (code, expected) in table {
            let rendered = renderer.render(&recipient(2, "M-1", "Ann"), code).unwrap();
            assert_eq!(rendered, Rendered { text: expected.to_string(), html: None });
        }
    }

    #[test]
    fn html_is_escaped_in_the_html_variant_only() {
        let catalog = catalog(&[
            ("note.txt", "{{ recipient.first_name }} {{ incident.inputs.brand_name }}"),
            ("note.html", "<p>{{ recipient.first_name }} {{ incident.inputs.brand_name }}</p>"),
        ]);
        let renderer = Renderer::new(&catalog, "note", base()).unwrap();
        let rendered = renderer.render(&recipient(2, "M-1", "<b>Ann</b>"), None).unwrap();
        assert_eq!(rendered.text, "<b>Ann</b> Harbour & Hale");
        assert_eq!(rendered.html.as_deref(), Some("<p>&lt;b&gt;Ann&lt;/b&gt; Harbour &amp; Hale</p>"));
    }

    #[test]
    fn the_text_comes_from_txt_then_md_and_html_only_from_html() {
        let table: [(Files, &str, Option<&str>); 3] = [
            (&[("n.txt", "txt"), ("n.md", "md"), ("n.html", "html")], "txt", Some("html")),
            (&[("n.md", "md")], "md", None),
            (&[("n.txt", "txt"), ("other.html", "html")], "txt", None),
        ];
        for (files, text, html) in table {
            let renderer = Renderer::new(&catalog(files), "n", base()).unwrap();
            let rendered = renderer.render(&recipient(2, "M-1", "Ann"), None).unwrap();
            assert_eq!((rendered.text.as_str(), rendered.html.as_deref()), (text, html), "{files:?}");
        }
    }

    #[test]
    fn a_template_that_cannot_be_used_is_refused_up_front() {
        let table: [(Files, Json, &str); 4] = [
            (&[("n.html", "html only")], base(), "template `n.txt` or `n.md` does not exist"),
            (&[("n.txt", "{{ recipient.first_name ")], base(), "template `n.txt` failed to render: "),
            (&[("n.txt", "ok"), ("n.html", "{% if %}")], base(), "template `n.html` failed to render: "),
            (&[("n.txt", "ok")], json!(["not", "an", "object"]), "template `n.txt` failed to render: the campaign's"),
        ];
        for (files, base, expected) in table {
            let error = Renderer::new(&catalog(files), "n", base).err().expect("refused").to_string();
            assert!(error.starts_with(expected), "{files:?}: {error}");
        }
    }

    #[test]
    fn a_failed_render_names_the_recipient_and_their_line() {
        let catalog = catalog(&[("note.txt", "ok"), ("note.html", "{{ code }} {{ recipient.first_name | upper }}")]);
        let renderer = Renderer::new(&catalog, "note", base()).unwrap();
        let error = renderer.render(&recipient(41, "M-41", "Ann"), None).unwrap_err().to_string();
        assert!(
            error.starts_with("template `note.html` failed to render for recipient `M-41` (line 41 of the list): "),
            "{error}"
        );
        assert!(renderer.render(&recipient(41, "M-41", "Ann"), Some("C")).is_ok());
        let mut nameless = recipient(42, "M-42", "");
        nameless.fields.remove("first_name");
        let error = renderer.render(&nameless, Some("C")).unwrap_err().to_string();
        assert!(error.contains("recipient `M-42` (line 42 of the list)"), "{error}");
    }

    #[test]
    fn a_batch_renders_as_one_by_one_in_order() {
        let catalog = catalog(&[("note.txt", NOTE), ("note.html", "<p>{{ recipient.member_id }} {{ code }}</p>")]);
        let renderer = Renderer::new(&catalog, "note", base()).unwrap();
        let recipients: Vec<Recipient> = (0..301).map(|n| recipient(n + 2, &format!("M-{n}"), "Ann")).collect();
        let codes: Vec<String> = (0..301).map(|n| format!("CODE-{n}")).collect();
        let one_by_one: Vec<Rendered> = recipients
            .iter()
            .zip(&codes)
            .map(|(recipient, code)| renderer.render(recipient, Some(code)).unwrap())
            .collect();
        for threads in [1, 2, 3, 8] {
            let batch: Vec<Rendered> =
                renderer.render_batch_on(&recipients, Some(&codes), threads).into_iter().map(Result::unwrap).collect();
            assert_eq!(batch, one_by_one, "{threads} threads");
        }
        let batch: Vec<Rendered> =
            renderer.render_batch(&recipients, Some(&codes)).into_iter().map(Result::unwrap).collect();
        assert_eq!(batch, one_by_one);
        // Into the buffers of messages sent before (longer ones, with other text left in them).
        renderer.recycle(batch.into_iter().flat_map(|r| [Some(r.text + "left over"), r.html]).flatten());
        let reused: Vec<Rendered> =
            renderer.render_batch_on(&recipients, Some(&codes), 2).into_iter().map(Result::unwrap).collect();
        assert_eq!(reused, one_by_one, "rendered into recycled buffers");
        assert!(renderer.render_batch(&[], None).is_empty());
        // A failure stays with its recipient; the others render.
        let mut broken = recipients.clone();
        broken[200].fields.remove("first_name");
        let catalog = super::Catalog::from_sources(
            [("strict.txt".to_string(), "{{ recipient.first_name }}".to_string())].into_iter().collect(),
        );
        let strict = Renderer::new(&catalog, "strict", base()).unwrap();
        let results = strict.render_batch_on(&broken, None, 2);
        assert_eq!(results.len(), broken.len());
        for (n, result) in results.iter().enumerate() {
            assert_eq!(result.is_err(), n == 200, "recipient {n}: {result:?}");
        }
        let (results, parts) = strict.render_parts(&broken, None, 2, Vec::new, |escaping, recipient, code, out| {
            escaping.message(recipient, code, out, b"").map(|raw| raw.text.to_string()).map_err(|e| e.to_string())
        });
        assert_eq!(results.len(), broken.len());
        for (n, result) in results.iter().enumerate() {
            assert_eq!(result.is_err(), n == 200, "recipient {n}: {result:?}");
        }
        let names: String = broken.iter().filter_map(|r| r.fields.get("first_name")?.as_str()).collect();
        assert_eq!(parts.concat(), names.as_bytes(), "nothing written for the recipient that failed");
    }

    #[test]
    fn the_reference_customer_notice_renders_a_members_offer() {
        let renderer = Renderer::new(&Catalog::built_in(), "customer-notice", base()).unwrap();
        let mut member = recipient(2, "M-1", "Ann");
        member.fields.insert("offer_kind".to_string(), json!("gift_card"));
        member.fields.insert("gift_card_value".to_string(), json!("£20"));
        member.fields.insert("gift_card_code".to_string(), json!("GC-7QX-<2KD>"));
        let rendered = renderer.render(&member, None).unwrap();
        assert!(rendered.text.starts_with("Dear Ann,"), "{}", rendered.text);
        assert!(rendered.text.contains("Your gift card code is GC-7QX-<2KD>."), "{}", rendered.text);
        assert!(rendered.text.contains("£20 Harbour & Hale gift card"), "{}", rendered.text);
        let html = rendered.html.unwrap();
        assert!(html.contains("<strong>GC-7QX-&lt;2KD&gt;</strong>"), "{html}");
        assert!(html.contains("Harbour &amp; Hale gift card"), "{html}");
    }

    #[test]
    fn a_renderer_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Renderer>();
    }
}
