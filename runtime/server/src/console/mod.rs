//! The web console at `/`: server-rendered pages (`meridian-console`) over this server's own
//! state, same origin and same tokens as the API. A browser signs in with a token on the login
//! page and gets a session cookie; every form that changes something carries the session's CSRF
//! token. Without a tokens file (loopback only) everybody is `local` with every role, and a
//! session is opened on the first page so that forms still carry a CSRF token.

mod data;
pub(crate) mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use meridian_console as console;
use meridian_runner::Decision;
use serde::Deserialize;

use crate::Server;
use crate::api::ApiError;
use crate::auth::{Identity, Role};
use session::{Session, same, set_cookie};

/// What the pages may load: their own script and stylesheet (inline `style` attributes place
/// the timeline's bars), nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router() -> Router<Arc<Server>> {
    Router::new()
        .route("/", get(data::overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/runs", get(data::runs))
        .route("/runs/{id}", get(data::run))
        .route("/runs/{id}/live", get(data::run_live))
        .route("/runs/{id}/approvals/{step}", post(decide))
        .route("/drills", get(data::drills))
        .route("/schedules", get(data::schedules))
        .route("/schedules/{id}/{action}", post(schedule_action))
        .route("/assets/{file}", get(asset))
}

/// The signed-in caller of a page.
pub(crate) struct Who {
    pub identity: Identity,
    pub session: Session,
    /// A session opened for this request (no tokens file): its cookie goes with the answer.
    new_cookie: Option<String>,
}

impl Who {
    pub(crate) fn viewer(&self, s: &Server) -> console::Viewer {
        let mut roles = vec!["viewer"];
        roles.extend(
            self.identity
                .roles
                .iter()
                .filter(|r| **r != Role::Viewer)
                .map(|r| r.as_str()),
        );
        console::Viewer {
            name: self.identity.name.clone(),
            roles: roles.join(", "),
            may_approve: self.identity.may(Role::Approver),
            may_operate: self.identity.may(Role::Operator),
            csrf: self.session.csrf.clone(),
            signed_in: s.tokens.is_some(),
        }
    }

    /// An HTML answer with the console's headers (and the new session's cookie).
    pub(crate) fn page(&self, s: &Server, status: StatusCode, body: String) -> Response {
        let mut r = html(status, body);
        if let Some(id) = &self.new_cookie
            && let Ok(v) = HeaderValue::from_str(&set_cookie(id, s.config.tls_cert.is_some()))
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    pub(crate) fn error(&self, s: &Server, e: &ApiError) -> Response {
        let v = self.viewer(s);
        self.page(
            s,
            e.status,
            console::error_page(e.status.as_u16(), &e.message, Some(&v)),
        )
    }
}

pub(crate) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The caller of a page, or the answer that sends them to the login page.
pub(crate) fn who(s: &Server, headers: &HeaderMap, here: &str) -> Result<Who, Box<Response>> {
    if let Some((_, session)) = s.sessions.find(headers) {
        return Ok(Who {
            identity: session.identity.clone(),
            session,
            new_cookie: None,
        });
    }
    if s.tokens.is_none() {
        let (id, session) = s.sessions.open(Identity {
            name: "local".into(),
            roles: vec![Role::Operator, Role::Approver],
        });
        return Ok(Who {
            identity: session.identity.clone(),
            session,
            new_cookie: Some(id),
        });
    }
    Err(Box::new(
        Redirect::to(&format!("/login?next={}", query_escape(here))).into_response(),
    ))
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Only a path on this site (never `//host` or a URL) is followed after signing in. Control
/// characters are refused too: browsers drop tabs and newlines from a URL, so `/\t/evil.example`
/// would be followed as `//evil.example` (and a CR or LF cannot go in a `Location` header).
fn local_path(next: &str) -> &str {
    if next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
    {
        next
    } else {
        "/"
    }
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn login_form(State(s): State<Arc<Server>>, Query(n): Query<Next>) -> Response {
    if s.tokens.is_none() {
        return Redirect::to("/").into_response();
    }
    html(
        StatusCode::OK,
        console::login_page(None, local_path(n.next.as_deref().unwrap_or("/"))),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(tokens) = &s.tokens else {
        return Redirect::to("/").into_response();
    };
    if let Err(why) = crate::auth::own_form(&headers) {
        return html(StatusCode::FORBIDDEN, console::error_page(403, &why, None));
    }
    let next = local_path(&f.next);
    let Some(identity) = tokens.identify(f.token.trim()) else {
        return html(
            StatusCode::UNAUTHORIZED,
            console::login_page(Some("Unknown token."), next),
        );
    };
    let (id, _) = s.sessions.open(identity);
    let mut r = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&id, s.config.tls_cert.is_some())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    match s.sessions.find(&headers) {
        Some((id, session)) if same(&f.csrf, &session.csrf) => s.sessions.close(&id),
        // A session, and a form without its token (another site's): signed out of nothing,
        // the cookie kept (it was cleared all the same, signing the user out).
        Some(_) => {
            return html(
                StatusCode::FORBIDDEN,
                console::error_page(
                    403,
                    "This sign-out form lacks the session's CSRF token: use the console's own Sign out button.",
                    None,
                ),
            );
        }
        None => {}
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie("", s.config.tls_cert.is_some())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The caller of a state-changing form: a session, and the session's CSRF token in the form.
fn checked(s: &Server, headers: &HeaderMap, csrf: &str) -> Result<Who, Box<Response>> {
    let Some((_, session)) = s.sessions.find(headers) else {
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            console::error_page(
                403,
                "This needs a signed-in session (sign in again; sessions end after 12 hours or when the server restarts).",
                None,
            ),
        )));
    };
    let who = Who {
        identity: session.identity.clone(),
        session,
        new_cookie: None,
    };
    if csrf.is_empty() || !same(csrf, &who.session.csrf) {
        return Err(Box::new(who.error(
            s,
            &ApiError {
                status: StatusCode::FORBIDDEN,
                message: "The form's CSRF token is missing or wrong: the request was not sent from this console's page. Nothing was changed.".into(),
            },
        )));
    }
    Ok(who)
}

fn forbid(id: &Identity, role: Role) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "token `{}` lacks the `{}` role this needs",
            id.name,
            role.as_str()
        ),
    }
}

