//! A small Admin API client over a [`Transport`]: base URL, `X-API-KEY`, the API7 EE gateway
//! group parameter, status → [`SyncError`] mapping, and a count of writes sent.

use std::cell::Cell;
use std::time::Duration;

use meridian_sdk::http::{Request, Response, Transport, is_retryable_status, percent_encode};
use serde_json::Value as JsonValue;

use crate::error::SyncError;

/// Talks to one gateway's Admin API. Cheap to build; holds no connection.
pub struct Client<'a> {
    transport: &'a dyn Transport,
    base: String,
    token: Option<String>,
    /// Appended to every `/apisix/admin/...` URL (API7 EE: `gateway_group_id`).
    admin_query: Vec<(String, String)>,
    timeout: Option<Duration>,
    writes: Cell<usize>,
}

impl<'a> Client<'a> {
    /// `server` is the Admin API base URL (`http://127.0.0.1:9180`); a trailing `/` is ignored.
    pub fn new(
        transport: &'a dyn Transport,
        server: &str,
        token: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<Self, SyncError> {
        let base = server.trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(['?', '#'])) {
            return Err(SyncError::InvalidInput(format!(
                "`server` must be an http:// or https:// base URL such as http://127.0.0.1:9180 (got `{server}`)"
            )));
        }
        Ok(Client {
            transport,
            base,
            token,
            admin_query: Vec::new(),
            timeout,
            writes: Cell::new(0),
        })
    }

    /// Adds a query parameter to every Admin API (`/apisix/admin/...`) request.
    pub fn with_admin_query(mut self, key: &str, value: &str) -> Self {
        self.admin_query.push((key.to_string(), value.to_string()));
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Mutating requests sent (or recorded, in plan mode) so far.
    pub fn writes(&self) -> usize {
        self.writes.get()
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        let mut url = format!("{}{path}", self.base);
        if path.starts_with("/apisix/admin") {
            for (k, v) in &self.admin_query {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&format!(
                    "{}={}",
                    percent_encode(k, b""),
                    percent_encode(v, b"")
                ));
            }
        }
        url
    }

    /// Sends a request and returns whatever status came back (transport failures are errors).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<Response, SyncError> {
        let url = self.url(path);
        let mut all = Vec::with_capacity(headers.len() + 3);
        if let Some(t) = &self.token {
            all.push(("X-API-KEY".to_string(), t.clone()));
        }
        if body.is_some() {
            all.push(("Content-Type".to_string(), "application/json".to_string()));
        }
        all.push(("Accept".to_string(), "application/json".to_string()));
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
        if !matches!(method, "GET" | "HEAD") {
            self.writes.set(self.writes.get() + 1);
        }
        let req = Request {
            method: method.to_string(),
            url: url.clone(),
            headers: all,
            body,
            timeout: self.timeout,
        };
        self.transport
            .send(&req)
            .map_err(|source| SyncError::Transport {
                method: method.to_string(),
                url,
                source,
            })
    }

    /// `GET path`, failing unless 2xx.
    pub fn get(&self, path: &str) -> Result<Response, SyncError> {
        let resp = self.request("GET", path, None, &[])?;
        check("GET", &self.url(path), resp)
    }

    /// `PUT path` with a JSON body, failing unless 2xx.
    pub fn put_json(
        &self,
        path: &str,
        body: &JsonValue,
        headers: &[(&str, String)],
    ) -> Result<Response, SyncError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| SyncError::InvalidInput(format!("cannot encode body: {e}")))?;
        let resp = self.request("PUT", path, Some(bytes), headers)?;
        check("PUT", &self.url(path), resp)
    }

    /// `DELETE path`; a 404 counts as done (the resource is already gone).
    pub fn delete(&self, path: &str) -> Result<Response, SyncError> {
        let resp = self.request("DELETE", path, None, &[])?;
        if resp.status == 404 {
            return Ok(resp);
        }
        check("DELETE", &self.url(path), resp)
    }
}

/// Passes 2xx through; maps every other status to the matching [`SyncError`].
pub fn check(method: &str, url: &str, resp: Response) -> Result<Response, SyncError> {
    let (method, url) = (method.to_string(), url.to_string());
    match resp.status {
        200..=299 => Ok(resp),
        401 => Err(SyncError::Unauthorized { url: origin(&url) }),
        403 => Err(SyncError::Forbidden { method, url }),
        status if is_retryable_status(status) => Err(SyncError::Server {
            method,
            url,
            status,
            message: resp.error_message(ERROR_KEYS),
        }),
        status => Err(SyncError::Rejected {
            method,
            url,
            status,
            message: resp.error_message(ERROR_KEYS),
        }),
    }
}

