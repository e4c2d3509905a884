//! Validation of what steps and checks send: HTTP requests, URLs, and the `${ expression }`
//! parts of the strings in them.

use super::{Code, Mark, Names, RUNBOOK_VARIABLES, Spanned, Table, Validator, texts};
use crate::expr;
use crate::runbook::{model, raw};

impl Validator<'_> {
    pub(super) fn request(
        &mut self,
        method: &Option<Spanned<String>>,
        url: &Spanned<String>,
        headers: &Table<raw::Text>,
        body: &Option<Spanned<serde_json::Value>>,
        default_method: &str,
    ) -> model::Request {
        let method = match method {
            Some(method) => {
                let upper = method.value.to_ascii_uppercase();
                if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&upper.as_str()) {
                    self.report(
                        Code::InvalidValue,
                        method.mark,
                        format!("`{}` is not an HTTP method phasegate sends", method.value),
                    )
                    .help = Some("one of: GET, HEAD, POST, PUT, PATCH, DELETE".to_string());
                }
                upper
            }
            None => default_method.to_string(),
        };
        let shape = self.interpolated(url);
        self.url(url, &shape);
        self.interpolated_texts(headers);
        if let Some(body) = body {
            self.interpolated_json(&body.value, body.mark);
        }
        model::Request {
            method,
            url: url.value.clone(),
            headers: texts(headers),
            body: body.as_ref().map(|b| b.value.clone()),
        }
    }

    /// Checks the `${ expression }` parts of a string a step sends, and returns the string with
    /// each replaced by `x`, for checks of its shape (a URL's host, say).
    pub(super) fn interpolated(&mut self, text: &Spanned<String>) -> String {
        let names = Names { variables: RUNBOOK_VARIABLES.to_vec(), ..std::mem::take(&mut self.names) };
        let result = expr::interpolate(&text.value, &names);
        self.names = names;
        match result {
            Ok(parts) => {
                let mut shape = String::new();
                for part in parts {
                    match part {
                        expr::Part::Text(literal) => shape.push_str(&literal),
                        expr::Part::Expression(condition) => {
                            self.check_order(&condition, text.mark);
                            shape.push('x');
                        }
                    }
                }
                shape
            }
            Err(errors) => {
                self.report_condition_errors(errors, text.mark);
                text.value.clone()
            }
        }
    }

    pub(super) fn interpolated_texts(&mut self, table: &Table<raw::Text>) {
        for (name, value) in &table.0 {
            if let raw::Text::Literal(literal) = value {
                self.interpolated(&Spanned::new(name.mark, literal.clone()));
            }
        }
    }

    /// Every string in a JSON body may hold expressions; problems are reported at the body.
    fn interpolated_json(&mut self, value: &serde_json::Value, mark: Mark) {
        match value {
            serde_json::Value::String(text) => {
                self.interpolated(&Spanned::new(mark, text.clone()));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| self.interpolated_json(item, mark)),
            serde_json::Value::Object(fields) => fields.values().for_each(|field| self.interpolated_json(field, mark)),
            _ => {}
        }
    }

    /// Checks a URL's scheme and host. `shape` is the URL with each `${ }` part replaced by `x`;
    /// a URL that starts with an expression can only be checked when the step runs.
    pub(super) fn url(&mut self, url: &Spanned<String>, shape: &str) {
        if url.value.trim_start().starts_with("${") {
            return;
        }
        let text = shape;
        let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
        let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
        if host.is_none_or(|host| host.is_empty() || host.contains(char::is_whitespace)) {
            self.report(Code::BadUrl, url.mark, format!("`{}` is not an absolute http or https URL", url.value)).help =
                Some(
                    "write the whole URL with its scheme and host, for example `https://siem.example.com/api/v1/holds`"
                        .to_string(),
                );
        }
    }
}
