//! Steps through a real OCI registry (Debian's docker-registry on loopback): push, run pinned
//! from a fresh cache, run offline, unpinned tags, a signing policy, tampering.

use std::process::Output;

use meridian_oci::testkit::TestRegistry;

use crate::support::{Scratch, expect_code};

/// `meridian ARGS…` with this test's own cache dir (pulled artifacts land in `<cache>/oci`).
fn run(s: &Scratch, cache: &str, args: &[&str]) -> Output {
    s.cmd()
        .env("MERIDIAN_CACHE_DIR", s.path().join(cache))
        .env_remove("MERIDIAN_TRUST_POLICY")
        .env("DOCKER_CONFIG", s.path().join("no-docker-config"))
        .args(args)
        .output()
        .expect("run meridian")
}

fn workflow(s: &Scratch, name: &str, uses: &str) {
    s.write(
        name,
        &format!("name: oci\nsteps:\n  - id: greet\n    uses: {uses}\n    with: {{name: Ada}}\n"),
    );
}

#[test]
fn push_run_pinned_offline_and_signed() {
    let s = Scratch::new();
    let reg = TestRegistry::start();
    let tag = format!("oci://{}/acme/hello:1.0", reg.host);
    let (pinned, _) = expect_code(
        &run(&s, "c0", &["step", "push", meridian_artifacts::HELLO, &tag]),
        0,
    );
    let pinned = pinned.trim().to_owned();
    assert!(pinned.starts_with(&format!("{tag}@sha256:")), "{pinned}");
    let digest = pinned.rsplit_once('@').unwrap().1.to_owned();

    // Pinned, first use on a fresh cache: pulled, verified, run.
    workflow(&s, "pinned.yaml", &pinned);
    expect_code(&run(&s, "c1", &["validate", "pinned.yaml"]), 0);
    let (out, _) = expect_code(&run(&s, "c1", &["--json", "run", "pinned.yaml"]), 0);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        r["steps"][0]["legs"][0]["output"]["greeting"],
        "Hello, Ada!"
    );
    expect_code(&run(&s, "c1", &["plan", "pinned.yaml"]), 0);

    // A tag alone: validate warns, run refuses unless --allow-unpinned.
    workflow(&s, "tag.yaml", &tag);
    let (_, err) = expect_code(&run(&s, "c1", &["validate", "tag.yaml"]), 0);
    assert!(err.contains("without a digest"), "{err}");
    let (_, err) = expect_code(&run(&s, "c1", &["run", "tag.yaml"]), 2);
    assert!(
        err.contains("--allow-unpinned") && err.contains("greet"),
        "{err}"
    );
    expect_code(&run(&s, "c1", &["run", "tag.yaml", "--allow-unpinned"]), 0);

    // A signing policy: unsigned is refused, naming the step, the digest and the rule.
    let (pubkey, _) = expect_code(&run(&s, "c1", &["step", "keygen", "acme.key"]), 0);
    assert_eq!(pubkey.trim(), "acme.key.pub");
    s.write(
        "policy.toml",
        &format!(
            "[[rule]]\nscope = \"{}/acme\"\nkeys = [\"acme.key.pub\"]\n",
            reg.host
        ),
    );
    let policy = ["--trust-policy", "policy.toml"];
    let (_, err) = expect_code(
        &run(&s, "c1", &[&policy[..], &["run", "pinned.yaml"]].concat()),
        2,
    );
    assert!(err.contains("step `greet`"), "{err}");
    assert!(err.contains(&digest), "{err}");
    assert!(
        err.contains(&format!("rule `{}/acme` in policy.toml", reg.host)),
        "{err}"
    );
    assert!(err.contains("not signed"), "{err}");

    let (signed, err) = expect_code(
        &run(&s, "c1", &["step", "sign", &tag, "--key", "acme.key"]),
        0,
    );
    assert_eq!(signed.trim(), pinned, "{err}");
    expect_code(
        &run(&s, "c1", &[&policy[..], &["run", "pinned.yaml"]].concat()),
        0,
    );
    let (show, _) = expect_code(
        &run(
            &s,
            "c1",
            &[&policy[..], &["steps", "show", &pinned]].concat(),
        ),
        0,
    );
    assert!(
        show.contains("origin:     oci") && show.contains(&digest),
        "{show}"
    );
    assert!(show.contains("verified, signed by acme.key.pub"), "{show}");

    // `step pull` on another fresh cache prints the pinned reference.
    let (pulled, _) = expect_code(
        &run(&s, "c2", &["step", "pull", &tag, "--output", "copy.wasm"]),
        0,
    );
    assert_eq!(pulled.trim(), pinned);
    assert_eq!(
        std::fs::read(s.path().join("copy.wasm")).unwrap(),
        std::fs::read(meridian_artifacts::HELLO).unwrap()
    );

    // The registry gone: what was pulled (and its signature) still runs from the cache.
    drop(reg);
    expect_code(
        &run(&s, "c1", &[&policy[..], &["run", "pinned.yaml"]].concat()),
        0,
    );
    // `steps list` shows it beside the built-ins, offline: pinned reference and signature.
    let (list, _) = expect_code(
        &run(&s, "c1", &[&policy[..], &["steps", "list"]].concat()),
        0,
    );
    let pulled = list
        .split("pulled from OCI registries:")
        .nth(1)
        .unwrap_or("");
    assert!(
        pulled.contains(pinned.trim()) && pulled.contains("verified, signed by acme.key.pub"),
        "{list}"
    );
    let (json, _) = expect_code(
        &run(
            &s,
            "c1",
            &[&policy[..], &["--json", "steps", "list"]].concat(),
        ),
        0,
    );
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let oci: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["origin"]["kind"] == "oci")
        .collect();
    assert_eq!(oci.len(), 1, "{json}");
    assert_eq!(oci[0]["origin"]["digest"], digest.as_str(), "{json}");
    // A cache that never had it cannot.
    let (_, err) = expect_code(&run(&s, "c3", &["run", "pinned.yaml"]), 2);
    assert!(err.contains("step `greet`"), "{err}");
}

