//! The console's sessions: a token given once on the login page becomes a random session id in
//! an HttpOnly, SameSite=Strict cookie; the token itself never reaches the browser's storage.
//! Each session has a CSRF token that every state-changing request must carry (a form field,
//! or the `X-CSRF-Token` header on the API), so a page of another site cannot act in a signed-in
//! browser's name. Sessions live in this server's memory: a restart signs everybody out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

use crate::auth::Identity;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "meridian_session";
/// How long a session lasts.
const TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept (the oldest go first).
const MAX: usize = 10_000;
/// At most this many sessions per identity (its oldest go first): one token's holder signing
/// in again and again evicts only their own sessions — 10,000 sign-ins with one token signed
/// every other user out.
const PER_IDENTITY: usize = 64;

#[derive(Clone)]
pub(crate) struct Session {
    pub identity: Identity,
    pub csrf: String,
    created: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Equal, looking at every byte (no early exit on the first difference).
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// A new session for `identity`: (session id, the session).
    pub(crate) fn open(&self, identity: Identity) -> (String, Session) {
        let mut map = self.0.lock().unwrap();
        let mut own: Vec<(String, Instant)> = map
            .iter()
            .filter(|(_, s)| s.identity.name == identity.name)
            .map(|(k, s)| (k.clone(), s.created))
            .collect();
        if own.len() >= PER_IDENTITY {
            own.sort_by_key(|(_, created)| *created);
            for (k, _) in own.iter().take(own.len() + 1 - PER_IDENTITY) {
                map.remove(k);
            }
        }
        if map.len() >= MAX {
            map.retain(|_, s| s.created.elapsed() < TTL);
            while map.len() >= MAX {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => map.remove(&k),
                    None => break,
                };
            }
        }
        let id = random_hex();
        let session = Session {
            identity,
            csrf: random_hex(),
            created: Instant::now(),
        };
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session whose id the request's cookie carries.
    pub(crate) fn find(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers)?;
        let mut map = self.0.lock().unwrap();
        match map.get(&id) {
            Some(s) if s.created.elapsed() < TTL => Some((id, s.clone())),
            Some(_) => {
                map.remove(&id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn close(&self, id: &str) {
        self.0.lock().unwrap().remove(id);
    }
}

/// The session id in the request's `Cookie` header(s).
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a session (`secure` over HTTPS), or one that removes it (`id` empty).
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    let age = if id.is_empty() { 0 } else { TTL.as_secs() };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let s = Sessions::default();
        let (id, sess) = s.open(Identity {
            name: "alice".into(),
            roles: vec![Role::Approver],
        });
        assert_eq!(sess.csrf.len(), 64);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("theme=dark; {COOKIE}={id}").parse().unwrap(),
        );
        let (_, found) = s.find(&h).unwrap();
        assert_eq!(found.identity.name, "alice");
        assert!(same(&found.csrf, &sess.csrf) && !same(&found.csrf, "x"));
        s.close(&id);
        assert!(s.find(&h).is_none());
        assert!(set_cookie(&id, true).contains("HttpOnly; SameSite=Strict"));
        assert!(set_cookie(&id, true).ends_with("; Secure"));
    }

    /// One identity signing in over and over evicts its own oldest sessions, not others'
    /// (10,000 sign-ins with one viewer token signed every other user out).
    #[test]
    fn a_flood_of_sign_ins_evicts_only_its_own_sessions() {
        let s = Sessions::default();
        let who = |name: &str| Identity {
            name: name.into(),
            roles: vec![Role::Viewer],
        };
        let cookie_of = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, format!("{COOKIE}={id}").parse().unwrap());
            h
        };
        let (alice, _) = s.open(who("alice"));
        let (first, _) = s.open(who("mallory"));
        for _ in 0..1_000 {
            s.open(who("mallory"));
        }
        assert!(s.find(&cookie_of(&alice)).is_some(), "alice was signed out");
        assert!(
            s.find(&cookie_of(&first)).is_none(),
            "mallory's oldest is gone"
        );
        let mallory =
            s.0.lock()
                .unwrap()
                .values()
                .filter(|x| x.identity.name == "mallory")
                .count();
        assert_eq!(mallory, PER_IDENTITY);
    }
}
