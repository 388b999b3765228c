//! Local vs remote → create/update/delete events in ADC's fixed order (domain.md §1.4).
//!
//! Resources match by (type, id). A remote resource with no local twin is deleted (children of
//! a deleted service are remote resources of their own and so are deleted too, routes first); a
//! local one with no remote twin is created; a pair whose normalised parts differ is updated,
//! naming the parts that changed so the apply step sends only those (a service whose upstream
//! alone changed gets only the upstream PUT, as ADC does).
//!
//! [`Scope`] decides what is reconciled at all: include/exclude resource types and a label
//! selector (remote resources are filtered here, client-side; children follow their service,
//! credentials their consumer; global rules and plugin metadata are never filtered by labels).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compare::{Change, Defaults, json_diff, json_eq, normalize};
use crate::model::{PartRole, Resource, ResourceType};

/// What happens to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Create,
    Update,
    Delete,
}

/// One planned change.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventType,
    pub rtype: ResourceType,
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    /// For updates: what differs (bounded, secrets redacted).
    pub diff: Vec<Change>,
    /// For updates: the parts to write (in part order); a part only the remote has is removed.
    pub changed: Vec<PartRole>,
    pub local: Option<Resource>,
    pub remote: Option<Resource>,
}

/// ADC's execution order: children deleted before parents, parents created before children,
/// SSLs created early (upstream mTLS may refer to them). Lower runs first.
pub fn order(rtype: ResourceType, kind: EventType) -> u8 {
    use EventType::*;
    use ResourceType::*;
    match (rtype, kind) {
        (Route, Delete) => 0,
        (StreamRoute, Delete) => 1,
        (Service, Delete) => 2,
        (Upstream, Delete) => 3,
        (PluginConfig, Delete) => 4,
        (Consumer, Delete) => 5,
        (ConsumerGroup, Delete) => 6,
        (Ssl, Delete) => 7,
        (Ssl, Create) => 8,
        (Ssl, Update) => 9,
        (Route, Update) => 10,
        (StreamRoute, Update) => 11,
        (Service, Update) => 12,
        (Upstream, Update) => 13,
        (PluginConfig, Update) => 14,
        (ConsumerGroup, Update) => 15,
        (Consumer, Update) => 16,
        (Service, Create) => 17,
        (PluginConfig, Create) => 18,
        (Route, Create) => 19,
        (StreamRoute, Create) => 20,
        (ConsumerGroup, Create) => 21,
        (Consumer, Create) => 22,
        (Upstream, Create) => 23,
        (GlobalRule, Delete) => 24,
        (GlobalRule, Create) => 25,
        (GlobalRule, Update) => 26,
        (PluginMetadata, Delete) => 27,
        (PluginMetadata, Create) => 28,
        (PluginMetadata, Update) => 29,
        (ConsumerCredential, Delete) => 30,
        (ConsumerCredential, Create) => 31,
        (ConsumerCredential, Update) => 32,
    }
}

/// Events turning `remote` into `local`, sorted by [`order`] (stable: file order for creates and
/// updates, gateway order for deletes).
pub fn diff(local: &[Resource], remote: &[Resource], defaults: &Defaults) -> Vec<Event> {
    let remote_by_key: HashMap<(ResourceType, &str), &Resource> = remote
        .iter()
        .map(|r| ((r.rtype, r.id.as_str()), r))
        .collect();
    let local_keys: BTreeSet<(ResourceType, &str)> =
        local.iter().map(|r| (r.rtype, r.id.as_str())).collect();
    let mut events = Vec::new();
    for l in local {
        match remote_by_key.get(&(l.rtype, l.id.as_str())) {
            None => events.push(event(
                EventType::Create,
                l,
                Some(l.clone()),
                None,
                Vec::new(),
                Vec::new(),
            )),
            Some(r) => {
                let (changed, diff) = compare(l, r, defaults);
                if !changed.is_empty() {
                    events.push(event(
                        EventType::Update,
                        l,
                        Some(l.clone()),
                        Some((*r).clone()),
                        changed,
                        diff,
                    ));
                }
            }
        }
    }
    for r in remote {
        if !local_keys.contains(&(r.rtype, r.id.as_str())) {
            events.push(event(
                EventType::Delete,
                r,
                None,
                Some(r.clone()),
                Vec::new(),
                Vec::new(),
            ));
        }
    }
    events.sort_by_key(|e| order(e.rtype, e.kind));
    events
}

