//! `meridian new step NAME --lang js|python`: a JavaScript (componentize-js) or Python
//! (componentize-py) step that builds as is, with the SDK and the WIT contract copied in (so the
//! directory builds wherever it is put) and an example workflow.

use std::path::Path;

use crate::exit;
use crate::out::outln;

const WIT: &str = include_str!("../../../sdk/wit/step.wit");
const JS_SDK: &str = include_str!("../../../sdk/js/meridian.js");
const PY_SDK: &str = include_str!("../../../sdk/python/meridian_step.py");
const JS_TESTING: &str = include_str!("../../../sdk/js/testing.mjs");
const JS_TESTING_HOOKS: &str = include_str!("../../../sdk/js/testing-hooks.mjs");
const PY_TESTING: &str = include_str!("../../../sdk/python/meridian_testing.py");
/// The toolchain versions the repository's own steps are built and tested with.
const COMPONENTIZE_JS: &str = "0.23.0";
const COMPONENTIZE_PY: &str = "0.25.1";

/// Which language a scaffolded step is written in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// A Rust crate for wasm32-wasip2 (meridian-sdk).
    #[default]
    Rust,
    /// JavaScript, built with componentize-js.
    Js,
    /// Python, built with componentize-py.
    Python,
}

fn example_workflow(name: &str) -> String {
    format!(
        "# Runs the step built in this directory: `meridian run workflow.yaml`.\nname: {name}-example\nsteps:\n  - id: greet\n    uses: ./{name}.wasm\n    with: {{name: Ada}}\n"
    )
}

const JS_BUILD: &str = r#"// Builds step.js to a component against wit/: `npm install && npm run build`.
// Uses @bytecodealliance/componentize-js from node_modules, or from
// $MERIDIAN_TOOLS_DIR/js/node_modules (where Meridian's scripts/install-deps puts it).
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

async function load() {
  try {
    return await import('@bytecodealliance/componentize-js');
  } catch (e) {
    const tools = process.env.MERIDIAN_TOOLS_DIR;
    if (!tools) throw e;
    return import(pathToFileURL(join(tools, 'js/node_modules/@bytecodealliance/componentize-js/src/componentize.js')));
  }
}
const { componentize } = await load();
const out = process.argv[2];
const { component } = await componentize({
  sourcePath: resolve('step.js'),
  witPath: resolve('wit'),
  worldName: 'step',
  // stdio stays: console.log and console.error become the step's log lines, as print does
  // in Python and println! in Rust.
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks'],
});
await writeFile(out, component);
console.error(`built ${out}`);
"#;

