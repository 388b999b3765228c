//! Reading ADC files: text → positioned tree → strict types → semantic checks → one merged
//! configuration, every error with `file:line:col`.
//!
//! Several files merge like ADC's `-f a.yaml -f b.yaml`: lists concatenate, `global_rules` and
//! `plugin_metadata` maps union, and a resource defined twice (same service name, SSL id,
//! consumer username, plugin name…) is an error naming both places.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use serde_json::{Map as JsonMap, Value as JsonValue};

use crate::ids;
use crate::schema::{self, AdcFile, Consumer, ConsumerGroup, Path, Seg, Service, Ssl};
use crate::yaml::{self, Env, Node, Pos, Positioned};

/// One configuration text and the name errors use for it (a path, or `<config>` for inline text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Where a resource was defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub pos: Pos,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// A resource and where it was defined.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub origin: Origin,
    pub value: T,
}

/// A plugin-keyed entry (`global_rules` / `plugin_metadata`): plugin name and its object.
pub type PluginEntry = (String, JsonMap<String, JsonValue>);

/// All files merged, in file order.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub services: Vec<Located<Service>>,
    pub ssls: Vec<Located<Ssl>>,
    pub consumers: Vec<Located<Consumer>>,
    pub consumer_groups: Vec<Located<ConsumerGroup>>,
    pub global_rules: Vec<Located<PluginEntry>>,
    pub plugin_metadata: Vec<Located<PluginEntry>>,
}