/// A form's answer: back to `to` (303), or — sent by the page's script — a short text.
fn done(headers: &HeaderMap, to: &str, text: String) -> Response {
    if headers.contains_key("x-meridian-fetch") {
        (StatusCode::OK, text).into_response()
    } else {
        Redirect::to(to).into_response()
    }
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

async fn decide(
    State(s): State<Arc<Server>>,
    Path((run, step)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<DecideForm>,
) -> Response {
    let who = match checked(&s, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !who.identity.may(Role::Approver) {
        return who.error(&s, &forbid(&who.identity, Role::Approver));
    }
    let approve = match f.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return who.error(&s, &ApiError::bad_request("decide with Approve or Reject")),
    };
    if f.comment.chars().count() > 4096 {
        return who.error(
            &s,
            &ApiError::bad_request("comment: at most 4,096 characters"),
        );
    }
    let decision = Decision {
        step: step.clone(),
        approve,
        by: who.identity.name.clone(),
        comment: f.comment,
    };
    match s.decide(&run, decision) {
        Ok(()) => done(
            &headers,
            &format!("/runs/{}", query_escape(&run)),
            format!("{} {step}", if approve { "approved" } else { "rejected" }),
        ),
        Err(e) => who.error(&s, &e),
    }
}

async fn schedule_action(
    State(s): State<Arc<Server>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match checked(&s, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !who.identity.may(Role::Operator) {
        return who.error(&s, &forbid(&who.identity, Role::Operator));
    }
    let result = match action.as_str() {
        "pause" => s
            .set_paused(&id, Some(format!("paused by {}", who.identity.name)))
            .map(|_| ()),
        "resume" => s.set_paused(&id, None).map(|_| ()),
        "trigger" => s.trigger(&id).await.map(|_| ()),
        other => Err(ApiError::not_found(format!("no action `{other}`"))),
    };
    match result {
        Ok(()) => done(&headers, "/schedules", format!("{action}: {id}")),
        Err(e) => who.error(&s, &e),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match console::assets::get(&format!("/assets/{file}")) {
        Some((kind, body)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, console::assets::CACHE_CONTROL),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_path_of_this_site_is_followed_after_signing_in() {
        for ok in ["/", "/runs?state=failed", "/runs/r1-2#events"] {
            assert_eq!(super::local_path(ok), ok);
        }
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie: x=y",
            "runs",
        ] {
            assert_eq!(super::local_path(bad), "/", "{bad:?}");
        }
    }
}