/// Writes the project; `dir` exists and is empty.
pub fn scaffold(name: &str, dir: &Path, lang: Lang) -> anyhow::Result<u8> {
    let files: Vec<(&str, String)> = match lang {
        Lang::Rust => unreachable!("the Rust scaffold is scaffold::scaffold"),
        Lang::Js => vec![
            (
                "package.json",
                format!(
                    "{{\n  \"name\": \"{name}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"scripts\": {{ \"build\": \"node build.mjs {name}.wasm\", \"test\": \"node --test\" }},\n  \"devDependencies\": {{ \"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS}\" }}\n}}\n"
                ),
            ),
            ("build.mjs", JS_BUILD.to_owned()),
            ("meridian.js", JS_SDK.to_owned()),
            ("testing.mjs", JS_TESTING.to_owned()),
            ("testing-hooks.mjs", JS_TESTING_HOOKS.to_owned()),
            (
                "step.test.mjs",
                r#"// Unit tests against a mock host, no component built: `npm test` (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';

// The step's WIT imports resolve to the mock host (before the step is imported).
register('./testing-hooks.mjs', import.meta.url);
const { host, invocation } = await import('./testing.mjs');
const step = await import('./step.js');

test('greets by name and logs', () => {
  host.reset();
  const out = JSON.parse(step.run(invocation({ name: 'Ada' })));
  assert.deepEqual(out, { message: 'hello, Ada' });
  assert.equal(host.logs[0].message, 'running');
  assert.equal(host.logs[0].fields.mode, 'apply');
});

test('an empty name is invalid input', () => {
  assert.throws(() => step.run(invocation({ name: '' })), (e) => e.tag === 'invalid-input');
});

test('the declared input schema requires a name', () => {
  assert.deepEqual(JSON.parse(step.describe().inputSchema).required, ['name']);
});
"#
                .to_owned(),
            ),
            (
                "step.js",
                format!(
                    r#"// `{name}`: a Meridian workflow step in JavaScript.
// Build: `npm install && npm run build` → {name}.wasm. Use: `uses: ./{name}.wasm`.
import {{ defineStep, invalidInput }} from './meridian.js';

const step = defineStep({{
  name: '{name}',
  version: '0.1.0',
  description: 'Describe what {name} does.',
  // JSON Schemas: `meridian validate` checks `with:` against `input` before anything runs.
  input: {{
    type: 'object',
    additionalProperties: false,
    required: ['name'],
    properties: {{ name: {{ type: 'string', description: 'Who to greet.' }} }},
  }},
  output: {{ type: 'object', properties: {{ message: {{ type: 'string' }} }} }},
  // Grants it needs, e.g. [['http', 'the URL in `url`']]; ctx.http, ctx.sql(name), ctx.secret(name), ctx.kv, ctx.log.
  needs: [],
  run(ctx, input) {{
    if (!input.name) throw invalidInput('with.name must not be empty');
    ctx.log.info('running', {{ mode: ctx.invocation.mode }});
    return {{ message: `hello, ${{input.name}}` }};
  }},
}});

export const describe = step.describe;
export const run = step.run;
export const compensate = step.compensate;
"#
                ),
            ),
            ("wit/step.wit", WIT.to_owned()),
            ("workflow.yaml", example_workflow(name)),
            (".gitignore", "node_modules/\n*.wasm\n".to_owned()),
        ],
        Lang::Python => vec![
            (
                "requirements.txt",
                format!("componentize-py=={COMPONENTIZE_PY}\n"),
            ),
            (
                "build.sh",
                format!(
                    "#!/bin/sh\n# Builds app.py to a component against wit/: `pip install -r requirements.txt && ./build.sh`.\nset -e\ncd \"$(dirname \"$0\")\"\ncomponentize-py -d wit -w step componentize -p . app -o {name}.wasm\necho \"built {name}.wasm\" >&2\n"
                ),
            ),
            ("meridian_step.py", PY_SDK.to_owned()),
            ("meridian_testing.py", PY_TESTING.to_owned()),
            (
                "test_app.py",
                r#""""Unit tests against a mock host, no component built: `python3 -m unittest`."""

import json
import unittest

import meridian_testing  # first: stands in for the WIT modules componentize-py generates
from meridian_testing import Err, host, invocation

import app


class AppTest(unittest.TestCase):
    def setUp(self):
        host.reset()

    def test_greets_by_name_and_logs(self):
        out = json.loads(app.WitWorld().run(invocation({"name": "Ada"})))
        self.assertEqual(out, {"message": "hello, Ada"})
        self.assertEqual(host.logs[0][:2], ("info", "running"))

    def test_an_empty_name_is_invalid_input(self):
        with self.assertRaises(Err) as e:
            app.WitWorld().run(invocation({"name": ""}))
        self.assertEqual(type(e.exception.value).__name__, "StepError_InvalidInput")

    def test_the_declared_input_schema_requires_a_name(self):
        schema = json.loads(app.WitWorld().describe().input_schema)
        self.assertEqual(schema["required"], ["name"])


if __name__ == "__main__":
    unittest.main()
"#
                .to_owned(),
            ),
            (
                "app.py",
                format!(
                    r#""""`{name}`: a Meridian workflow step in Python.
Build: `pip install -r requirements.txt && ./build.sh` → {name}.wasm. Use: `uses: ./{name}.wasm`."""

from meridian_step import Step, export, invalid_input


class Main(Step):
    name = "{name}"
    version = "0.1.0"
    description = "Describe what {name} does."
    # JSON Schemas: `meridian validate` checks `with:` against input_schema before anything runs.
    input_schema = {{
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {{"name": {{"type": "string", "description": "Who to greet."}}}},
    }}
    output_schema = {{"type": "object", "properties": {{"message": {{"type": "string"}}}}}}
    # Grants it needs, e.g. [("sql", "the connection in `connection`")];
    # ctx.http, ctx.sql(name), ctx.secret(name), ctx.kv, ctx.log.
    needs = []

    def run(self, ctx, input):
        if not input["name"]:
            raise invalid_input("with.name must not be empty")
        ctx.log.info("running", {{"plan": ctx.is_plan}})
        return {{"message": f"hello, {{input['name']}}"}}


WitWorld = export(Main)
"#
                ),
            ),
            ("wit/step.wit", WIT.to_owned()),
            ("workflow.yaml", example_workflow(name)),
            (".gitignore", "__pycache__/\n*.wasm\n".to_owned()),
        ],
    };
    for (rel, text) in &files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
    }
    let (build, test) = if lang == Lang::Js {
        ("npm install && npm run build".to_owned(), "npm test")
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.join("build.sh"), std::fs::Permissions::from_mode(0o755))?;
        (
            "pip install -r requirements.txt && ./build.sh".to_owned(),
            "python3 -m unittest",
        )
    };
    let d = dir.display();
    outln!(
        "created step `{name}` in {d}\n  test:  cd {d} && {test}   (a mock host, no build)\n  build: cd {d} && {build}\n  use:   uses: {d}/{name}.wasm   (example: {d}/workflow.yaml)"
    )?;
    Ok(exit::OK)
}
