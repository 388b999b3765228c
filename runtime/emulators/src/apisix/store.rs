//! The emulated etcd: one ordered table per resource kind, with etcd-style revisions.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::Value;

/// A resource kind of the APISIX Admin API (`/apisix/admin/<segment>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Routes,
    Services,
    Upstreams,
    Ssls,
    Consumers,
    Credentials,
    GlobalRules,
    PluginConfigs,
    PluginMetadata,
    StreamRoutes,
    ConsumerGroups,
    Protos,
}

impl Kind {
    /// Every kind, in the order snapshots list them.
    pub(crate) const ALL: [Kind; 12] = [
        Kind::Routes,
        Kind::Services,
        Kind::Upstreams,
        Kind::Ssls,
        Kind::Consumers,
        Kind::Credentials,
        Kind::GlobalRules,
        Kind::PluginConfigs,
        Kind::PluginMetadata,
        Kind::StreamRoutes,
        Kind::ConsumerGroups,
        Kind::Protos,
    ];

    /// The URL segment (and snapshot / standalone-config name) of the kind.
    pub(crate) fn segment(self) -> &'static str {
        match self {
            Kind::Routes => "routes",
            Kind::Services => "services",
            Kind::Upstreams => "upstreams",
            Kind::Ssls => "ssls",
            Kind::Consumers => "consumers",
            Kind::Credentials => "credentials",
            Kind::GlobalRules => "global_rules",
            Kind::PluginConfigs => "plugin_configs",
            Kind::PluginMetadata => "plugin_metadata",
            Kind::StreamRoutes => "stream_routes",
            Kind::ConsumerGroups => "consumer_groups",
            Kind::Protos => "protos",
        }
    }

    /// The etcd directory under `/apisix/` (credentials live under their consumer).
    fn dir(self) -> &'static str {
        match self {
            Kind::Credentials => "consumers",
            other => other.segment(),
        }
    }

    /// The singular name APISIX uses in messages (`missing route id`, ...).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Routes => "route",
            Kind::Services => "service",
            Kind::Upstreams => "upstream",
            Kind::Ssls => "ssl",
            Kind::Consumers => "consumer",
            Kind::Credentials => "credential",
            Kind::GlobalRules => "global rule",
            Kind::PluginConfigs => "plugin config",
            Kind::PluginMetadata => "plugin_metadata",
            Kind::StreamRoutes => "stream route",
            Kind::ConsumerGroups => "consumer group",
            Kind::Protos => "proto",
        }
    }

    /// Maps a top-level URL segment to its kind. Credentials are only reachable below a consumer.
    pub(crate) fn from_segment(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| *k != Kind::Credentials && k.segment() == s)
    }

    /// Whether APISIX 3.x accepts `method` on this kind (others answer 405).
    pub(crate) fn allows(self, method: &Method) -> bool {
        let unsupported: &[Method] = match self {
            Kind::Consumers | Kind::Credentials | Kind::PluginMetadata => {
                &[Method::POST, Method::PATCH]
            }
            Kind::GlobalRules | Kind::PluginConfigs | Kind::ConsumerGroups => &[Method::POST],
            _ => &[],
        };
        !unsupported.contains(method)
    }

    /// Kinds whose id is not a generated/`id` field but a natural key (username, plugin name).
    pub(crate) fn has_natural_key(self) -> bool {
        matches!(self, Kind::Consumers | Kind::PluginMetadata)
    }
}

/// One stored resource: the etcd node minus its key.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) created_index: u64,
    pub(crate) modified_index: u64,
}

/// All stored resources plus the etcd revision counter that feeds `createdIndex`,
/// `modifiedIndex` and POST-generated ids.
#[derive(Debug)]
pub(crate) struct Store {
    revision: u64,
    tables: BTreeMap<Kind, BTreeMap<String, Entry>>,
}

impl Store {
    pub(crate) fn new() -> Self {
        Store {
            // A fresh etcd already holds APISIX's init keys; start from a non-trivial revision.
            revision: 10,
            tables: Kind::ALL
                .into_iter()
                .map(|k| (k, BTreeMap::new()))
                .collect(),
        }
    }

