//! The page around every page: head, navigation, who is signed in.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::assets;

/// Who looks at a served page, and what the page may offer them.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The token's name.
    pub name: String,
    /// `viewer`, `operator, approver`, …
    pub roles: String,
    /// Shows Approve / Reject on a gate.
    pub may_approve: bool,
    /// Shows pause / resume / trigger on a schedule.
    pub may_operate: bool,
    /// The session's CSRF token, sent with every form that changes something.
    pub csrf: String,
    /// Whether the server has a tokens file (else everybody is `local` and there is no logout).
    pub signed_in: bool,
}

/// Where a page goes: served by `meridian serve`, or written as one self-contained file.
#[derive(Clone, Copy, Debug)]
pub enum Shell<'a> {
    Served(&'a Viewer),
    /// No navigation, no script, the stylesheet inlined, a CSP that allows nothing else.
    File,
    /// Served to nobody in particular (the login page, an error before signing in): the
    /// stylesheet, no navigation, no script.
    Anonymous,
}

impl Shell<'_> {
    pub(crate) fn viewer(&self) -> Option<&Viewer> {
        match self {
            Shell::Served(v) => Some(v),
            Shell::File | Shell::Anonymous => None,
        }
    }
}

/// The navigation's entries: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/runs", "Runs"),
    ("/drills", "Drills"),
    ("/schedules", "Schedules"),
];

/// A whole page. `current` is the navigation entry to mark.
pub(crate) fn page(title: &str, shell: Shell<'_>, current: &str, body: &Markup) -> String {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @match shell {
                    Shell::File => {
                        meta http-equiv="Content-Security-Policy"
                            content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
                        style { (PreEscaped(assets::CSS)) }
                    }
                    Shell::Served(_) => {
                        link rel="stylesheet" href=(assets::css_path());
                        script src=(assets::js_path()) defer {}
                    }
                    Shell::Anonymous => link rel="stylesheet" href=(assets::css_path());
                }
                title { (title) " — Meridian" }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                @if let Shell::Served(v) = shell {
                    header.top {
                        span.brand { "Meridian" }
                        nav aria-label="Console" {
                            @for (path, label) in NAV {
                                @if *path == current {
                                    a href=(path) aria-current="page" { (label) }
                                } @else {
                                    a href=(path) { (label) }
                                }
                            }
                        }
                        span.who {
                            "Signed in as " strong { (v.name) } " (" (v.roles) ")"
                            @if v.signed_in {
                                " "
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(v.csrf);
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (*body) }
            }
        }
    };
    doc.into_string()
}

/// A status word as a badge.
pub(crate) fn badge(word: &str) -> Markup {
    // The class is one word of a fixed vocabulary, never text as given: a schedule's last
    // result (a step's error inside) put every word of it in the class list — `succeeded`
    // coloured a failure green, `skip` moved the badge off screen.
    let class = if word.len() <= 24
        && !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        word
    } else {
        "other"
    };
    html! { span class={"badge " (class)} { (crate::fmt::clean(word)) } }
}
