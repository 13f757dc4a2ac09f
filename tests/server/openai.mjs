// tests/server/openai.mjs: ftune serve's /v1 through the real `openai` npm client (v6), the way
// applications call it (issue #13 item 4). Run by tests/server/test_v1.c:
//   node tests/server/openai.mjs BASE_URL TOKEN MODEL EXPECTED_IDS_JSON
// Prints one line per check ("ok NAME" / "FAIL NAME: why") and exits non-zero on any failure.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../tools/npm/package.json'));
const OpenAI = require('openai').default ?? require('openai');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default ?? require('ajv-formats');
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

const [base, token, model, expectedJson] = process.argv.slice(2);
const expected = JSON.parse(expectedJson);
let failed = 0;
function check(name, cond, why) {
  if (cond) console.log(`ok ${name}`);
  else {
    failed++;
    console.log(`FAIL ${name}: ${why ?? ''}`);
  }
}

let calls = 0;
const countingFetch = (url, init) => {
  calls++;
  return fetch(url, init);
};
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: token, fetch: countingFetch, timeout: 60000 });
const msgs = [
  { role: 'system', content: 'You answer briefly.' },
  { role: 'user', content: 'Name a colour.' },
];

async function metricValue(name, labels) {
  const r = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${token}` } });
  const text = await r.text();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{${labels}}`)) return Number(line.split(' ').pop());
  }
  return NaN;
}

