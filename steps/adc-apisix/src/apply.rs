//! Turning events into Admin API requests (domain.md §1.5 "Sync") and sending them.
//!
//! Admin API flavour: full-object `PUT` for create/update, `DELETE` for delete (404 = already
//! gone), never `PATCH`; events run one after another in ADC's order (the guest is
//! single-threaded, and the order is what keeps references valid). The first failure stops the
//! sync; nothing is rolled back, and a retry of the step diffs again and finishes the job.
//!
//! Standalone flavour: the whole document is replaced with one `PUT /apisix/admin/configs`,
//! keeping what is out of scope verbatim and bumping `<collection>_conf_version` only for the
//! collections that changed (APISIX rebuilds exactly those).

use std::collections::HashSet;

use serde_json::{Map as JsonMap, Value as JsonValue, json};

use crate::client::{Client, check};
use crate::differ::{Event, EventType};
use crate::error::SyncError;
use crate::model::{PartRole, Resource, ResourceType};
use crate::remote::{STANDALONE_COLLECTIONS, Version};

/// One Admin API write.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminRequest {
    pub method: &'static str,
    /// Below `/apisix/admin/`.
    pub path: String,
    pub body: Option<JsonValue>,
}

/// The writes one event needs, in order.
pub fn requests_for(ev: &Event) -> Vec<AdminRequest> {
    let put = |p: &crate::model::Part| AdminRequest {
        method: "PUT",
        path: p.path.clone(),
        body: Some(p.body.clone()),
    };
    let delete = |path: &str| AdminRequest {
        method: "DELETE",
        path: path.to_string(),
        body: None,
    };
    // Only the upstream a service owns (same id) is removed with it; a service created elsewhere
    // may point at a shared upstream.
    let owned_upstream = |path: &str| path == format!("upstreams/{}", ev.id);
    let mut out = Vec::new();
    match ev.kind {
        EventType::Create => {
            if let Some(l) = &ev.local {
                out.extend(l.parts.iter().map(put));
            }
        }
        EventType::Update => {
            let (Some(l), Some(r)) = (&ev.local, &ev.remote) else {
                return out;
            };
            for role in [PartRole::Upstream, PartRole::Main] {
                if ev.changed.contains(&role)
                    && let Some(p) = l.part(role)
                {
                    out.push(put(p));
                }
            }
            for role in [PartRole::Main, PartRole::Upstream] {
                if ev.changed.contains(&role)
                    && l.part(role).is_none()
                    && let Some(p) = r
                        .part(role)
                        .filter(|p| role == PartRole::Main || owned_upstream(&p.path))
                {
                    out.push(delete(&p.path));
                }
            }
        }
        EventType::Delete => {
            if let Some(r) = &ev.remote {
                for p in r.parts.iter().rev() {
                    if p.role == PartRole::Main || owned_upstream(&p.path) {
                        out.push(delete(&p.path));
                    }
                }
            }
        }
    }
    out
}

/// Refuses events the gateway version cannot take (APISIX backend), before anything is sent.
pub fn check_versions(events: &[Event], version: Version) -> Result<(), SyncError> {
    for e in events {
        if e.rtype == ResourceType::StreamRoute
            && e.kind != EventType::Delete
            && version < Version(3, 7, 0)
        {
            return Err(SyncError::Unsupported(format!(
                "stream route `{}` needs APISIX 3.7 or newer (the gateway is {version})",
                e.name
            )));
        }
        if e.rtype == ResourceType::ConsumerCredential && version < Version(3, 11, 0) {
            return Err(SyncError::Unsupported(format!(
                "consumer credential `{}` needs APISIX 3.11 or newer (the gateway is {version}); put the auth plugin in the consumer's `plugins` instead",
                e.name
            )));
        }
    }
    Ok(())
}

