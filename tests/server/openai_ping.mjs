// tests/server/openai_ping.mjs: a /v1 stream that waits behind another request (its first
// token delayed, the server sending `: ping` comments meanwhile) parses in the real `openai`
// client, and its text equals the same request answered without streaming. Run by
// tests/server/test_v1.c (v1_pings_while_queued), against a server with one slot and pings
// every few milliseconds: node tests/server/openai_ping.mjs BASE_URL TOKEN MODEL
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../tools/npm/package.json'));
const OpenAI = require('openai').default ?? require('openai');

const [base, token, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: token, timeout: 60000 });
const messages = [{ role: 'user', content: 'hi' }];
const blocker = client.completions.create({ model, prompt: 'hello', max_tokens: 200, n: 8, seed: 1 });
await new Promise((r) => setTimeout(r, 30));
const t0 = Date.now();
const stream = await client.chat.completions.create({ model, messages, max_tokens: 6, seed: 3, stream: true });
let text = '', finish = null, chunks = 0;
for await (const ch of stream) {
  chunks++;
  text += ch.choices[0]?.delta?.content ?? '';
  finish = ch.choices[0]?.finish_reason ?? finish;
}
const waited = Date.now() - t0;
await blocker;
const plain = await client.chat.completions.create({ model, messages, max_tokens: 6, seed: 3 });
const ok = text === plain.choices[0].message.content && finish === plain.choices[0].finish_reason && chunks > 0;
console.log(`${ok ? 'ok' : 'FAIL'} queued stream parsed by openai (${chunks} chunks after ${waited} ms): ` +
            `${JSON.stringify(text)} vs ${JSON.stringify(plain.choices[0].message.content)}`);
process.exit(ok ? 0 : 1);
