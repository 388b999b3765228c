// A mock host for unit-testing a JavaScript step under Node, without building a component.
//
//   import { register } from 'node:module';
//   register('./testing-hooks.mjs', import.meta.url);   // before the step is imported
//   const { host, invocation } = await import('./testing.mjs');
//   const step = await import('./step.js');
//   host.http = (req) => ({ status: 200, headers: [], body: new TextEncoder().encode('ok') });
//   const out = JSON.parse(step.run(invocation({ url: 'https://example.com' })));
//
// `testing-hooks.mjs` resolves the step's WIT imports (`meridian:step/http@0.2.0`, …) to this
// host: what the step logs, sends and runs is recorded in `host`, and its answers come from the
// functions a test sets. Errors the real host returns are thrown as jco throws them (`{ payload:
// { tag, val } }`): `host.http = () => { throw hostError('denied', 'not granted') }`.

const encoder = new TextEncoder();

/** An error as an import of a component throws it. */
export function hostError(tag, val) {
  return { payload: val === undefined ? { tag } : { tag, val } };
}

function fresh() {
  return {
    /** Log lines: { level, message, fields }. */
    logs: [],
    /** HTTP requests sent: { method, url, headers, body (string), timeoutMs }. */
    requests: [],
    /** SQL statements: { connection, statement, params, kind: 'query' | 'execute' }. */
    statements: [],
    /** Secrets the step is granted: name → value. */
    secrets: {},
    /** The run's kv: key → Uint8Array. */
    kv: new Map(),
    /** Answers a request: { status, headers: [[k, v]], body: Uint8Array, recorded? }. */
    http: () => ({ status: 200, headers: [], body: new Uint8Array(), recorded: false }),
    /** Answers a query: { columns: [...], rows: [[{ tag, val }]] } (or rows affected, for execute). */
    sql: (_connection, _statement, _params, kind) => (kind === 'execute' ? 0n : { columns: [], rows: [] }),
  };
}

/** What the step did, and how the host answers; `reset()` between tests. */
export const host = {
  ...fresh(),
  reset() {
    Object.assign(host, fresh());
  },
  /** Called by the hooks' generated import modules. */
  call(iface, fn, args) {
    switch (`${iface}.${fn}`) {
      case 'log.log': {
        const [level, message, fields] = args;
        host.logs.push({ level, message, fields: Object.fromEntries(fields) });
        return undefined;
      }
      case 'http.send': {
        const [req] = args;
        const body = req.body === undefined ? undefined : new TextDecoder().decode(req.body);
        host.requests.push({ method: req.method, url: req.url, headers: req.headers, body, timeoutMs: req.timeoutMs });
        return host.http(req);
      }
      case 'sql.query':
      case 'sql.execute': {
        const [connection, statement, params] = args;
        host.statements.push({ connection, statement, params, kind: fn });
        return host.sql(connection, statement, params, fn);
      }
      case 'secrets.get': {
        const [name] = args;
        if (!(name in host.secrets)) throw hostError('denied', `secret \`${name}\` is not granted`);
        return host.secrets[name];
      }
      case 'kv.get': return host.kv.get(args[0]);
      case 'kv.set': host.kv.set(args[0], args[1]); return undefined;
      case 'kv.delete': return host.kv.delete(args[0]);
      case 'kv.keys': return [...host.kv.keys()].filter((k) => k.startsWith(args[0])).sort();
      default: throw new Error(`the mock host has no ${iface}.${fn}`);
    }
  },
};

/** A `run`/`compensate` invocation for `input` (mode `apply` unless `{ mode: 'plan' }`). */
export function invocation(input, { mode = 'apply', attempt = 1 } = {}) {
  return {
    runId: 'test-run',
    stepId: 'test-step',
    attempt,
    idempotencyKey: `test-run/test-step/${attempt}`,
    mode,
    input: JSON.stringify(input),
  };
}

/** `text` as a response body. */
export const body = (text) => encoder.encode(text);
