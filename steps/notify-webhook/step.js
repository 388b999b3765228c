// notify-webhook: posts a run notification to a webhook — Slack, Microsoft Teams or generic
// JSON — through the step's http grant. In plan mode the host records the POST instead of
// sending it (nothing here has to know). A Meridian built-in step written in JavaScript.
import { defineStep, fatal, retryable, invalidInput } from './meridian.js';

const input = {
  type: 'object',
  additionalProperties: false,
  required: ['url', 'text'],
  properties: {
    url: { type: 'string', description: 'The webhook URL (grant its origin under grants.http).' },
    format: { type: 'string', enum: ['slack', 'teams', 'json'], default: 'json', description: 'Payload shape.' },
    text: { type: 'string', description: 'The message.' },
    title: { type: 'string', description: 'A heading (Teams card title, bold first line on Slack).' },
    severity: { type: 'string', enum: ['info', 'warning', 'critical'], default: 'info' },
    fields: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra facts shown as key/value pairs.' },
    secret_header: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'secret'],
      properties: {
        name: { type: 'string', description: 'Header name, e.g. Authorization.' },
        secret: { type: 'string', description: 'The granted secret whose value is the header value.' },
      },
      description: 'A header whose value comes from a granted secret.',
    },
  },
};

const output = {
  type: 'object',
  required: ['status', 'recorded'],
  properties: {
    status: { type: 'integer', description: 'HTTP status the webhook answered.' },
    recorded: { type: 'boolean', description: 'True in plan mode: the POST was recorded, not sent.' },
    format: { type: 'string' },
  },
};

const COLORS = { info: '#2eb886', warning: '#daa038', critical: '#a30200' };

export function payload(format, i) {
  const fields = Object.entries(i.fields ?? {});
  const severity = i.severity ?? 'info';
  switch (format) {
    case 'slack':
      return {
        text: i.title ? `*${i.title}*\n${i.text}` : i.text,
        attachments: fields.length
          ? [{ color: COLORS[severity], fields: fields.map(([title, value]) => ({ title, value, short: true })) }]
          : [],
      };
    case 'teams':
      return {
        '@type': 'MessageCard',
        '@context': 'https://schema.org/extensions',
        themeColor: COLORS[severity].slice(1),
        summary: i.title ?? i.text.slice(0, 80),
        title: i.title,
        text: i.text,
        sections: fields.length ? [{ facts: fields.map(([name, value]) => ({ name, value })) }] : [],
      };
    default:
      return { title: i.title ?? null, text: i.text, severity, fields: Object.fromEntries(fields) };
  }
}

const step = defineStep({
  name: 'notify-webhook',
  version: '0.1.0',
  description: 'Posts a notification to a Slack, Teams or generic JSON webhook.',
  input,
  output,
  needs: [['http', 'the origin of `url`'], ['secret', 'the secret named in `secret_header.secret`, if any']],
  run(ctx, i) {
    const format = i.format ?? 'json';
    if (!/^https?:\/\//.test(i.url)) throw invalidInput(`url ${i.url}: expected http:// or https://`);
    const headers = [['content-type', 'application/json']];
    if (i.secret_header) headers.push([i.secret_header.name, ctx.secret(i.secret_header.secret)]);
    ctx.log.info('posting notification', { format, url: i.url });
    const r = ctx.http.send({ method: 'POST', url: i.url, headers, body: JSON.stringify(payload(format, i)) });
    if (r.status === 429 || r.status >= 500) throw retryable(`${i.url} answered ${r.status}`);
    if (r.status >= 400) throw fatal(`${i.url} answered ${r.status}: ${r.text().slice(0, 200)}`);
    return { status: r.status, recorded: r.recorded, format };
  },
});

export const describe = step.describe;
export const run = step.run;
export const compensate = step.compensate;