/// Sends every event's writes in order; stops at the first failure.
pub fn apply_admin(client: &Client<'_>, events: &[Event]) -> Result<(), SyncError> {
    for (done, ev) in events.iter().enumerate() {
        for req in requests_for(ev) {
            let path = format!("/apisix/admin/{}", req.path);
            let result = match &req.body {
                Some(body) => client.put_json(&path, body, &[]),
                None => client.delete(&path),
            };
            if let Err(e) = result {
                return Err(SyncError::Partial {
                    done,
                    total: events.len(),
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(())
}

/// The standalone collection a resource type lives in.
pub fn collection(rtype: ResourceType) -> Option<&'static str> {
    Some(match rtype {
        ResourceType::Service => "services",
        ResourceType::Route => "routes",
        ResourceType::StreamRoute => "stream_routes",
        ResourceType::Upstream => "upstreams",
        ResourceType::Ssl => "ssls",
        ResourceType::Consumer | ResourceType::ConsumerCredential => "consumers",
        ResourceType::GlobalRule => "global_rules",
        ResourceType::PluginMetadata => "plugin_metadata",
        ResourceType::ConsumerGroup | ResourceType::PluginConfig => return None,
    })
}

/// How an item is identified inside its standalone collection.
fn doc_key(item: &JsonValue) -> Option<String> {
    item.get("username")
        .and_then(JsonValue::as_str)
        .map(|u| format!("username:{u}"))
        .or_else(|| match item.get("id")? {
            JsonValue::String(s) => Some(s.clone()),
            JsonValue::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// A resource as an item of the standalone document.
fn standalone_item(r: &Resource) -> JsonValue {
    let mut body = r
        .part(PartRole::Main)
        .map(|p| p.body.clone())
        .unwrap_or_else(|| json!({}));
    if let JsonValue::Object(m) = &mut body {
        match r.rtype {
            ResourceType::ConsumerCredential => {
                let user = r.parent.clone().unwrap_or_default();
                m.insert("id".into(), json!(format!("{user}/credentials/{}", r.id)));
            }
            ResourceType::Consumer => {}
            _ => {
                m.insert("id".into(), json!(r.id));
            }
        }
    }
    body
}

/// The new standalone document.
///
/// `selected` holds the (type, id) of remote resources in scope: their items are replaced by the
/// local ones; every other item (and every other top-level key) is kept verbatim. Unchanged
/// resources keep their stored item and `modifiedIndex`; new and changed ones get `version`,
/// which also becomes the `<collection>_conf_version` of each collection an event touched.
pub fn standalone_doc(
    remote_doc: &JsonMap<String, JsonValue>,
    remote: &[Resource],
    selected: &HashSet<(ResourceType, String)>,
    local: &[Resource],
    events: &[Event],
    version: u64,
) -> JsonMap<String, JsonValue> {
    let mut doc = remote_doc.clone();
    let changed: HashSet<(ResourceType, &str)> = events
        .iter()
        .filter(|e| e.kind != EventType::Delete)
        .map(|e| (e.rtype, e.id.as_str()))
        .collect();
    let touched: HashSet<&str> = events.iter().filter_map(|e| collection(e.rtype)).collect();
    let replaced: HashSet<String> = remote
        .iter()
        .filter(|r| selected.contains(&(r.rtype, r.id.clone())))
        .filter_map(|r| doc_key(&standalone_item(r)))
        .collect();
    for coll in STANDALONE_COLLECTIONS {
        let stored: Vec<JsonValue> = remote_doc
            .get(*coll)
            .and_then(JsonValue::as_array)
            .cloned()
            .unwrap_or_default();
        let mut items: Vec<JsonValue> = stored
            .iter()
            .filter(|i| doc_key(i).is_none_or(|k| !replaced.contains(&k)))
            .cloned()
            .collect();
        for r in local.iter().filter(|r| collection(r.rtype) == Some(*coll)) {
            let mut item = standalone_item(r);
            let key = doc_key(&item);
            items.retain(|i| doc_key(i) != key);
            if !changed.contains(&(r.rtype, r.id.as_str()))
                && let Some(old) = stored.iter().find(|i| doc_key(i) == key)
            {
                items.push(old.clone());
                continue;
            }
            if let JsonValue::Object(m) = &mut item {
                m.insert("modifiedIndex".into(), json!(version));
            }
            items.push(item);
        }
        if touched.contains(coll) {
            doc.insert((*coll).to_string(), JsonValue::Array(items));
            doc.insert(format!("{coll}_conf_version"), json!(version));
        }
    }
    doc
}

/// The conf version for a new document: a millisecond timestamp, but always above every version
/// the gateway has (APISIX answers 400 to a lower one).
pub fn next_conf_version(remote_doc: &JsonMap<String, JsonValue>, now_ms: u64) -> u64 {
    let highest = remote_doc
        .iter()
        .filter(|(k, _)| k.ends_with("_conf_version"))
        .filter_map(|(_, v)| v.as_u64())
        .max()
        .unwrap_or(0);
    now_ms.max(highest + 1)
}

/// `PUT /apisix/admin/configs` with `X-Digest: sha1(body)`.
pub fn apply_standalone(
    client: &Client<'_>,
    doc: &JsonMap<String, JsonValue>,
) -> Result<(), SyncError> {
    let path = "/apisix/admin/configs";
    let body = serde_json::to_vec(doc)
        .map_err(|e| SyncError::InvalidInput(format!("cannot encode config: {e}")))?;
    let digest = sha1_smol::Sha1::from(&body).digest().to_string();
    let resp = client.request("PUT", path, Some(body), &[("X-Digest", digest)])?;
    check("PUT", &client.url(path), resp).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;
    use std::collections::BTreeMap;

    fn svc(upstream_path: Option<&str>) -> Resource {
        let mut parts = Vec::new();
        if let Some(p) = upstream_path {
            parts.push(Part {
                role: PartRole::Upstream,
                path: p.into(),
                body: json!({"nodes": []}),
            });
        }
        parts.push(Part {
            role: PartRole::Main,
            path: "services/s".into(),
            body: json!({"name": "s"}),
        });
        Resource {
            rtype: ResourceType::Service,
            id: "s".into(),
            name: "s".into(),
            parent: None,
            labels: BTreeMap::new(),
            parts,
            origin: None,
        }
    }

    fn ev(
        kind: EventType,
        local: Option<Resource>,
        remote: Option<Resource>,
        changed: Vec<PartRole>,
    ) -> Event {
        let r = local.clone().or(remote.clone()).unwrap();
        Event {
            kind,
            rtype: r.rtype,
            id: r.id,
            name: r.name,
            parent: None,
            diff: vec![],
            changed,
            local,
            remote,
        }
    }

    fn methods_paths(reqs: &[AdminRequest]) -> Vec<(String, String)> {
        reqs.iter()
            .map(|r| (r.method.to_string(), r.path.clone()))
            .collect()
    }

    #[test]
    fn service_create_puts_upstream_first_and_delete_removes_service_first() {
        let create = requests_for(&ev(
            EventType::Create,
            Some(svc(Some("upstreams/s"))),
            None,
            vec![],
        ));
        assert_eq!(
            methods_paths(&create),
            [
                ("PUT".into(), "upstreams/s".into()),
                ("PUT".into(), "services/s".into())
            ]
        );
        let delete = requests_for(&ev(
            EventType::Delete,
            None,
            Some(svc(Some("upstreams/s"))),
            vec![],
        ));
        assert_eq!(
            methods_paths(&delete),
            [
                ("DELETE".into(), "services/s".into()),
                ("DELETE".into(), "upstreams/s".into())
            ]
        );
        // an upstream the service merely points at is not ours to delete
        let foreign = requests_for(&ev(
            EventType::Delete,
            None,
            Some(svc(Some("upstreams/shared"))),
            vec![],
        ));
        assert_eq!(
            methods_paths(&foreign),
            [("DELETE".into(), "services/s".into())]
        );
    }

    #[test]
    fn updates_send_only_changed_parts() {
        let l = svc(Some("upstreams/s"));
        let upstream_only = requests_for(&ev(
            EventType::Update,
            Some(l.clone()),
            Some(l.clone()),
            vec![PartRole::Upstream],
        ));
        assert_eq!(
            methods_paths(&upstream_only),
            [("PUT".into(), "upstreams/s".into())]
        );
        let main_only = requests_for(&ev(
            EventType::Update,
            Some(l.clone()),
            Some(l.clone()),
            vec![PartRole::Main],
        ));
        assert_eq!(
            methods_paths(&main_only),
            [("PUT".into(), "services/s".into())]
        );
        // the file dropped the service's upstream: rewrite the service, then remove its upstream
        let dropped = requests_for(&ev(
            EventType::Update,
            Some(svc(None)),
            Some(l),
            vec![PartRole::Upstream, PartRole::Main],
        ));
        assert_eq!(
            methods_paths(&dropped),
            [
                ("PUT".into(), "services/s".into()),
                ("DELETE".into(), "upstreams/s".into())
            ]
        );
    }

    #[test]
    fn version_gates() {
        let mut cred = svc(None);
        cred.rtype = ResourceType::ConsumerCredential;
        let e = ev(EventType::Create, Some(cred), None, vec![]);
        assert!(check_versions(std::slice::from_ref(&e), Version(3, 10, 0)).is_err());
        assert!(check_versions(std::slice::from_ref(&e), Version(3, 11, 0)).is_ok());
        let mut sr = svc(None);
        sr.rtype = ResourceType::StreamRoute;
        let e = ev(EventType::Create, Some(sr), None, vec![]);
        assert!(check_versions(std::slice::from_ref(&e), Version(3, 6, 9)).is_err());
    }

    #[test]
    fn conf_versions_stay_monotonic() {
        let doc = json!({"routes_conf_version": 5000, "services_conf_version": 7})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(next_conf_version(&doc, 1000), 5001);
        assert_eq!(next_conf_version(&doc, 9000), 9000);
        assert_eq!(next_conf_version(&JsonMap::new(), 3), 3);
    }
}