/// A problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}: {}", self.file, p, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in the configuration (all files are checked before giving up).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Parses, checks and merges `sources`. `env` feeds `${NAME}` substitution.
pub fn load(sources: &[Source], env: &Env) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut config = Config::default();
    let mut seen = Seen::default();
    for src in sources {
        let err = |pos: Option<Pos>, message: String| ConfigError {
            file: src.name.clone(),
            pos,
            message,
        };
        let root = match yaml::parse(&src.text, env) {
            Ok(root) => root,
            Err(e) => {
                errors.push(err(Some(e.pos), e.message));
                continue;
            }
        };
        if matches!(
            &root.value,
            yaml::Value::Scalar {
                value: yaml::Scalar::Null,
                ..
            }
        ) {
            continue; // an empty file is an empty configuration
        }
        let file: AdcFile = match yaml::from_node(&root) {
            Ok(f) => f,
            Err(e) => {
                errors.push(err(e.pos, e.message));
                continue;
            }
        };
        let issues = schema::validate(&file);
        if !issues.is_empty() {
            errors.extend(issues.into_iter().map(|i| {
                err(
                    Some(locate(&root, &i.path)),
                    format!("{}: {}", i.path, i.message),
                )
            }));
            continue;
        }
        merge(&mut config, &mut seen, &mut errors, &src.name, file);
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The position of the deepest node on `path` that exists.
fn locate(root: &Node, path: &Path) -> Pos {
    let mut node = root;
    for seg in &path.0 {
        let next = match seg {
            Seg::Key(k) => node.get(k),
            Seg::Index(i) => node.index(*i),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.pos
}

/// First definitions, per kind of resource key, for duplicate detection.
#[derive(Default)]
struct Seen {
    by_key: HashMap<(&'static str, String), Origin>,
}

impl Seen {
    /// Records `key`; on a repeat, returns the error naming both places.
    fn check(&mut self, kind: &'static str, key: &str, origin: &Origin) -> Option<ConfigError> {
        match self.by_key.get(&(kind, key.to_string())) {
            Some(first) => Some(ConfigError {
                file: origin.file.clone(),
                pos: Some(origin.pos),
                message: format!("duplicate {kind} `{key}`: already defined at {first}"),
            }),
            None => {
                self.by_key.insert((kind, key.to_string()), origin.clone());
                None
            }
        }
    }
}

fn dup(
    seen: &mut Seen,
    errors: &mut Vec<ConfigError>,
    kind: &'static str,
    key: &str,
    origin: &Origin,
) {
    if let Some(e) = seen.check(kind, key, origin) {
        errors.push(e);
    }
}

fn merge(
    config: &mut Config,
    seen: &mut Seen,
    errors: &mut Vec<ConfigError>,
    file: &str,
    doc: AdcFile,
) {
    let origin = |pos: Pos| Origin {
        file: file.to_string(),
        pos,
    };
    for Positioned { pos, value } in doc.services.unwrap_or_default() {
        let o = origin(pos);
        dup(seen, errors, "service", &value.name, &o);
        // children are unique per service; their ids derive from "<service>.<child>"
        let mut local = Seen::default();
        for r in value.routes.iter().flatten() {
            dup(&mut local, errors, "route", &r.name, &origin(r.pos));
        }
        for r in value.stream_routes.iter().flatten() {
            dup(&mut local, errors, "stream route", &r.name, &origin(r.pos));
        }
        for u in value.upstreams.iter().flatten() {
            dup(
                &mut local,
                errors,
                "upstream",
                u.name.as_deref().unwrap_or_default(),
                &origin(u.pos),
            );
        }
        config.services.push(Located { origin: o, value });
    }
    for Positioned { pos, value } in doc.ssls.unwrap_or_default() {
        let o = origin(pos);
        let id = value.id.clone().unwrap_or_else(|| ids::ssl_id(&value.snis));
        dup(seen, errors, "ssl", &id, &o);
        config.ssls.push(Located { origin: o, value });
    }
    for Positioned { pos, value } in doc.consumers.unwrap_or_default() {
        let o = origin(pos);
        dup(seen, errors, "consumer", &value.username, &o);
        let mut local = Seen::default();
        for c in value.credentials.iter().flatten() {
            dup(&mut local, errors, "credential", &c.name, &origin(c.pos));
        }
        config.consumers.push(Located { origin: o, value });
    }
    for Positioned { pos, value } in doc.consumer_groups.unwrap_or_default() {
        let o = origin(pos);
        dup(seen, errors, "consumer group", &value.name, &o);
        config.consumer_groups.push(Located { origin: o, value });
    }
    for (name, Positioned { pos, value }) in doc.global_rules.unwrap_or_default() {
        let o = origin(pos);
        dup(seen, errors, "global rule", &name, &o);
        config.global_rules.push(Located {
            origin: o,
            value: (name, value),
        });
    }
    for (name, Positioned { pos, value }) in doc.plugin_metadata.unwrap_or_default() {
        let o = origin(pos);
        dup(seen, errors, "plugin metadata", &name, &o);
        config.plugin_metadata.push(Located {
            origin: o,
            value: (name, value),
        });
    }
}

/// Why `files:` could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read `{path}`: {reason} (is its directory granted to the step with `grants.fs`?)")]
pub struct ReadError {
    pub path: String,
    pub reason: String,
}

/// Reads the `files:` input through the step's preopened directories (plain `std::fs`).
///
/// An entry is a file, a directory (every `*.yaml`, `*.yml` and `*.json` below it, recursively,
/// sorted), or a path whose last component holds `*` wildcards (`/adc/*.yaml`). A pattern that
/// matches nothing is an error: a typo must not turn into "delete everything".
pub fn read_files(paths: &[String]) -> Result<Vec<Source>, ReadError> {
    let mut out = Vec::new();
    for p in paths {
        let path = FsPath::new(p);
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mut found = Vec::new();
        if file_name.contains('*') {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(FsPath::new("."));
            for entry in read_dir_sorted(dir, p)? {
                let name = entry
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if entry.is_file() && wildcard_match(file_name, &name) {
                    found.push(entry);
                }
            }
        } else if path.is_dir() {
            collect_dir(path, p, &mut found)?;
        } else {
            found.push(path.to_path_buf());
        }
        if found.is_empty() {
            return Err(ReadError {
                path: p.clone(),
                reason: "no ADC file matches".into(),
            });
        }
        for f in found {
            let name = f.display().to_string();
            let text = std::fs::read_to_string(&f).map_err(|e| ReadError {
                path: name.clone(),
                reason: e.to_string(),
            })?;
            out.push(Source { name, text });
        }
    }
    Ok(out)
}

fn read_dir_sorted(dir: &FsPath, shown: &str) -> Result<Vec<PathBuf>, ReadError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ReadError {
        path: shown.to_string(),
        reason: e.to_string(),
    })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    Ok(entries)
}

fn collect_dir(dir: &FsPath, shown: &str, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    for entry in read_dir_sorted(dir, shown)? {
        if entry.is_dir() {
            collect_dir(&entry, shown, out)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first)
        || !name[first.len()..].ends_with(last)
        || name.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn unknown_key_reports_file_line_col() {
        let e = load(
            &[src(
                "gw.yaml",
                "services:\n  - name: s\n    upstream:\n      nodez: []\n",
            )],
            &Env::new(),
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(
            e.0[0].to_string().split(": ").next().unwrap(),
            "gw.yaml:4:7"
        );
        assert!(e.0[0].message.contains("unknown field `nodez`"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_field() {
        let text = "services:\n  - name: s\n    routes:\n      - name: r\n        uris: [/]\n        remote_addrs: [nope]\n";
        let e = load(&[src("a.yaml", text)], &Env::new()).unwrap_err();
        assert_eq!(e.0[0].pos, Some(Pos { line: 6, col: 24 }), "{e}");
        assert!(
            e.to_string().starts_with(
                "a.yaml:6:24: services[0].routes[0].remote_addrs[0]: `nope` is not an IP"
            ),
            "{e}"
        );
    }

    #[test]
    fn duplicates_across_files_name_both() {
        let a = src(
            "a.yaml",
            "services:\n  - name: web\n    upstream: {nodes: [{host: a, port: 80, weight: 1}]}\n",
        );
        let b = src(
            "b.yaml",
            "global_rules: {prometheus: {}}\nservices:\n  - name: other\n  - name: web\n",
        );
        let e = load(&[a, b], &Env::new()).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(
            e.0[0].to_string(),
            "b.yaml:4:5: duplicate service `web`: already defined at a.yaml:2:5"
        );
    }

    #[test]
    fn duplicate_routes_and_plugins() {
        let a = src(
            "a.yaml",
            "services:\n  - name: s\n    routes: [{name: r, uris: [/a]}, {name: r, uris: [/b]}]\nglobal_rules: {cors: {}}\n",
        );
        let b = src("b.json", "{\"global_rules\": {\"cors\": {}}}");
        let e = load(&[a, b], &Env::new()).unwrap_err();
        let msgs: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("duplicate route `r`: already defined at a.yaml:3:14")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("b.json:1:") && m.contains("duplicate global rule `cors`")),
            "{msgs:?}"
        );
    }

    #[test]
    fn merges_files_in_order_and_substitutes_env() {
        let env: Env = [("HOST".to_string(), "10.0.0.1".to_string())].into();
        let a = src(
            "a.yaml",
            "services:\n  - name: s1\n    upstream: {nodes: [{host: \"${HOST}\", port: 80, weight: 1}]}\n",
        );
        let b = src(
            "b.yaml",
            "services:\n  - name: s2\n    upstream: {nodes: [{host: b, port: 80, weight: 1}]}\nplugin_metadata: {http-logger: {log_format: {}}}\n",
        );
        let c = load(&[a, b, src("empty.yaml", "")], &env).unwrap();
        let names: Vec<&str> = c.services.iter().map(|s| s.value.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2"]);
        assert_eq!(
            c.services[0]
                .value
                .upstream
                .as_ref()
                .unwrap()
                .nodes
                .as_ref()
                .unwrap()[0]
                .host,
            "10.0.0.1"
        );
        assert_eq!(c.services[1].origin.to_string(), "b.yaml:2:5");
        assert_eq!(c.plugin_metadata[0].value.0, "http-logger");
    }

    #[test]
    fn missing_env_is_an_error_with_position() {
        let e = load(
            &[src(
                "a.yaml",
                "consumers:\n  - username: u\n    plugins: {key-auth: {key: \"${KEY}\"}}\n",
            )],
            &Env::new(),
        )
        .unwrap_err();
        assert_eq!(e.0[0].pos.unwrap().line, 3);
        assert!(e.0[0].message.contains("`KEY` is not set"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.yaml", "a.yaml"));
        assert!(wildcard_match("gw-*.y*ml", "gw-eu.yaml"));
        assert!(!wildcard_match("*.yaml", "a.json"));
        assert!(!wildcard_match("a*a", "a"));
        assert!(wildcard_match("exact", "exact"));
    }

    #[test]
    fn read_files_dirs_globs_and_misses() {
        let dir = std::env::temp_dir().join(format!("adc-read-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b.yaml"), "services: []").unwrap();
        std::fs::write(dir.join("a.json"), "{}").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join("sub/c.yml"), "").unwrap();
        let d = dir.display().to_string();
        let all = read_files(std::slice::from_ref(&d)).unwrap();
        let names: Vec<String> = all
            .iter()
            .map(|s| s.name.trim_start_matches(&d).to_string())
            .collect();
        assert_eq!(names, ["/a.json", "/b.yaml", "/sub/c.yml"]);
        let globbed = read_files(&[format!("{d}/*.yaml")]).unwrap();
        assert_eq!(globbed.len(), 1);
        assert!(
            read_files(&[format!("{d}/*.toml")])
                .unwrap_err()
                .reason
                .contains("no ADC file")
        );
        assert!(read_files(&[format!("{d}/missing.yaml")]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
