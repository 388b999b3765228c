// Meridian step SDK for JavaScript (componentize-js / jco), against sdk/wit (meridian:step@0.2.0).
//
//   import { defineStep, retryable, fatal, invalidInput } from './meridian.js';
//   const step = defineStep({
//     name: 'my-step', version: '0.1.0', description: '…',
//     input: { type: 'object', properties: { url: { type: 'string' } }, required: ['url'] },
//     output: { type: 'object', properties: { status: { type: 'integer' } } },
//     needs: [['http', 'the URL in `url`']],
//     run(ctx, input) { const r = ctx.http.get(input.url); return { status: r.status }; },
//   });
//   export const describe = step.describe, run = step.run, compensate = step.compensate;
//
// The same ideas as the Rust SDK: a declared JSON Schema for input and output (the engine checks
// `with:` against it before anything runs), errors as values (retryable / fatal / invalid input),
// and helpers for http, sql, secrets, kv and log. Plan mode needs nothing from the author: the
// host records what would change.

import { log as hostLog } from 'meridian:step/log@0.2.0';
import { send } from 'meridian:step/http@0.2.0';
import { query as sqlQuery, execute as sqlExecute } from 'meridian:step/sql@0.2.0';
import { get as secretGet } from 'meridian:step/secrets@0.2.0';
import * as hostKv from 'meridian:step/kv@0.2.0';

/** A failure the engine acts on: `retryable` (retried under the step's policy), `fatal`, `invalid-input`. */
export class StepError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}
export const retryable = (message) => new StepError('retryable', message);
export const fatal = (message) => new StepError('fatal', message);
export const invalidInput = (message) => new StepError('invalid-input', message);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// An error an import returned: jco throws it with the variant as `payload`.
function variantOf(e) {
  return e && typeof e === 'object' && 'payload' in e ? e.payload : null;
}

function httpError(url, e) {
  const v = variantOf(e);
  if (!v) return fatal(`http ${url}: ${e}`);
  switch (v.tag) {
    case 'denied': return fatal(`http ${url}: not granted (${v.val}); add its origin to the step's grants.http`);
    case 'timeout': return retryable(`http ${url}: timed out`);
    case 'connect': return retryable(`http ${url}: ${v.val}`);
    case 'too-large': return fatal(`http ${url}: body larger than ${v.val} bytes`);
    default: return retryable(`http ${url}: ${v.val ?? v.tag}`);
  }
}

function response(r) {
  return {
    status: r.status,
    headers: r.headers,
    body: r.body,
    recorded: r.recorded,
    header(name) {
      const n = name.toLowerCase();
      const h = r.headers.find(([k]) => k.toLowerCase() === n);
      return h ? h[1] : undefined;
    },
    text() { return decoder.decode(r.body); },
    json() { return JSON.parse(decoder.decode(r.body)); },
  };
}

const http = {
  /** Any request: { method, url, headers: [[k, v]], body: string | Uint8Array | object, timeoutMs }. */
  send(req) {
    let body = req.body;
    const headers = [...(req.headers ?? [])];
    if (body !== undefined && body !== null && !(body instanceof Uint8Array)) {
      if (typeof body !== 'string') {
        body = JSON.stringify(body);
        if (!headers.some(([k]) => k.toLowerCase() === 'content-type')) headers.push(['content-type', 'application/json']);
      }
      body = encoder.encode(body);
    }
    try {
      return response(send({ method: req.method ?? 'GET', url: req.url, headers, body: body ?? undefined, timeoutMs: req.timeoutMs }));
    } catch (e) {
      throw httpError(req.url, e);
    }
  },
  get(url, opts = {}) { return http.send({ ...opts, method: 'GET', url }); },
  post(url, body, opts = {}) { return http.send({ ...opts, method: 'POST', url, body }); },
};

