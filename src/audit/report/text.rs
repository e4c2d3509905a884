//! Text for the HTML report and its chart: escaping, how wide a line is drawn, and wrapping a
//! label into the room it has.
//!
//! The chart cannot ask the browser how wide its labels are, so it estimates: each character's
//! width is that of DejaVu Sans (among the widest fonts a `system-ui, sans-serif` stack lands on)
//! rounded up, so a label laid out by the estimate fits in any of the usual fonts. The browser
//! test in `tests/it/report/browser.rs` measures the result.

/// Text for HTML: element content or a quoted attribute value.
pub(super) fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// How wide `text` is drawn at `size` pixels, estimated from above.
pub(crate) fn width(text: &str, size: f64) -> f64 {
    text.chars().map(em).sum::<f64>() * size
}

/// A character's advance in ems, rounded up from DejaVu Sans.
fn em(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '\'' | '|' | '!' | ':' | ';' | '.' | ',' => 0.40,
        'f' | 't' | 'r' | 'I' | ' ' | '(' | ')' | '[' | ']' | '{' | '}' | '-' | '/' | '\\' | '`' => 0.46,
        'm' | 'w' => 1.0,
        'M' | 'W' | '@' | '%' | '…' | '—' => 1.06,
        'A'..='Z' | '&' | '#' | '_' | '=' | '+' | '<' | '>' | '~' | '*' | '$' | '?' | '"' | '^' => 0.84,
        c if c.is_ascii() => 0.68,
        // Letters of other scripts, symbols and emoji: as wide as the widest above.
        _ => 1.1,
    }
}

/// `text` broken into at most `max_lines` lines no wider than `room` at `size`: at spaces where
/// it can, inside a word where a word alone is too wide. When it does not all fit, the last line
/// ends in `…` (the whole text is then the caller's to show elsewhere, in a tooltip).
pub(crate) fn wrap(text: &str, room: f64, size: f64, max_lines: usize) -> Vec<String> {
    let fits = |line: &str| width(line, size) <= room;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let joined = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if fits(&joined) {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word too wide for a line of its own is broken after the last `-`, `_`, `/` or `.`
        // that fits, else where the room ends.
        for c in word.chars() {
            line.push(c);
            if fits(&line) {
                continue;
            }
            line.pop();
            let rest = match line.rfind(['-', '_', '/', '.']) {
                Some(at) if at > 0 => line.split_off(at + 1),
                _ => String::new(),
            };
            lines.push(std::mem::replace(&mut line, rest));
            line.push(c);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.last_mut().expect("at least one line");
        while !last.is_empty() && !fits(&format!("{last}…")) {
            last.pop();
        }
        let kept = last.trim_end().to_string();
        *last = format!("{kept}…");
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn labels_wrap_at_spaces_break_long_words_and_elide_what_does_not_fit() {
        let room = width("Contain the intrusion", 10.0);
        let table: &[(&str, usize, &[&str])] = &[
            ("Contain", 2, &["Contain"]),
            ("Contain the intrusion now", 2, &["Contain the intrusion", "now"]),
            ("Contain   the\tintrusion", 2, &["Contain the intrusion"]),
            (
                "Contain the intrusion at every store and warehouse",
                2,
                &["Contain the intrusion", "at every store and…"],
            ),
            ("Contain the intrusion at every store", 1, &["Contain the intrusi…"]),
            ("a-phase-whose-identifier-is-long-and-has-no-title", 2, &["a-phase-whose-", "identifier-is-long-…"]),
            ("WWWWWWWWWWWWWWWWWWWWWWWWWWWWWW", 2, &["WWWWWWWWWWW", "WWWWWWWWWW…"]),
            ("", 2, &[]),
        ];
        for (text, max_lines, expected) in table {
            let lines = wrap(text, room, 10.0, *max_lines);
            assert_eq!(&lines, expected, "{text:?} in {max_lines} lines");
            assert!(lines.iter().all(|line| width(line, 10.0) <= room), "{lines:?}");
        }
    }

    #[test]
    fn wide_letters_are_estimated_wider() {
        assert!(width("WWWW", 11.0) > width("iiii", 11.0) * 2.0);
        assert!(width("MMMMMMMMMM", 11.0) >= 110.0, "DejaVu Sans draws M 0.86 em wide");
        assert!(width("漢字", 11.0) >= 22.0, "other scripts are an em or more");
    }
}
