//! The component glue: the [`Step`] implementation over `meridian-sdk` — the SDK's HTTP as the
//! [`Transport`], the admin key from the secrets API, plan mode from the invocation, errors mapped
//! to the engine's kinds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_sdk::http::{HttpError, Request};
use meridian_sdk::{Ctx, Error, GrantKind, Level, ManifestInfo, Step};

use crate::error::{ErrorKind, SyncError};
use crate::sync::{Input, Output, Runtime, run};
use crate::transport::{HttpRequest, HttpResponse, Transport, TransportError};

/// The `adc-apisix` step.
pub struct AdcApisix;

/// [`Transport`] over the host's `http` interface (grants, size/time limits and plan-mode
/// recording are the host's business).
pub struct SdkTransport<'a> {
    pub ctx: &'a Ctx,
}

impl Transport for SdkTransport<'_> {
    fn send(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let r = Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout: req
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        match self.ctx.http().send(&r) {
            Ok(resp) => Ok(HttpResponse {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
                recorded: resp.recorded,
            }),
            Err(e) => Err(match e {
                HttpError::Denied(m) => TransportError::Denied(m),
                HttpError::Timeout => TransportError::Timeout,
                HttpError::Connect(m) => TransportError::Connect(m),
                HttpError::TooLarge(n) => TransportError::TooLarge(n),
                HttpError::Other(m) => TransportError::Other(m),
            }),
        }
    }
}

/// The engine's error for a failed sync.
pub fn to_step_error(e: &SyncError) -> Error {
    match e.kind() {
        ErrorKind::Retryable => Error::retryable(e.to_string()),
        ErrorKind::Fatal => Error::fatal(e.to_string()),
        ErrorKind::InvalidInput => Error::invalid_input(e.to_string()),
    }
}

impl Step for AdcApisix {
    type Input = Input;
    type Output = Output;

    fn manifest() -> ManifestInfo {
        ManifestInfo::new("adc-apisix", env!("CARGO_PKG_VERSION"))
            .description(
                "Pushes gateway configuration written in ADC's declarative format to Apache APISIX, API7 EE or \
                 APISIX standalone: diffs against the live Admin API state and applies only the changes, in ADC's order.",
            )
            .needs(GrantKind::Http, "the Admin API base URL given as `server`")
            .needs(GrantKind::Secret, "the admin key named by `token_secret`")
            .needs(GrantKind::Fs, "the directory holding `files` (read-only), unless the config is inline")
    }

    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let token = input
            .token_secret
            .as_deref()
            .map(|name| ctx.secret(name))
            .transpose()?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let transport = SdkTransport { ctx };
        let rt = Runtime {
            transport: &transport,
            token,
            plan: ctx.is_plan(),
            now_ms,
        };
        let out = run(&input, &rt).map_err(|e| to_step_error(&e))?;
        for w in &out.warnings {
            ctx.log.warn(w);
        }
        let (c, u, d) = (
            out.summary.create.to_string(),
            out.summary.update.to_string(),
            out.summary.delete.to_string(),
        );
        let requests = out.requests.to_string();
        ctx.log.log(
            Level::Info,
            "adc sync finished",
            &[
                ("create", &c),
                ("update", &u),
                ("delete", &d),
                ("requests", &requests),
                ("server", &out.server),
            ],
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_sdk::http::Response;
    use meridian_sdk::testing::{Call, MockHost};
    use meridian_sdk::{ErrorKind as SdkKind, Invocation, Mode, run_with};
    use serde_json::json;

    use super::AdcApisix;

    const GW: &str = "http://127.0.0.1:9180";

    fn empty_gateway(host: &MockHost) {
        let empty = br#"{"total":0,"list":{}}"#.to_vec();
        for coll in [
            "services",
            "upstreams",
            "routes",
            "ssls",
            "consumers",
            "global_rules",
            "stream_routes",
            "plugin_metadata",
        ] {
            let resp = Response {
                status: 200,
                headers: vec![("server".into(), "APISIX/3.12.0".into())],
                body: empty.clone(),
                recorded: false,
            };
            host.on_http("GET", &format!("{GW}/apisix/admin/{coll}"), Ok(resp));
        }
    }

    fn input() -> serde_json::Value {
        json!({"server": GW, "token_secret": "gw-key", "config": "global_rules: {prometheus: {}}\n"})
    }

    #[test]
    fn runs_through_the_sdk_with_the_secret_as_admin_key() {
        let host = Arc::new(MockHost::new());
        host.secret("gw-key", "k-123");
        empty_gateway(&host);
        let created = Response {
            status: 201,
            headers: vec![],
            body: b"{}".to_vec(),
            recorded: false,
        };
        host.on_http(
            "PUT",
            &format!("{GW}/apisix/admin/global_rules/prometheus"),
            Ok(created),
        );
        let out = run_with::<AdcApisix>(Invocation::for_test(&input()), host.clone()).unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            out["summary"],
            json!({"create": 1, "update": 0, "delete": 0})
        );
        assert_eq!(
            out["events"][0],
            json!({"type": "create", "resource_type": "global_rule", "id": "prometheus", "name": "prometheus"})
        );
        assert_eq!(out["applied"], true);
        let put = host
            .calls()
            .into_iter()
            .find_map(|c| match c {
                Call::Http(r) if r.method == "PUT" => Some(r),
                _ => None,
            })
            .unwrap();
        let key = put
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-api-key"))
            .map(|(_, v)| v.as_str());
        assert_eq!(key, Some("k-123"));
        assert_eq!(
            put.body.as_deref(),
            Some(&br#"{"plugins":{"prometheus":{}}}"#[..])
        );
    }

    #[test]
    fn plan_mode_reports_without_claiming_it_applied() {
        let host = Arc::new(MockHost::new());
        host.secret("gw-key", "k");
        empty_gateway(&host);
        let recorded = Response {
            status: 202,
            headers: vec![],
            body: b"{}".to_vec(),
            recorded: true,
        };
        host.on_http(
            "PUT",
            &format!("{GW}/apisix/admin/global_rules/prometheus"),
            Ok(recorded),
        );
        let mut inv = Invocation::for_test(&input());
        inv.mode = Mode::Plan;
        let out: serde_json::Value =
            serde_json::from_str(&run_with::<AdcApisix>(inv, host).unwrap()).unwrap();
        assert_eq!(out["applied"], false);
        assert_eq!(out["requests"], 1);
    }

    #[test]
    fn error_kinds_reach_the_engine() {
        let host = Arc::new(MockHost::new());
        let e = run_with::<AdcApisix>(Invocation::for_test(&input()), host.clone()).unwrap_err();
        assert_eq!(e.kind(), SdkKind::Fatal, "ungranted secret: {e}");
        let e = run_with::<AdcApisix>(
            Invocation::for_test(&json!({"server": GW, "config": "{}", "bogus": 1})),
            host.clone(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), SdkKind::InvalidInput);
        let e = run_with::<AdcApisix>(
            Invocation::for_test(&json!({"server": GW, "config": "services: [{}]"})),
            host.clone(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), SdkKind::InvalidInput);
        assert!(
            e.message().contains("<config>:1:12: missing field `name`"),
            "{e}"
        );
        // the gateway is not reachable: MockHost denies unscripted requests, a grant problem
        let e = run_with::<AdcApisix>(
            Invocation::for_test(&json!({"server": GW, "config": "{}"})),
            host,
        )
        .unwrap_err();
        assert_eq!(e.kind(), SdkKind::Fatal);
        assert!(e.message().contains("denied"), "{e}");
    }
}
