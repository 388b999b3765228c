// Builds a JavaScript step to a component against sdk/wit:
//   node sdk/js/build.mjs STEP.js WIT_DIR OUT.wasm
// Needs @bytecodealliance/componentize-js: scripts/install-deps puts it in
// $MERIDIAN_TOOLS_DIR/js/node_modules (default: .meridian/tools in the repository).
// WASI features the contract does not use are left out: the host gives HTTP only through
// meridian:step/http, and clocks/random stay the host's deny-by-default WASI. stdio stays:
// console.log and console.error become the step's log lines (the host captures stdout and
// stderr), as print does in Python and println! in Rust.
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const tools = process.env.MERIDIAN_TOOLS_DIR || join(repo, '.meridian/tools');
const entry = join(tools, 'js/node_modules/@bytecodealliance/componentize-js/src/componentize.js');
const { componentize } = await import(pathToFileURL(entry)).catch((e) => {
  console.error(`cannot load componentize-js from ${entry} (${e.message}); run scripts/install-deps`);
  process.exit(2);
});

const [src, wit, out] = process.argv.slice(2);
if (!src || !wit || !out) {
  console.error('usage: node build.mjs STEP.js WIT_DIR OUT.wasm');
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(src),
  witPath: resolve(wit),
  worldName: 'step',
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks'],
});
await writeFile(out, component);