function toSql(v) {
  if (v === null || v === undefined) return { tag: 'null' };
  if (typeof v === 'boolean') return { tag: 'boolean', val: v };
  if (typeof v === 'bigint') return { tag: 'int', val: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { tag: 'int', val: BigInt(v) } : { tag: 'float', val: v };
  if (typeof v === 'string') return { tag: 'text', val: v };
  if (v instanceof Uint8Array) return { tag: 'bytes', val: v };
  return { tag: 'json', val: JSON.stringify(v) };
}

function fromSql(v) {
  switch (v.tag) {
    case 'null': return null;
    case 'int': return Number.isSafeInteger(Number(v.val)) ? Number(v.val) : v.val;
    case 'json': return JSON.parse(v.val);
    default: return v.val;
  }
}

function sqlError(conn, e) {
  const v = variantOf(e);
  if (!v) return fatal(`sql ${conn}: ${e}`);
  switch (v.tag) {
    case 'denied': return fatal(`sql ${conn}: not granted (${v.val}); add it to the step's grants.sql`);
    case 'db': return fatal(`sql ${conn}: ${v.val[0]} ${v.val[1]}`);
    case 'timeout': return retryable(`sql ${conn}: timed out`);
    case 'connect': return retryable(`sql ${conn}: ${v.val}`);
    default: return fatal(`sql ${conn}: ${v.val ?? v.tag}`);
  }
}

function sql(connection) {
  return {
    /** Rows as objects keyed by column name. */
    query(statement, params = []) {
      try {
        const r = sqlQuery(connection, statement, params.map(toSql));
        return r.rows.map((row) => Object.fromEntries(row.map((v, i) => [r.columns[i], fromSql(v)])));
      } catch (e) {
        throw sqlError(connection, e);
      }
    },
    /** Rows affected (0 for a statement plan mode recorded). */
    execute(statement, params = []) {
      try {
        return Number(sqlExecute(connection, statement, params.map(toSql)));
      } catch (e) {
        throw sqlError(connection, e);
      }
    },
  };
}

const kv = {
  get(key) { const v = hostKv.get(key); return v === undefined ? undefined : decoder.decode(v); },
  set(key, value) {
    try { hostKv.set(key, encoder.encode(typeof value === 'string' ? value : JSON.stringify(value))); } catch (e) { throw fatal(`kv ${key}: ${variantOf(e) ?? e}`); }
  },
  delete(key) { return hostKv.delete(key); },
  keys(prefix = '') { return hostKv.keys(prefix); },
};

const fieldsOf = (fields) => Object.entries(fields ?? {}).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
const log = Object.fromEntries(['trace', 'debug', 'info', 'warn', 'error'].map((level) => [level, (message, fields) => hostLog(level, String(message), fieldsOf(fields))]));

function context(inv) {
  return {
    invocation: { runId: inv.runId, stepId: inv.stepId, attempt: inv.attempt, idempotencyKey: inv.idempotencyKey, mode: inv.mode },
    isPlan: inv.mode === 'plan',
    http,
    sql,
    secret(name) {
      try { return secretGet(name); } catch (e) { throw fatal(`secret ${name}: ${variantOf(e) ?? e}; add it to the step's grants.secrets`); }
    },
    kv,
    log,
  };
}

// What crosses back to the host: a step-error variant.
function asStepError(e) {
  if (e instanceof StepError) return { tag: e.kind, val: e.message };
  return { tag: 'fatal', val: `uncaught ${e}${e && e.stack ? `\n${e.stack}` : ''}` };
}

function invoke(fn, inv) {
  let input;
  try {
    input = JSON.parse(inv.input);
  } catch (e) {
    throw { tag: 'invalid-input', val: `input is not JSON: ${e}` };
  }
  try {
    return fn(context(inv), input);
  } catch (e) {
    throw asStepError(e);
  }
}

// The exports are synchronous (componentize-js runs no event loop after an export returns): a
// Promise handed back would be serialised as `{}` and its work never done. Said instead.
function synchronous(what, out) {
  if (out !== null && typeof out === 'object' && typeof out.then === 'function') {
    throw {
      tag: 'fatal',
      val: `\`${what}\` returned a Promise: write it as a plain (not async) function; ctx.http, ctx.sql and ctx.kv answer synchronously`,
    };
  }
  return out;
}

/** The component's exports for a step definition. */
export function defineStep(def) {
  for (const k of ['name', 'version', 'run']) {
    if (!def[k]) throw new Error(`defineStep: \`${k}\` is required`);
  }
  return {
    describe() {
      return {
        name: def.name,
        version: def.version,
        description: def.description ?? '',
        inputSchema: JSON.stringify(def.input ?? { type: 'object' }),
        outputSchema: JSON.stringify(def.output ?? { type: 'object' }),
        needs: (def.needs ?? []).map(([kind, detail]) => ({ kind, detail })),
        supportsPlan: true,
        supportsCompensate: typeof def.compensate === 'function',
      };
    },
    run(inv) {
      const out = synchronous('run', invoke(def.run, inv));
      let text;
      try {
        text = JSON.stringify(out ?? {});
      } catch (e) {
        throw { tag: 'fatal', val: `the output of \`run\` cannot be written as JSON: ${e}` };
      }
      if (text === undefined) {
        throw { tag: 'fatal', val: `the output of \`run\` cannot be written as JSON (a ${typeof out})` };
      }
      return text;
    },
    compensate(inv) {
      if (typeof def.compensate === 'function') synchronous('compensate', invoke(def.compensate, inv));
    },
  };
}
