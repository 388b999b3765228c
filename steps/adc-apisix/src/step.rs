//! The component glue: the [`Step`] implementation over `meridian-sdk` — the host's HTTP as the
//! sync's transport, the admin key from the secrets API, plan mode from the invocation, errors mapped
//! to the engine's kinds.

use std::time::{SystemTime, UNIX_EPOCH};

use meridian_sdk::{Ctx, Error, GrantKind, Level, ManifestInfo, Step};

use crate::error::{ErrorKind, SyncError};
use crate::sync::{Input, Output, Runtime, run};

/// The `adc-apisix` step.
pub struct AdcApisix;

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
        // Grants, size/time limits and plan-mode recording are the host's business.
        let http = ctx.http();
        let rt = Runtime {
            transport: &http,
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

    use meridian_sdk::http::{HttpError, Request, Response};
    use meridian_sdk::testing::MockHost;
    use meridian_sdk::{ErrorKind as SdkKind, Invocation, Mode, run_with};
    use serde_json::json;

    use super::AdcApisix;

    const GW: &str = "http://127.0.0.1:9180";

    /// An APISIX 3.12 with nothing configured that accepts `PUT global_rules/prometheus`.
    fn empty_gateway(req: &Request) -> Result<Response, HttpError> {
        const COLLECTIONS: [&str; 8] = [
            "services",
            "upstreams",
            "routes",
            "ssls",
            "consumers",
            "global_rules",
            "stream_routes",
            "plugin_metadata",
        ];
        let path = req.url.strip_prefix(GW).unwrap_or_default();
        let coll = path.strip_prefix("/apisix/admin/").unwrap_or_default();
        match req.method.as_str() {
            "GET" if COLLECTIONS.contains(&coll) => {
                let mut resp = Response::new(200, br#"{"total":0,"list":{}}"#.to_vec());
                resp.headers = vec![("server".into(), "APISIX/3.12.0".into())];
                Ok(resp)
            }
            "PUT" if coll == "global_rules/prometheus" => Ok(Response::new(201, "{}")),
            _ => panic!("unexpected request {req}"),
        }
    }

    fn input() -> serde_json::Value {
        json!({"server": GW, "token_secret": "gw-key", "config": "global_rules: {prometheus: {}}\n"})
    }

    #[test]
    fn runs_through_the_sdk_with_the_secret_as_admin_key() {
        let host = Arc::new(
            MockHost::new()
                .http(empty_gateway)
                .secret("gw-key", "k-123"),
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
            .requests()
            .into_iter()
            .find(|r| r.method == "PUT")
            .unwrap();
        assert_eq!(put.header_value("x-api-key"), Some("k-123"));
        assert_eq!(
            put.body.as_deref(),
            Some(&br#"{"plugins":{"prometheus":{}}}"#[..])
        );
    }

    #[test]
    fn plan_mode_reports_without_claiming_it_applied() {
        let host = Arc::new(
            MockHost::new()
                .http(empty_gateway)
                .secret("gw-key", "k")
                .plan(),
        );
        let mut inv = Invocation::for_test(&input());
        inv.mode = Mode::Plan;
        let out: serde_json::Value =
            serde_json::from_str(&run_with::<AdcApisix>(inv, host).unwrap()).unwrap();
        assert_eq!(out["applied"], false);
        assert_eq!(out["requests"], 1);
    }

    #[test]
    fn documents_by_path_merge_and_errors_name_the_path() {
        let host = Arc::new(MockHost::new().http(empty_gateway).secret("gw-key", "k"));
        let docs = json!({
            "adc/README.md": "not: [config",
            "adc/rules.yaml": "global_rules: {prometheus: {}}\n",
        });
        let inv = json!({"server": GW, "token_secret": "gw-key", "documents": docs});
        let out = run_with::<AdcApisix>(Invocation::for_test(&inv), host.clone()).unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["summary"]["create"], 1, "{out}");
        let bad = json!({"server": GW, "documents": {"adc/bad.yaml": "services: [{}]"}});
        let e = run_with::<AdcApisix>(Invocation::for_test(&bad), host).unwrap_err();
        assert_eq!(e.kind(), SdkKind::InvalidInput);
        assert!(
            e.message()
                .contains("adc/bad.yaml:1:12: missing field `name`"),
            "{e}"
        );
    }

    #[test]
    fn error_kinds_reach_the_engine() {
        // The gateway is not reachable: the host denies every request, a grant problem.
        let host = Arc::new(
            MockHost::new()
                .http(|req| Err(HttpError::Denied(format!("{} is not granted", req.url)))),
        );
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
        let e = run_with::<AdcApisix>(
            Invocation::for_test(&json!({"server": GW, "config": "{}"})),
            host,
        )
        .unwrap_err();
        assert_eq!(e.kind(), SdkKind::Fatal);
        assert!(e.message().contains("denied"), "{e}");
    }
}