#[test]
fn a_tampered_component_is_refused_before_anything_runs() {
    let s = Scratch::new();
    let reg = TestRegistry::start();
    let tag = format!("oci://{}/acme/hello:2.0", reg.host);
    let (pinned, _) = expect_code(
        &run(&s, "c0", &["step", "push", meridian_artifacts::HELLO, &tag]),
        0,
    );
    let (show, _) = expect_code(
        &run(&s, "c0", &["--json", "step", "pull", pinned.trim()]),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    // The local cache's copy changed on disk: fetched again from the registry, and said so.
    let hex = v["component_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let cached = s.path().join(format!("c0/oci/blobs/sha256/{hex}"));
    std::fs::write(&cached, b"not what was pulled").unwrap();
    s.write(
        "cached.yaml",
        &format!(
            "name: oci\nsteps:\n  - id: greet\n    uses: {}\n    with: {{name: Ada}}\n",
            pinned.trim()
        ),
    );
    let (_, err) = expect_code(&run(&s, "c0", &["run", "cached.yaml"]), 0);
    assert!(err.contains("no longer matches its digest"), "{err}");
    let blob = reg.blob_file(v["component_digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    s.write(
        "wf.yaml",
        &format!(
            "name: oci\nsteps:\n  - id: first\n    uses: hello\n  - id: greet\n    uses: {}\n",
            pinned.trim()
        ),
    );
    let (out, err) = expect_code(&run(&s, "fresh", &["run", "wf.yaml"]), 2);
    assert!(
        err.contains("step `greet`") && err.contains("digest mismatch"),
        "{err}"
    );
    assert!(!out.contains("first"), "nothing ran: {out}");
}

/// A workflow's own `trust-policy`, and the server's (`trust-policy` in meridian.toml): an
/// unsigned step is refused by each before anything runs, and runs once signed.
#[test]
fn workflow_and_server_trust_policies_refuse_an_unsigned_step() {
    use crate::serve::{Served, call, rt};
    let s = Scratch::new();
    let reg = TestRegistry::start();
    let tag = format!("oci://{}/acme/hello:1.0", reg.host);
    let (pinned, _) = expect_code(
        &run(&s, "c0", &["step", "push", meridian_artifacts::HELLO, &tag]),
        0,
    );
    let pinned = pinned.trim().to_owned();
    expect_code(&run(&s, "c0", &["step", "keygen", "acme.key"]), 0);
    s.write(
        "policy.toml",
        &format!(
            "[[rule]]\nscope = \"{}/acme\"\nkeys = [\"acme.key.pub\"]\n",
            reg.host
        ),
    );
    s.write(
        "wf/own.yaml",
        &format!(
            "name: own\ntrust-policy: ../policy.toml\nsteps:\n  - id: greet\n    uses: {pinned}\n    with: {{name: Ada}}\n"
        ),
    );
    s.write(
        "wf/plain.yaml",
        &format!(
            "name: plain\nsteps:\n  - id: greet\n    uses: {pinned}\n    with: {{name: Ada}}\n"
        ),
    );
    // The workflow's policy, with no policy on the command line.
    let (_, err) = expect_code(&run(&s, "c1", &["run", "wf/own.yaml"]), 2);
    assert!(
        err.contains("step `greet`") && err.contains("not signed"),
        "{err}"
    );
    assert!(err.contains("the workflow's `trust-policy`"), "{err}");
    expect_code(&run(&s, "c1", &["run", "wf/plain.yaml"]), 0);

    // The server's policy, from meridian.toml.
    s.write(
        "meridian.toml",
        "workflows = \"wf\"\ntrust-policy = \"policy.toml\"\n",
    );
    let serve = |s: &Scratch| {
        let mut cmd = s.cmd();
        cmd.env("MERIDIAN_CACHE_DIR", s.path().join("c2"))
            .env_remove("MERIDIAN_TRUST_POLICY")
            .env("DOCKER_CONFIG", s.path().join("no-docker-config"));
        Served::spawn(cmd, &["--config", "meridian.toml"])
    };
    let served = serve(&s);
    let rt = rt();
    let start = |served: &Served, wf: &str| {
        let url = served.url("/api/v1/runs");
        let body = serde_json::json!({ "workflow": wf });
        rt.block_on(async { call("POST", &url, None, Some(body)).await })
    };
    let (code, body) = start(&served, "plain");
    assert_eq!(code, 400, "{body}");
    let msg = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("not signed") && msg.contains("policy.toml"),
        "{msg}"
    );
    drop(served);

    expect_code(
        &run(&s, "c1", &["step", "sign", &tag, "--key", "acme.key"]),
        0,
    );
    expect_code(&run(&s, "c1", &["run", "wf/own.yaml"]), 0);
    let served = serve(&s);
    let (code, body) = start(&served, "plain");
    assert_eq!(code, 202, "{body}");
}

/// A registry that asks for credentials (htpasswd basic auth): without them `step push` and a
/// run's pull are refused with the registry's answer named; with them from the docker config
/// file (`auths`, base64 `user:password`) or from `MERIDIAN_REGISTRY_USERNAME`/`…_PASSWORD`,
/// push, pull and run work.
#[test]
fn an_authenticated_registry_takes_credentials_from_docker_config_or_env() {
    use base64::Engine as _;
    let s = Scratch::new();
    // bcrypt (cost 5) of "s3cret-pw", made with Python's crypt (libxcrypt).
    let reg = TestRegistry::start_with_auth(
        "vendor",
        "$2b$05$tFJFL09vgVpNB18t1AKfiOEwYTI7h1jtnoeTDFqYrA8rWUmH1qCFi",
    );
    let tag = format!("oci://{}/acme/hello:1.0", reg.host);
    let push = ["step", "push", meridian_artifacts::HELLO, tag.as_str()];

    let (_, err) = expect_code(&run(&s, "c0", &push), 1);
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );

    // The docker config file, as `docker login` leaves it.
    let auth = base64::engine::general_purpose::STANDARD.encode("vendor:s3cret-pw");
    std::fs::create_dir_all(s.path().join("docker")).unwrap();
    s.write(
        "docker/config.json",
        &format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, reg.host),
    );
    let with_config = |cache: &str, args: &[&str]| {
        s.cmd()
            .env("MERIDIAN_CACHE_DIR", s.path().join(cache))
            .env("DOCKER_CONFIG", s.path().join("docker"))
            .args(args)
            .output()
            .unwrap()
    };
    let (pinned, err) = expect_code(&with_config("c0", &push), 0);
    let pinned = pinned.trim().to_owned();
    assert!(
        pinned.starts_with(&format!("{tag}@sha256:")),
        "{pinned} {err}"
    );

    // A run pulls with the same credentials; without any, the pull is refused.
    workflow(&s, "pinned.yaml", &pinned);
    expect_code(&with_config("c1", &["run", "pinned.yaml"]), 0);
    let (_, err) = expect_code(&run(&s, "c2", &["run", "pinned.yaml"]), 2);
    assert!(err.contains("step `greet`"), "{err}");
    // From the environment instead of the file.
    let by_env = s
        .cmd()
        .env("MERIDIAN_CACHE_DIR", s.path().join("c3"))
        .env("DOCKER_CONFIG", s.path().join("no-docker-config"))
        .env("MERIDIAN_REGISTRY_USERNAME", "vendor")
        .env("MERIDIAN_REGISTRY_PASSWORD", "s3cret-pw")
        .args(["run", "pinned.yaml"])
        .output()
        .unwrap();
    expect_code(&by_env, 0);
}