fn event(
    kind: EventType,
    r: &Resource,
    local: Option<Resource>,
    remote: Option<Resource>,
    changed: Vec<PartRole>,
    diff: Vec<Change>,
) -> Event {
    Event {
        kind,
        rtype: r.rtype,
        id: r.id.clone(),
        name: r.name.clone(),
        parent: r.parent.clone(),
        diff,
        changed,
        local,
        remote,
    }
}

/// Which parts of `l` differ from `r`, and how.
pub fn compare(l: &Resource, r: &Resource, defaults: &Defaults) -> (Vec<PartRole>, Vec<Change>) {
    let mut changed = Vec::new();
    let mut diff = Vec::new();
    for role in [PartRole::Upstream, PartRole::Main] {
        let prefix = if role == PartRole::Upstream {
            "upstream"
        } else {
            ""
        };
        match (l.part(role), r.part(role)) {
            (Some(lp), Some(rp)) => {
                let ln = normalize(l.rtype, role, &lp.body, defaults);
                let rn = normalize(r.rtype, role, &rp.body, defaults);
                let same_body = json_eq(&ln, &rn);
                if !same_body || lp.path != rp.path {
                    changed.push(role);
                    if same_body {
                        diff.push(Change {
                            path: if prefix.is_empty() {
                                "<admin path>".into()
                            } else {
                                prefix.into()
                            },
                            old: Some(rp.path.clone().into()),
                            new: Some(lp.path.clone().into()),
                        });
                    }
                    json_diff(prefix, &ln, &rn, &mut diff);
                }
            }
            (Some(lp), None) => {
                changed.push(role);
                json_diff(
                    prefix,
                    &normalize(l.rtype, role, &lp.body, defaults),
                    &serde_json::Value::Null,
                    &mut diff,
                );
            }
            (None, Some(rp)) => {
                changed.push(role);
                json_diff(
                    prefix,
                    &serde_json::Value::Null,
                    &normalize(r.rtype, role, &rp.body, defaults),
                    &mut diff,
                );
            }
            (None, None) => {}
        }
    }
    (changed, diff)
}

/// What a sync reconciles.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// When non-empty, only these types.
    pub include: BTreeSet<ResourceType>,
    pub exclude: BTreeSet<ResourceType>,
    /// `k=v` pairs a remote resource must all carry (exact match).
    pub selector: BTreeMap<String, String>,
}

impl Scope {
    /// Whether resources of `t` are reconciled.
    pub fn type_in_scope(&self, t: ResourceType) -> bool {
        (self.include.is_empty() || self.include.contains(&t)) && !self.exclude.contains(&t)
    }

