// Node module hooks (register them with `module.register`) that resolve a step's WIT imports
// (`meridian:step/<interface>@0.2.0`) to modules forwarding every call to the mock host of
// `testing.mjs`. See that file.

const INTERFACES = {
  log: ['log'],
  http: ['send'],
  sql: ['query', 'execute'],
  secrets: ['get'],
  kv: ['get', 'set', 'delete', 'keys'],
};

export async function resolve(specifier, context, next) {
  const m = /^meridian:step\/([a-z-]+)@/.exec(specifier);
  if (m && m[1] in INTERFACES) {
    return { url: `meridian-mock:${m[1]}`, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith('meridian-mock:')) return next(url, context);
  const iface = url.slice('meridian-mock:'.length);
  const testing = new URL('./testing.mjs', import.meta.url).href;
  const lines = [`import { host } from ${JSON.stringify(testing)};`];
  for (const fn of INTERFACES[iface]) {
    // `delete` is a keyword: define under another name, export under its own.
    lines.push(`function f_${fn}(...args) { return host.call(${JSON.stringify(iface)}, ${JSON.stringify(fn)}, args); }`);
    lines.push(`export { f_${fn} as ${fn} };`);
  }
  return { format: 'module', source: lines.join('\n'), shortCircuit: true };
}