async function main() {
  // models.list() = the registry (and the preloads)
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  check('models.list equals the registry', JSON.stringify([...ids].sort()) === JSON.stringify([...expected].sort()),
        `${JSON.stringify(ids)} vs ${JSON.stringify(expected)}`);
  const one = await client.models.retrieve(model);
  check('models.retrieve', one.id === model && one.object === 'model' && 'source_run' in one && 'metrics' in one,
        JSON.stringify(one));

  // a non-streaming completion: shape, usage that adds up, JSON content type
  const { data: c, response } = await client.chat.completions
    .create({ model, messages: msgs, max_tokens: 24, temperature: 0.8, seed: 7 })
    .withResponse();
  check('non-streaming content type', (response.headers.get('content-type') || '').startsWith('application/json'),
        response.headers.get('content-type'));
  check('non-streaming shape', c.object === 'chat.completion' && c.choices.length === 1 &&
        c.choices[0].message.role === 'assistant' && typeof c.choices[0].message.content === 'string' &&
        ['stop', 'length'].includes(c.choices[0].finish_reason) && c.model === model && c.id.startsWith('chatcmpl-'),
        JSON.stringify(c));
  check('usage adds up', c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0 &&
        c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens, JSON.stringify(c.usage));

  // streaming = non-streaming at the same seed; first delta has the role, last chunk the reason
  const s = await client.chat.completions.create({
    model, messages: msgs, max_tokens: 24, temperature: 0.8, seed: 7, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '', first = null, finish = null, usage = null, nchunks = 0;
  for await (const ch of s) {
    nchunks++;
    if (ch.usage) usage = ch.usage;
    if (!ch.choices.length) continue;
    if (first === null) first = ch.choices[0].delta;
    text += ch.choices[0].delta.content ?? '';
    if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
  }
  check('stream equals non-stream', text === c.choices[0].message.content,
        `${JSON.stringify(text)} vs ${JSON.stringify(c.choices[0].message.content)}`);
  check('stream first delta has the role', first && first.role === 'assistant', JSON.stringify(first));
  check('stream finish_reason', finish === c.choices[0].finish_reason, `${finish}`);
  check('stream include_usage', usage && usage.completion_tokens === c.usage.completion_tokens &&
        usage.prompt_tokens === c.usage.prompt_tokens, JSON.stringify(usage));

  // chat.completions.stream() and finalChatCompletion()
  const runner = client.chat.completions.stream({ model, messages: msgs, max_tokens: 16, temperature: 0.8, seed: 7 });
  let deltas = '';
  runner.on('content', (d) => { deltas += d; });
  const fin = await runner.finalChatCompletion();
  check('stream() finalChatCompletion', fin.choices[0].message.content === deltas && deltas.length > 0 &&
        c.choices[0].message.content.startsWith(deltas.slice(0, 1)), JSON.stringify(fin));

  // max_tokens 5 -> length, 5 completion tokens
  const five = await client.chat.completions.create({ model, messages: msgs, max_tokens: 5, temperature: 0.8, seed: 11 });
  check('max_tokens 5', five.choices[0].finish_reason === 'length' && five.usage.completion_tokens === 5,
        JSON.stringify(five));

  // stop strings never in the output (non-streaming and streaming)
  const long = await client.chat.completions.create({ model, messages: msgs, max_tokens: 48, temperature: 0.8, seed: 3 });
  const full = long.choices[0].message.content;
  let stop = null;
  for (let i = 6; i + 2 <= full.length && !stop; i++) {
    const t = full.slice(i, i + 2);
    if (/^[\x20-\x7e]{2}$/.test(t)) stop = t;
  }
  if (!stop) check('stop strings', false, `no stop candidate in ${JSON.stringify(full)}`);
  else {
    const want = full.slice(0, full.indexOf(stop));
    const cut = await client.chat.completions.create({ model, messages: msgs, max_tokens: 48, temperature: 0.8, seed: 3, stop: [stop] });
    check('stop string excluded', cut.choices[0].message.content === want && cut.choices[0].finish_reason === 'stop',
          `${JSON.stringify(stop)}: ${JSON.stringify(cut.choices[0].message.content)} vs ${JSON.stringify(want)}`);
    const cs = await client.chat.completions.create({ model, messages: msgs, max_tokens: 48, temperature: 0.8, seed: 3, stop, stream: true });
    let st = '';
    for await (const ch of cs) st += ch.choices[0]?.delta?.content ?? '';
    check('stop string excluded when streaming', st === want, `${JSON.stringify(st)} vs ${JSON.stringify(want)}`);
  }

  // n: 3
  const three = await client.chat.completions.create({ model, messages: msgs, max_tokens: 8, n: 3, seed: 5 });
  check('n 3', JSON.stringify(three.choices.map((x) => x.index)) === '[0,1,2]' &&
        three.usage.completion_tokens === three.choices.reduce((a, x) => a, 0) + three.usage.completion_tokens,
        JSON.stringify(three.choices.map((x) => x.index)));

  // logprobs: one entry per completion token, top_logprobs of the asked size
  const lp = await client.chat.completions.create({ model, messages: msgs, max_tokens: 12, seed: 2, logprobs: true, top_logprobs: 3 });
  const entries = lp.choices[0].logprobs?.content ?? [];
  check('logprobs count', entries.length === lp.usage.completion_tokens &&
        entries.every((e) => e.logprob <= 0 && e.top_logprobs.length === 3 && Array.isArray(e.bytes)),
        `${entries.length} vs ${lp.usage.completion_tokens}`);

  // response_format json_schema: the output parses and validates
  const schema = {
    type: 'object',
    properties: { colour: { type: 'string', maxLength: 12 }, count: { type: 'integer' }, ok: { type: 'boolean' } },
    required: ['colour', 'count', 'ok'],
    additionalProperties: false,
  };
  const js = await client.chat.completions.create({
    model, messages: msgs, max_tokens: 120, seed: 4,
    response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
  });
  let parsed = null;
  try { parsed = JSON.parse(js.choices[0].message.content); } catch { /* checked below */ }
  check('json_schema parses and validates', parsed && typeof parsed.colour === 'string' && parsed.colour.length <= 12 &&
        Number.isInteger(parsed.count) && typeof parsed.ok === 'boolean' && Object.keys(parsed).length === 3,
        js.choices[0].message.content);

  // a Structured Outputs schema with $defs, anyOf, enum, pattern, format and bounds, streamed:
  // the finished answer validates under Ajv (an independent validator)
  const rich = {
    type: 'object',
    properties: {
      id: { type: 'string', format: 'uuid' },
      when: { type: 'string', format: 'date-time' },
      code: { type: 'string', pattern: '^[A-Z]{3}-\\d{2}$' },
      level: { enum: ['low', 'high'] },
      score: { type: 'number', minimum: 0, maximum: 1 },
      owner: { anyOf: [{ $ref: '#/$defs/person' }, { type: 'null' }] },
    },
    required: ['id', 'when', 'code', 'level', 'score', 'owner'],
    additionalProperties: false,
    $defs: {
      person: {
        type: 'object',
        properties: { name: { type: 'string', maxLength: 10 }, age: { type: ['integer', 'null'], minimum: 0, maximum: 150 } },
        required: ['name', 'age'],
        additionalProperties: false,
      },
    },
  };
  for (const seed of [1, 2]) {
    const rs = client.chat.completions.stream({
      model, messages: msgs, max_tokens: 200, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'ticket', schema: rich, strict: true } },
    });
    const fin = await rs.finalChatCompletion();
    const text = fin.choices[0].message.content;
    let value = null;
    try { value = JSON.parse(text); } catch { /* checked below */ }
    const validate = ajv.compile(rich);
    check(`rich json_schema stream seed ${seed} stops and validates (Ajv)`,
          fin.choices[0].finish_reason === 'stop' && value !== null && validate(value),
          `${fin.choices[0].finish_reason}: ${text} ${ajv.errorsText(validate.errors)}`);
  }

  // errors: the right classes, 4xx not retried
  const bad = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong-key-0123456789', fetch: countingFetch });
  for (const [name, fn, cls] of [
    ['wrong key', () => bad.chat.completions.create({ model, messages: msgs }), OpenAI.AuthenticationError],
    ['unknown model', () => client.chat.completions.create({ model: 'main.demo.nope', messages: msgs }), OpenAI.NotFoundError],
    ['bad temperature', () => client.chat.completions.create({ model, messages: msgs, temperature: 7 }), OpenAI.BadRequestError],
    ['strict schema without additionalProperties', () => client.chat.completions.create({
      model, messages: msgs,
      response_format: { type: 'json_schema', json_schema: { name: 'x', strict: true, schema: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] } } },
    }), OpenAI.BadRequestError],
  ]) {
    const before = calls;
    let err = null;
    try { await fn(); } catch (e) { err = e; }
    check(`${name} error class`, err instanceof cls, `${err?.constructor?.name}: ${err?.message}`);
    check(`${name} not retried`, calls - before === 1, `${calls - before} calls`);
    if (name === 'unknown model') check('unknown model param', err?.param === 'model', JSON.stringify(err?.error));
  }

  // aborting a stream after 3 chunks frees its slot within a second
  const labels = `model="${(await client.models.retrieve(model)).id.includes('/') ? model : model}"`;
  const ab = await client.chat.completions.create({ model, messages: msgs, max_tokens: 200, temperature: 1, seed: 9, stream: true });
  let k = 0;
  for await (const ch of ab) {
    void ch;
    if (++k === 3) { ab.controller.abort(); break; }
  }
  const t0 = Date.now();
  let freed = false, used = NaN;
  const loadedId = ids.find((x) => x.startsWith(model + '/')) ?? model;
  while (Date.now() - t0 < 1000) {
    used = await metricValue('ftune_kv_slots_used', `model="${model.includes('/') ? model : loadedId}"`);
    if (used === 0) { freed = true; break; }
    await new Promise((r) => setTimeout(r, 20));
  }
  void labels;
  check('abort frees the slot within 1 s', freed, `slots used ${used} after ${Date.now() - t0} ms`);
  console.log(`abort: slot free after ${Date.now() - t0} ms`);

  // 16 concurrent streams, each equal to its non-streaming twin
  const seeds = [...Array(16).keys()].map((i) => 100 + i);
  const t1 = Date.now();
  const streamed = await Promise.all(seeds.map(async (seed) => {
    const st = await client.chat.completions.create({ model, messages: msgs, max_tokens: 20, temperature: 0.9, seed, stream: true });
    let t = '', f = null;
    for await (const ch of st) {
      t += ch.choices[0]?.delta?.content ?? '';
      f = ch.choices[0]?.finish_reason ?? f;
    }
    return { t, f };
  }));
  const ms = Date.now() - t1;
  let same = 0;
  for (let i = 0; i < seeds.length; i++) {
    const ref = await client.chat.completions.create({ model, messages: msgs, max_tokens: 20, temperature: 0.9, seed: seeds[i] });
    if (ref.choices[0].message.content === streamed[i].t && ref.choices[0].finish_reason === streamed[i].f) same++;
  }
  check('16 concurrent streams complete correctly', same === 16, `${same}/16 equal their non-streaming twins`);
  console.log(`16 concurrent streams: ${ms} ms`);

  // legacy completions
  const cp = await client.completions.create({ model, prompt: 'Once upon', max_tokens: 6, temperature: 0, logprobs: 2 });
  check('completions', cp.object === 'text_completion' && typeof cp.choices[0].text === 'string' &&
        cp.usage.completion_tokens === cp.choices[0].logprobs.tokens.length, JSON.stringify(cp));
}

main().then(() => {
  console.log(failed ? `${failed} failed` : 'all passed');
  process.exit(failed ? 1 : 0);
}, (e) => {
  console.log(`FAIL exception: ${e?.stack ?? e}`);
  process.exit(1);
});
