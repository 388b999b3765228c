//! The console's stylesheet and script, embedded in the binary. Their URLs carry a hash of
//! their content, so they are served with a year-long immutable cache and a new build is never
//! shown an old file.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// The stylesheet.
pub const CSS: &str = include_str!("../assets/console.css");
/// The script (live updates of a run page, approval forms sent in the background).
pub const JS: &str = include_str!("../assets/console.js");

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

static CSS_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/assets/console-{}.css", short_hash(CSS)));
static JS_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/assets/console-{}.js", short_hash(JS)));

/// Where the stylesheet is served (`/assets/console-HASH.css`).
pub fn css_path() -> &'static str {
    &CSS_PATH
}

/// Where the script is served (`/assets/console-HASH.js`).
pub fn js_path() -> &'static str {
    &JS_PATH
}

/// The asset served at `path`: (content type, body), or `None`.
pub fn get(path: &str) -> Option<(&'static str, &'static str)> {
    if path == css_path() {
        Some(("text/css; charset=utf-8", CSS))
    } else if path == js_path() {
        Some(("text/javascript; charset=utf-8", JS))
    } else {
        None
    }
}

/// `Cache-Control` of an asset: its URL changes with its content.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_found_by_their_hashed_paths_only() {
        assert!(css_path().starts_with("/assets/console-") && css_path().ends_with(".css"));
        assert_eq!(get(css_path()).unwrap().1, CSS);
        assert_eq!(get(js_path()).unwrap().0, "text/javascript; charset=utf-8");
        assert!(get("/assets/console.css").is_none());
    }
}
