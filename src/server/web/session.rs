//! Dashboard sessions: an API token exchanged at sign-in for a random session id, sent back as the
//! `pg_session` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` when served over TLS).
//! Only the id's SHA-256 is kept, in memory: a restart signs everybody out. A session ends after
//! `server.sessions.idle` without a request, and after `server.sessions.absolute` whatever it
//! does. Each holds a CSRF token that every form carries and every POST must present, and a
//! flash message shown once by the next page.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::server::Sessions as Settings;

/// The session cookie's name.
pub const COOKIE: &str = "pg_session";
/// The sign-in form's own cookie: a random value the form repeats, so that another site cannot
/// sign a browser in as someone else (login CSRF).
pub const SIGNIN_COOKIE: &str = "pg_signin";

/// The most sessions held at once; past it the least recently used goes.
const MOST: usize = 10_000;

/// A message for the next page: what an action did, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flash {
    /// `done` or `refused`.
    pub kind: &'static str,
    pub text: String,
}

impl Flash {
    pub fn done(text: impl Into<String>) -> Flash {
        Flash { kind: "done", text: text.into() }
    }

    pub fn refused(text: impl Into<String>) -> Flash {
        Flash { kind: "refused", text: text.into() }
    }
}

struct Session {
    person: String,
    csrf: String,
    created: Instant,
    seen: Instant,
    flash: Option<Flash>,
}

/// A signed-in request's person and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Signed {
    pub person: String,
    pub csrf: String,
    /// The page's script fetching the page again to swap in its live regions: such a request
    /// leaves the flash message for the page the person is being sent to.
    pub live: bool,
    key: [u8; 32],
}