/// A resume runs the code its run started with: a tag run with `--allow-unpinned` waits at a
/// gate, the tag is pushed again (another component), and the resume — without the flag —
/// runs the digest the tag named when the run started (it was refused, the run failed and its
/// approval was spent); the journal says which digest ran. A component file swapped while
/// the run waited is refused, the run left waiting.
#[test]
fn a_resume_runs_the_code_its_run_started_with() {
    let s = Scratch::new();
    let reg = TestRegistry::start();
    let tag = format!("oci://{}/acme/greet:1.0", reg.host);
    let (first, _) = expect_code(
        &run(&s, "c0", &["step", "push", meridian_artifacts::HELLO, &tag]),
        0,
    );
    let gated = |uses: &str| {
        format!(
            "name: gated\nsteps:\n  - id: a\n    uses: {uses}\n    with: {{name: Ada}}\n  - id: b\n    uses: {uses}\n    needs: a\n    approval: true\n    with: {{name: Bob}}\n"
        )
    };
    s.write("tag.yaml", &gated(&tag));
    let (out, _) = expect_code(
        &run(&s, "c1", &["--json", "run", "tag.yaml", "--allow-unpinned"]),
        3,
    );
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    expect_code(
        &run(&s, "c0", &["step", "push", meridian_artifacts::NOOP, &tag]),
        0,
    );
    let (out, err) = expect_code(
        &run(&s, "c1", &["--json", "resume", &id, "--approve", "b"]),
        0,
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "b")
        .unwrap();
    assert_eq!(
        b["legs"][0]["output"]["greeting"], "Hello, Bob!",
        "{out}{err}"
    );
    let (shown, _) = expect_code(&run(&s, "c1", &["--json", "runs", "show", &id]), 0);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["run"]["settings"]["components"][&tag],
        first.trim(),
        "{}",
        shown["run"]["settings"]
    );

    // A file swapped while the run waits: refused, nothing changed.
    std::fs::copy(meridian_artifacts::HELLO, s.path().join("step.wasm")).unwrap();
    s.write("file.yaml", &gated("./step.wasm"));
    let (out, _) = expect_code(&run(&s, "c1", &["--json", "run", "file.yaml"]), 3);
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::copy(meridian_artifacts::NOOP, s.path().join("step.wasm")).unwrap();
    let (_, err) = expect_code(&run(&s, "c1", &["resume", &id, "--approve", "b"]), 2);
    assert!(
        err.contains("step `a`: its component") && err.contains(&format!("changed since run {id}")),
        "{err}"
    );
    let (list, _) = expect_code(&run(&s, "c1", &["runs", "list"]), 0);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("awaiting-approval")),
        "{list}"
    );
    // Put back, it goes on.
    std::fs::copy(meridian_artifacts::HELLO, s.path().join("step.wasm")).unwrap();
    expect_code(&run(&s, "c1", &["resume", &id, "--approve", "b"]), 0);
}