    /// The etcd key of a resource, e.g. `/apisix/routes/1`.
    pub(crate) fn key(kind: Kind, id: &str) -> String {
        format!("/apisix/{}/{id}", kind.dir())
    }

    /// Bumps and returns the revision, as any etcd write does.
    pub(crate) fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    pub(crate) fn table(&self, kind: Kind) -> &BTreeMap<String, Entry> {
        // Every kind gets a table in `new`, so the index cannot miss.
        &self.tables[&kind]
    }

    fn table_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Entry> {
        self.tables.entry(kind).or_default()
    }

    pub(crate) fn get(&self, kind: Kind, id: &str) -> Option<&Entry> {
        self.table(kind).get(id)
    }

    /// Stores `value` under `id`; returns true when the key is new (APISIX answers 201, else 200).
    pub(crate) fn put(&mut self, kind: Kind, id: &str, value: Value) -> bool {
        let rev = self.next_revision();
        let table = self.table_mut(kind);
        match table.get_mut(id) {
            Some(e) => {
                e.value = value;
                e.modified_index = rev;
                false
            }
            None => {
                table.insert(
                    id.to_owned(),
                    Entry {
                        value,
                        created_index: rev,
                        modified_index: rev,
                    },
                );
                true
            }
        }
    }

    /// Removes a resource; false when it did not exist.
    pub(crate) fn delete(&mut self, kind: Kind, id: &str) -> bool {
        let existed = self.table_mut(kind).remove(id).is_some();
        if existed {
            self.next_revision();
        }
        existed
    }

    /// Replaces a whole table (the standalone flavour's full-config push).
    pub(crate) fn replace_table(&mut self, kind: Kind, items: Vec<(String, Value)>) {
        let old = std::mem::take(self.table_mut(kind));
        for (id, value) in items {
            let rev = self.next_revision();
            let created_index = old.get(&id).map_or(rev, |e| e.created_index);
            self.table_mut(kind).insert(
                id,
                Entry {
                    value,
                    created_index,
                    modified_index: rev,
                },
            );
        }
    }

    /// Deletes every credential of a consumer (APISIX `rmdir`s them with the consumer).
    pub(crate) fn delete_credentials_of(&mut self, username: &str) {
        let prefix = format!("{username}/credentials/");
        self.table_mut(Kind::Credentials)
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn put_reports_creation_and_tracks_indexes() {
        let mut s = Store::new();
        assert!(s.put(Kind::Routes, "1", json!({"a": 1})));
        let created = s.get(Kind::Routes, "1").unwrap().created_index;
        assert!(!s.put(Kind::Routes, "1", json!({"a": 2})));
        let e = s.get(Kind::Routes, "1").unwrap();
        assert_eq!(e.created_index, created);
        assert!(e.modified_index > created);
        assert_eq!(e.value, json!({"a": 2}));
        assert!(s.delete(Kind::Routes, "1"));
        assert!(!s.delete(Kind::Routes, "1"));
    }

    #[test]
    fn keys_and_segments() {
        assert_eq!(Store::key(Kind::Routes, "1"), "/apisix/routes/1");
        assert_eq!(
            Store::key(Kind::Credentials, "jack/credentials/a"),
            "/apisix/consumers/jack/credentials/a"
        );
        assert_eq!(Kind::from_segment("ssls"), Some(Kind::Ssls));
        assert_eq!(Kind::from_segment("credentials"), None);
        assert!(!Kind::Consumers.allows(&Method::POST));
        assert!(Kind::Routes.allows(&Method::PATCH));
    }

    #[test]
    fn deleting_credentials_of_one_consumer_keeps_others() {
        let mut s = Store::new();
        s.put(Kind::Credentials, "jack/credentials/a", json!({}));
        s.put(Kind::Credentials, "jackie/credentials/b", json!({}));
        s.delete_credentials_of("jack");
        assert!(s.get(Kind::Credentials, "jack/credentials/a").is_none());
        assert!(s.get(Kind::Credentials, "jackie/credentials/b").is_some());
    }
}