/// `scheme://host:port` of a URL, for messages about the server as a whole.
fn origin(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => url[..after + i].to_string(),
        None => url.to_string(),
    }
}

/// Where APISIX puts the reason: `error_msg` (validation) or `message` (not found).
const ERROR_KEYS: &[&str] = &["error_msg", "message", "error"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use meridian_sdk::http::HttpError;
    use std::cell::RefCell;

    struct Canned {
        status: u16,
        body: &'static str,
        seen: RefCell<Vec<Request>>,
    }

    impl Transport for Canned {
        fn send(&self, req: &Request) -> Result<Response, HttpError> {
            self.seen.borrow_mut().push(req.clone());
            Ok(Response::new(self.status, self.body))
        }
    }

    fn canned(status: u16, body: &'static str) -> Canned {
        Canned {
            status,
            body,
            seen: RefCell::new(Vec::new()),
        }
    }

    #[test]
    fn urls_headers_and_gateway_group_query() {
        let t = canned(200, "{}");
        let c = Client::new(
            &t,
            "http://127.0.0.1:9180/",
            Some("k".into()),
            Some(Duration::from_millis(500)),
        )
        .unwrap()
        .with_admin_query("gateway_group_id", "g 1");
        c.get("/apisix/admin/routes").unwrap();
        c.get("/api/version").unwrap();
        let seen = t.seen.borrow();
        assert_eq!(
            seen[0].url,
            "http://127.0.0.1:9180/apisix/admin/routes?gateway_group_id=g%201"
        );
        assert_eq!(seen[1].url, "http://127.0.0.1:9180/api/version");
        assert_eq!(seen[0].header_value("x-api-key"), Some("k"));
        assert_eq!(seen[0].timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.writes(), 0);
    }

    #[test]
    fn bad_server_urls() {
        let t = canned(200, "{}");
        for s in ["127.0.0.1:9180", "ftp://x", "http://", "http://x?y=1"] {
            assert!(
                matches!(
                    Client::new(&t, s, None, None),
                    Err(SyncError::InvalidInput(_))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn status_mapping() {
        let kind = |status, body| {
            let t = canned(status, body);
            let c = Client::new(&t, "http://gw:9180", None, None).unwrap();
            c.put_json("/apisix/admin/routes/1", &serde_json::json!({}), &[])
                .unwrap_err()
        };
        let e = kind(401, r#"{"error_msg":"failed to check token"}"#);
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert_eq!(
            e.to_string(),
            "admin key rejected by http://gw:9180: check grants/secrets (HTTP 401)"
        );
        let e = kind(503, "busy");
        assert_eq!(e.kind(), ErrorKind::Retryable);
        let e = kind(
            400,
            r#"{"error_msg":"invalid configuration: property \"uris\" is required"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert!(
            e.to_string()
                .ends_with("HTTP 400: invalid configuration: property \"uris\" is required"),
            "{e}"
        );
        assert_eq!(kind(403, "").kind(), ErrorKind::Fatal);
    }

    #[test]
    fn delete_404_is_success_and_counts_writes() {
        let t = canned(404, r#"{"message":"Key not found"}"#);
        let c = Client::new(&t, "http://gw:9180", None, None).unwrap();
        assert_eq!(
            c.delete("/apisix/admin/global_rules/x").unwrap().status,
            404
        );
        assert_eq!(c.writes(), 1);
    }

    #[test]
    fn transport_errors_keep_their_kind() {
        struct Failing(HttpError);
        impl Transport for Failing {
            fn send(&self, _: &Request) -> Result<Response, HttpError> {
                Err(self.0.clone())
            }
        }
        let t = Failing(HttpError::Timeout);
        let c = Client::new(&t, "http://gw:9180", None, None).unwrap();
        assert_eq!(
            c.get("/apisix/admin/routes").unwrap_err().kind(),
            ErrorKind::Retryable
        );
        let t = Failing(HttpError::Denied("gw:9180".into()));
        let c = Client::new(&t, "http://gw:9180", None, None).unwrap();
        assert_eq!(
            c.get("/apisix/admin/routes").unwrap_err().kind(),
            ErrorKind::Fatal
        );
    }
}
