//! A campaign's messages written straight into the form a JSON body sends them in
//! ([`Renderer::render_parts`]), for the batch HTTP channel: the compiled form's literal text was
//! escaped for a JSON string once, when compiled, so only what each recipient brings is escaped
//! per message; the message as rendered stays in the thread's buffers until its next message.

use super::{Error, Recipient, Renderer, Worker};

impl Renderer {
    /// Every recipient's message written straight into the form a JSON body sends it in, on
    /// [`Renderer::render_batch_on`]'s threads: each thread takes a buffer from `part` and calls
    /// `write` with each of its recipients in turn, their offer code, that buffer, and an
    /// [`Escaping`] that renders the recipient's message into it escaped for a JSON string
    /// (the template's literal text was escaped once, when it was compiled). `write` writes what
    /// goes around the message and does what it needs with the message as rendered (such as its
    /// digest), which stays in the thread's own buffers: a batch holds each message once, in the
    /// form it is sent in. Gives `write`'s results in the recipients' order, and the threads'
    /// buffers in the same order.
    ///
    /// # Panics
    ///
    /// When `codes` is given and its length differs from `recipients`'.
    pub fn render_parts<T: Send>(
        &self,
        recipients: &[Recipient],
        codes: Option<&[String]>,
        threads: usize,
        part: impl Fn() -> Vec<u8> + Sync,
        write: impl Fn(&mut Escaping<'_>, &Recipient, Option<&str>, &mut Vec<u8>) -> T + Sync,
    ) -> (Vec<T>, Vec<Vec<u8>>) {
        let written = self.scatter(recipients, codes, threads, |chunk, code| {
            let mut escaping = Escaping { worker: Worker::new(self), text: String::new(), html: String::new() };
            let mut out = part();
            let made: Vec<T> = chunk
                .iter()
                .enumerate()
                .map(|(n, recipient)| write(&mut escaping, recipient, code(n), &mut out))
                .collect();
            (made, out)
        });
        let mut all = Vec::with_capacity(recipients.len());
        let mut parts = Vec::with_capacity(written.len());
        for (made, out) in written {
            all.extend(made);
            parts.push(out);
        }
        (all, parts)
    }
}

/// A recipient's message as [`Escaping::message`] rendered it: its text and its HTML (when the
/// template has one) as they are sent, unescaped (what the message's digest covers), in the
/// thread's buffers until its next message.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'w> {
    pub text: &'w str,
    pub html: Option<&'w str>,
}

/// What [`Renderer::render_parts`] renders a thread's messages with.
pub struct Escaping<'r> {
    worker: Worker<'r>,
    /// The last message's text and HTML, unescaped.
    text: String,
    html: String,
}

impl Escaping<'_> {
    /// `recipient`'s message appended to `out` escaped for JSON strings (without their quotes):
    /// its text and, when the template has an HTML variant, `between` then its HTML. Gives the
    /// message as rendered. A failed render (named as [`Renderer::render`] names it) leaves
    /// `out` as it was.
    pub fn message(
        &mut self,
        recipient: &Recipient,
        code: Option<&str>,
        out: &mut Vec<u8>,
        between: &[u8],
    ) -> Result<Raw<'_>, Error> {
        let start = out.len();
        if let Err(error) = self.write(recipient, code, out, between) {
            out.truncate(start);
            return Err(error);
        }
        let html = self.worker.renderer.html_file.as_ref().map(|_| self.html.as_str());
        Ok(Raw { text: &self.text, html })
    }

    fn write(
        &mut self,
        recipient: &Recipient,
        code: Option<&str>,
        out: &mut Vec<u8>,
        between: &[u8],
    ) -> Result<(), Error> {
        self.worker.prepared = false;
        self.text.clear();
        self.worker.file_into(false, recipient, code, &mut self.text, Some(&mut *out))?;
        if self.worker.renderer.html_file.is_some() {
            out.extend_from_slice(between);
            self.html.clear();
            self.worker.file_into(true, recipient, code, &mut self.html, Some(out))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{NOTE, base, catalog, recipient};
    use super::super::{Catalog, Rendered};
    use super::*;

    /// `text` escaped for a JSON string, as serde_json escapes it.
    fn escaped(text: &str) -> String {
        let quoted = serde_json::to_string(text).unwrap();
        quoted[1..quoted.len() - 1].to_string()
    }

    #[test]
    fn a_batch_written_for_json_is_each_message_escaped_in_order() {
        let note = catalog(&[("note.txt", NOTE), ("note.html", "<p>\"{{ recipient.first_name }}\"\n{{ code }}</p>")]);
        // One that tera renders (`default` is not compiled), and the reference notice, compiled.
        for (catalog, name) in [(note, "note"), (Catalog::built_in(), "customer-notice")] {
            let renderer = Renderer::new(&catalog, name, base()).unwrap();
            assert_eq!(renderer.compiled(), name == "customer-notice");
            let recipients: Vec<Recipient> =
                (0..301).map(|n| recipient(n + 2, &format!("M-{n}"), &format!("A\"n\\n\t{n}"))).collect();
            let codes: Vec<String> = (0..301).map(|n| format!("CODE-{n}")).collect();
            let one_by_one: Vec<Rendered> = recipients
                .iter()
                .zip(&codes)
                .map(|(recipient, code)| renderer.render(recipient, Some(code)).unwrap())
                .collect();
            let expected: Vec<String> = one_by_one
                .iter()
                .map(|r| format!("{}|{}", escaped(&r.text), escaped(r.html.as_deref().unwrap_or_default())))
                .collect();
            for threads in [1, 2, 3, 8] {
                let (raws, parts) = renderer.render_parts(
                    &recipients,
                    Some(&codes),
                    threads,
                    Vec::new,
                    |escaping, recipient, code, out| {
                        if !out.is_empty() {
                            out.push(b',');
                        }
                        let raw = escaping.message(recipient, code, out, b"|").unwrap();
                        Rendered { text: raw.text.to_string(), html: raw.html.map(str::to_string) }
                    },
                );
                assert_eq!(raws, one_by_one, "{name}, {threads} threads");
                let parts: Vec<String> = parts.into_iter().map(|part| String::from_utf8(part).unwrap()).collect();
                assert_eq!(parts.join(","), expected.join(","), "{name}, {threads} threads");
            }
        }
    }
}