/// Every open session, by the hash of its id.
pub struct Sessions {
    settings: Settings,
    open: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn new(settings: Settings) -> Sessions {
        Sessions { settings, open: Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// A new session for `person`: the cookie's value (the id, never stored) and its CSRF token.
    pub fn open(&self, person: &str) -> (String, String) {
        self.open_at(person, Instant::now())
    }

    fn open_at(&self, person: &str, now: Instant) -> (String, String) {
        let id = random();
        let csrf = random();
        let mut open = self.open.lock().expect("the sessions are never poisoned");
        open.retain(|_, session| self.live(session, now));
        if open.len() >= MOST
            && let Some(oldest) = open.iter().min_by_key(|(_, session)| session.seen).map(|(key, _)| *key)
        {
            open.remove(&oldest);
        }
        let session = Session { person: person.to_string(), csrf: csrf.clone(), created: now, seen: now, flash: None };
        open.insert(hash(&id), session);
        (id, csrf)
    }

    /// The session whose id is `id`, if it is open and not expired; its idle time starts again.
    pub fn find(&self, id: &str) -> Option<Signed> {
        self.find_at(id, Instant::now())
    }

    fn find_at(&self, id: &str, now: Instant) -> Option<Signed> {
        let key = hash(id);
        let mut open = self.open.lock().expect("the sessions are never poisoned");
        let session = open.get_mut(&key)?;
        if !self.live(session, now) {
            open.remove(&key);
            return None;
        }
        session.seen = now;
        Some(Signed { person: session.person.clone(), csrf: session.csrf.clone(), live: false, key })
    }

    /// Whether the session is still open (without counting this as a request).
    pub fn is_open(&self, signed: &Signed) -> bool {
        let open = self.open.lock().expect("the sessions are never poisoned");
        open.get(&signed.key).is_some_and(|session| self.live(session, Instant::now()))
    }

    fn live(&self, session: &Session, now: Instant) -> bool {
        now.saturating_duration_since(session.seen) < self.settings.idle
            && now.saturating_duration_since(session.created) < self.settings.absolute
    }

    /// Ends the session.
    pub fn close(&self, signed: &Signed) {
        self.open.lock().expect("the sessions are never poisoned").remove(&signed.key);
    }

    /// Keeps `flash` for the session's next page.
    pub fn flash(&self, signed: &Signed, flash: Flash) {
        if let Some(session) = self.open.lock().expect("the sessions are never poisoned").get_mut(&signed.key) {
            session.flash = Some(flash);
        }
    }

    /// The flash kept for this page, once.
    pub fn take_flash(&self, signed: &Signed) -> Option<Flash> {
        self.open.lock().expect("the sessions are never poisoned").get_mut(&signed.key).and_then(|s| s.flash.take())
    }

    /// How many sessions are held (expired ones included until the next sign-in clears them).
    pub fn len(&self) -> usize {
        self.open.lock().expect("the sessions are never poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `presented` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(signed: &Signed, presented: Option<&str>) -> bool {
    let Some(presented) = presented else { return false };
    same(&signed.csrf, presented)
}

/// Whether two strings are equal, in time that depends on their lengths only.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes from the operating system, in URL-safe base64.
pub fn random() -> String {
    use base64::Engine as _;
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, on `path`, for `max_age` seconds (0
/// deletes it), `Secure` when `secure`.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(Settings { idle: Duration::from_secs(60), absolute: Duration::from_secs(300), secure: false })
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_its_id_is_not_kept() {
        let sessions = sessions();
        let now = Instant::now();
        let (id, csrf) = sessions.open_at("dana.ito", now);
        assert_ne!(id, csrf);
        let signed = sessions.find_at(&id, now).unwrap();
        assert_eq!((signed.person.as_str(), signed.csrf.as_str()), ("dana.ito", csrf.as_str()));
        assert!(sessions.find_at(&csrf, now).is_none(), "the CSRF token is not a session id");
        assert!(sessions.find_at("", now).is_none());
        let held = sessions.open.lock().unwrap();
        assert!(held.keys().all(|key| key != id.as_bytes()), "the id itself is not held");
    }

    #[test]
    fn a_session_ends_when_idle_too_long_and_at_its_absolute_limit() {
        let sessions = sessions();
        let start = Instant::now();
        let (id, _) = sessions.open_at("dana.ito", start);
        // Seen every 50 s: idle never reaches 60 s, but 300 s after sign-in it ends.
        for step in 1..6 {
            assert!(sessions.find_at(&id, start + Duration::from_secs(50 * step)).is_some(), "at {}", 50 * step);
        }
        assert!(sessions.find_at(&id, start + Duration::from_secs(300)).is_none(), "past the absolute limit");
        let (idle, _) = sessions.open_at("dana.ito", start);
        assert!(sessions.find_at(&idle, start + Duration::from_secs(61)).is_none(), "idle for 61 s");
        assert!(sessions.find_at(&idle, start).is_none(), "an expired session is gone for good");
    }

    #[test]
    fn signing_out_ends_the_session_and_csrf_tokens_are_compared_whole() {
        let sessions = sessions();
        let (id, csrf) = sessions.open_at("tom.reyes", Instant::now());
        let signed = sessions.find(&id).unwrap();
        assert!(csrf_matches(&signed, Some(&csrf)));
        assert!(!csrf_matches(&signed, None));
        assert!(!csrf_matches(&signed, Some("")));
        assert!(!csrf_matches(&signed, Some(&csrf[..csrf.len() - 1])));
        assert!(!csrf_matches(&signed, Some(&format!("{csrf}x"))));
        sessions.close(&signed);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = sessions();
        let (id, _) = sessions.open("dana.ito");
        let signed = sessions.find(&id).unwrap();
        sessions.flash(&signed, Flash::refused("no"));
        assert_eq!(sessions.take_flash(&signed), Some(Flash::refused("no")));
        assert_eq!(sessions.take_flash(&signed), None);
    }

    #[test]
    fn cookies_are_read_among_others_and_written_with_their_flags() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("cookie", "a=1; pg_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "pg"), None);
        assert_eq!(
            set_cookie(COOKIE, "v", "/", 60, true),
            "pg_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