    /// Whether the remote resource `r` is reconciled. `all` is every remote resource (children
    /// are judged by their service's or consumer's labels when it exists).
    pub fn selects(&self, r: &Resource, all: &[Resource]) -> bool {
        if !self.type_in_scope(r.rtype) {
            return false;
        }
        if self.selector.is_empty() || !r.rtype.has_labels() {
            return true;
        }
        let owner_type = match r.rtype {
            ResourceType::Route | ResourceType::StreamRoute | ResourceType::Upstream => {
                Some(ResourceType::Service)
            }
            ResourceType::ConsumerCredential => Some(ResourceType::Consumer),
            _ => None,
        };
        let owner = owner_type.and_then(|t| {
            let pid = r.parent.as_deref()?;
            all.iter().find(|o| o.rtype == t && o.id == pid)
        });
        let labels = &owner.unwrap_or(r).labels;
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The remote resources that are reconciled.
    pub fn filter_remote(&self, remote: &[Resource]) -> Vec<Resource> {
        remote
            .iter()
            .filter(|r| self.selects(r, remote))
            .cloned()
            .collect()
    }

    /// The local resources of reconciled types.
    pub fn filter_local(&self, local: Vec<Resource>) -> Vec<Resource> {
        local
            .into_iter()
            .filter(|r| self.type_in_scope(r.rtype))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;
    use serde_json::{Value, json};

    fn res(rtype: ResourceType, id: &str, body: Value) -> Resource {
        Resource {
            rtype,
            id: id.into(),
            name: id.into(),
            parent: None,
            labels: BTreeMap::new(),
            parts: vec![Part {
                role: PartRole::Main,
                path: format!("x/{id}"),
                body,
            }],
            origin: None,
        }
    }

    #[test]
    fn create_update_delete_and_unchanged() {
        let local = vec![
            res(ResourceType::Route, "new", json!({"uris": ["/n"]})),
            res(
                ResourceType::Route,
                "same",
                json!({"uris": ["/s"], "status": 1}),
            ),
            res(ResourceType::Route, "changed", json!({"uris": ["/c2"]})),
        ];
        let remote = vec![
            res(
                ResourceType::Route,
                "same",
                json!({"uris": ["/s"], "status": 1, "priority": 0, "create_time": 1}),
            ),
            res(ResourceType::Route, "changed", json!({"uris": ["/c1"]})),
            res(ResourceType::Route, "gone", json!({"uris": ["/g"]})),
        ];
        let ev = diff(&local, &remote, &Defaults::apisix());
        let got: Vec<(EventType, &str)> = ev.iter().map(|e| (e.kind, e.id.as_str())).collect();
        assert_eq!(
            got,
            [
                (EventType::Delete, "gone"),
                (EventType::Update, "changed"),
                (EventType::Create, "new")
            ]
        );
        assert!(
            ev[1].diff.iter().any(|c| c.path == "uris[0]"),
            "{:?}",
            ev[1].diff
        );
        assert_eq!(ev[1].changed, [PartRole::Main]);
    }

    #[test]
    fn ordering_follows_the_adc_table() {
        use EventType::*;
        use ResourceType::*;
        let mut pairs = vec![
            (ConsumerCredential, Create),
            (PluginMetadata, Update),
            (Upstream, Create),
            (Route, Create),
            (Service, Create),
            (Ssl, Create),
            (Service, Delete),
            (Route, Delete),
            (GlobalRule, Delete),
        ];
        pairs.sort_by_key(|(t, k)| order(*t, *k));
        assert_eq!(
            pairs,
            [
                (Route, Delete),
                (Service, Delete),
                (Ssl, Create),
                (Service, Create),
                (Route, Create),
                (Upstream, Create),
                (GlobalRule, Delete),
                (PluginMetadata, Update),
                (ConsumerCredential, Create),
            ]
        );
    }

    #[test]
    fn only_the_upstream_part_of_a_service_changes() {
        let svc = |port: u16, desc: &str| Resource {
            parts: vec![
                Part {
                    role: PartRole::Upstream,
                    path: "upstreams/s".into(),
                    body: json!({"nodes": [{"host": "a", "port": port, "weight": 1, "priority": 0}],
                    "type": "roundrobin", "scheme": "http", "pass_host": "pass", "hash_on": "vars"}),
                },
                Part {
                    role: PartRole::Main,
                    path: "services/s".into(),
                    body: json!({"name": "s", "desc": desc, "upstream_id": "s"}),
                },
            ],
            ..res(ResourceType::Service, "s", json!({}))
        };
        let (changed, d) = compare(&svc(81, "x"), &svc(80, "x"), &Defaults::apisix());
        assert_eq!(changed, [PartRole::Upstream]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "upstream.nodes[0].port");
        let (changed, _) = compare(&svc(80, "y"), &svc(80, "x"), &Defaults::apisix());
        assert_eq!(changed, [PartRole::Main]);
        // same body under another path (service pointing at a foreign upstream) must be rewritten
        let mut foreign = svc(80, "x");
        foreign.parts[0].path = "upstreams/other".into();
        foreign.parts[1].body["upstream_id"] = json!("other");
        let (changed, d) = compare(&svc(80, "x"), &foreign, &Defaults::apisix());
        assert_eq!(changed, [PartRole::Upstream, PartRole::Main]);
        assert_eq!(d[0].path, "upstream");
        assert_eq!(d[0].old, Some(json!("upstreams/other")));
    }

    #[test]
    fn scope_types_and_selector() {
        let mut svc = res(ResourceType::Service, "s", json!({}));
        svc.labels.insert("env".into(), "prod".into());
        let mut route = res(ResourceType::Route, "r", json!({}));
        route.parent = Some("s".into());
        let other = res(ResourceType::Service, "o", json!({}));
        let mut orphan_route = res(ResourceType::Route, "r2", json!({}));
        orphan_route.parent = Some("o".into());
        let gr = res(ResourceType::GlobalRule, "cors", json!({}));
        let all = vec![svc, route, other, orphan_route, gr];

        let scope = Scope {
            selector: [("env".to_string(), "prod".to_string())].into(),
            ..Scope::default()
        };
        let ids: Vec<String> = scope
            .filter_remote(&all)
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            ["s", "r", "cors"],
            "routes follow their service; global rules are not filtered"
        );

        let scope = Scope {
            exclude: [ResourceType::Route].into(),
            ..Scope::default()
        };
        assert_eq!(scope.filter_remote(&all).len(), 3);
        let scope = Scope {
            include: [ResourceType::GlobalRule].into(),
            ..Scope::default()
        };
        assert_eq!(scope.filter_remote(&all).len(), 1);
        assert_eq!(scope.filter_local(all.clone()).len(), 1);
    }
}
