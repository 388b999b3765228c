// A hostile JavaScript step (built from source by the e2e tests): `mode` picks the misbehaviour.
import { defineStep } from './meridian.js';

const step = defineStep({
  name: 'js-hostile',
  version: '0.1.0',
  description: 'Misbehaves on purpose (tests).',
  input: { type: 'object', properties: { mode: { type: 'string' }, url: { type: 'string' } }, required: ['mode'] },
  needs: [['http', 'the URL in `url`']],
  run(ctx, input) {
    switch (input.mode) {
      case 'spin':
        for (;;) {}
      case 'alloc': {
        const hoard = [];
        for (;;) hoard.push(new Array(1 << 20).fill(hoard.length));
      }
      case 'post':
        return { status: ctx.http.post(input.url, { x: 1 }).status };
      case 'throw':
        throw new TypeError('a bug in the step');
      case 'async':
        return Promise.resolve({ ok: true });
      case 'bigint':
        return { n: 1n };
      default:
        return { ok: true };
    }
  },
});
export const describe = step.describe;
export const run = step.run;
export const compensate = step.compensate;
