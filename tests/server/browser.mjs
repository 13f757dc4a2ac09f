// tests/server/browser.mjs: the web UI in a real browser. npm playwright-core drives Debian's
// Chromium (/usr/bin/chromium, headless, a fresh profile; no browser is ever downloaded) against
// `ftune serve` on a fresh FTUNE_HOME that holds a real completed run (a tiny model trained by
// `ftune create`). Checks: every page loads without console errors and without a request leaving
// localhost; the run page's loss chart is drawn (non-blank pixels) with exactly the points of
// /api/runs/{name}/metrics; its events list equals /api/runs/{name}/events; an invalid field in
// the create form shows its inline error; the playground answers through the server's real /v1 as the
// API does, says when /v1 is missing, and against an
// OpenAI-shaped stand-in for /v1 streams a chat reply chunk by chunk; the token dialog of a
// token-protected server. Saves a screenshot of each page into ARTIFACTS (argv[3]).
//
// Usage: node tests/server/browser.mjs FTUNE_BIN WORKDIR ARTIFACTS   (run by tests/server/test_browser.c)
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.resolve('tools/npm/package.json'));
const { chromium } = require('playwright-core');

const [ftune, work, artifacts] = process.argv.slice(2).map((p) => path.resolve(p));
fs.mkdirSync(artifacts, { recursive: true });
const home = path.join(work, 'home');
const env = { ...process.env, FTUNE_HOME: home, USER: 'tester', OMP_NUM_THREADS: '1' };
let failures = 0;
const fail = (msg) => { failures++; console.error(`FAIL: ${msg}`); };
const check = (cond, msg) => { if (!cond) fail(msg); };
const log = (msg) => console.error(`  ${msg}`);

// ---------------------------------------------------------------- a real completed run
const TEMPLATE = "{% for message in messages %}{% if message['role'] == 'user' %}" +
  "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}" +
  "{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

function setupModelAndData() {
  const tok = path.join(work, 'tok');
  fs.mkdirSync(tok, { recursive: true });
  fs.copyFileSync('tests/fixtures/tok/mistral-7b-v0.1/tokenizer.json', path.join(tok, 'tokenizer.json'));
  fs.writeFileSync(path.join(tok, 'tokenizer_config.json'), JSON.stringify({
    bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true, add_eos_token: false, chat_template: TEMPLATE,
  }));
  execFileSync(ftune, ['init-model', '--out', path.join(work, 'model'), '--vocab-size', '32000', '--hidden-size', '16',
    '--intermediate-size', '32', '--layers', '1', '--heads', '2', '--tie-embeddings', '--max-position-embeddings', '256',
    '--tokenizer', tok, '--seed', '1'], { env, stdio: 'pipe' });
  const people = ['Maria', 'John', 'Aisha', 'Kenji'], cities = ['Paris', 'Lima', 'Oslo', 'Rome'];
  const rows = [];
  for (let i = 0; i < 56; i++) {
    rows.push(JSON.stringify({ messages: [
      { role: 'user', content: `Where is ${people[i % 4]}? ${people[i % 4]} went to ${cities[(i >> 2) % 4]}.` },
      { role: 'assistant', content: cities[(i >> 2) % 4] }] }));
  }
  fs.writeFileSync(path.join(work, 'train.jsonl'), rows.slice(0, 48).join('\n') + '\n');
  fs.writeFileSync(path.join(work, 'eval.jsonl'), rows.slice(48).join('\n') + '\n');
  // a file with a broken record, for the form's inline data errors
  fs.writeFileSync(path.join(work, 'bad.jsonl'), rows[0] + '\n{"messages": [{"role": "user", "content": "hi"}]}\n');
}

function trainRun(name) {
  execFileSync(ftune, ['create', '--model', path.join(work, 'model'), '--train-data-path', path.join(work, 'train.jsonl'),
    '--eval-data-path', path.join(work, 'eval.jsonl'), '--register-to', 'main.test.browser', '--name', name,
    '--learning-rate', '1e-3', '--global-batch-size', '4', '--micro-batch-size', '2', '--context-length', '64',
    '--threads', '1', '--seed', '5', '--training-duration', '8ba', '--save-interval', '4ba',
    '--eval-prompt', 'Where is Maria? Maria went to Oslo.', '--eval-max-new-tokens', '4', '--quiet'], { env, stdio: 'pipe' });
}

// ---------------------------------------------------------------- the server
function serve(extraArgs) {
  return new Promise((resolve, reject) => {
    const p = spawn(ftune, ['serve', '--port', '0', ...extraArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening (\d+)/);
      if (m) resolve({ proc: p, base: `http://127.0.0.1:${m[1]}` });
    });
    p.stderr.on('data', () => {});
    p.on('exit', (code) => reject(new Error(`ftune serve exited ${code}`)));
  });
}

async function getJSON(base, p, token) {
  const r = await fetch(base + p, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return r.json();
}

// A stand-in for the OpenAI-compatible /v1 of `ftune serve` (GET /v1/models, POST
// /v1/chat/completions with stream: true as chat.completion.chunk events and data: [DONE]), with
// a pause between chunks so that a client that renders as they come shows part of the reply.
function v1StandIn() {
  const chunks = ['Maria ', 'went ', 'to ', 'Oslo', '.'];
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', async () => {
      if (req.url === '/v1/models') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'main.test.browser/1', object: 'model', owned_by: 'ftune' }] }));
        return;
      }
      requests.push(JSON.parse(body || '{}'));
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      const frame = (delta, finish) => `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk',
        created: 0, model: 'main.test.browser/1', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(frame({ role: 'assistant' }, null));
      for (const c of chunks) {
        await new Promise((r) => setTimeout(r, 300));
        res.write(frame({ content: c }, null));
      }
      res.write(frame({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () =>
    resolve({ server, requests, reply: chunks.join(''), base: `http://127.0.0.1:${server.address().port}` })));
}

// ---------------------------------------------------------------- the browser
function watch(page, label) {
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${label}: console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${label}: page error: ${e.message}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!['127.0.0.1', 'localhost'].includes(u.hostname) && u.protocol !== 'data:')
      problems.push(`${label}: a request left localhost: ${r.url()}`);
  });
  return problems;
}

async function shot(page, name) {
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/* How many pixels of the canvas are painted (not transparent). */
const paintedPixels = (page, sel) => page.$eval(sel, (c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
});

async function main() {
  setupModelAndData();
  const RUN = 'chat-browser-done';
  trainRun(RUN);
  const { proc, base } = await serve([]);
  const profile = fs.mkdtempSync(path.join(work, 'chromium-profile-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    viewport: { width: 1280, height: 900 },
  });
  const problems = [];
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    problems.push(...watch(page, 'ui'));

    // Runs
    await page.goto(`${base}/#/runs`);
    await page.waitForSelector(`tr[data-run="${RUN}"] .badge[data-status="COMPLETED"]`, { timeout: 15000 });
    const cells = await page.$$eval(`tr[data-run="${RUN}"] td`, (tds) => tds.map((t) => t.textContent));
    check(cells[0] === RUN && cells[1] === 'COMPLETED' && cells[2].includes('100%'), `runs row: ${cells}`);
    check(/^\d+\.\d{4}$/.test(cells[7]), `runs row shows the final loss: ${cells[7]}`);
    await page.selectOption('#status-filter', 'FAILED');
    await page.waitForFunction(() => document.querySelectorAll('#runs-table tbody tr').length === 0);
    await page.selectOption('#status-filter', '');
    await page.waitForSelector(`tr[data-run="${RUN}"]`);
    await shot(page, 'ui-runs.png');

    // Run page: charts equal the API's metrics, events equal the API's events
    await page.click(`tr[data-run="${RUN}"] a`);
    await page.waitForSelector('#run-name');
    await page.waitForFunction(() => {
      const c = document.querySelector('#chart-loss canvas');
      return c && c.dataset.points && JSON.parse(c.dataset.points).length > 0;
    }, null, { timeout: 15000 });
    const api = await getJSON(base, `/api/runs/${RUN}/metrics?name=loss`);
    const want = api.data.filter((m) => m.value !== null).map((m) => [m.step, m.value]);
    const got = JSON.parse(await page.$eval('#chart-loss canvas', (c) => c.dataset.points));
    check(want.length >= 8 && JSON.stringify(got) === JSON.stringify(want),
      `loss chart points ${JSON.stringify(got)} != API ${JSON.stringify(want)}`);
    const painted = await paintedPixels(page, '#chart-loss canvas');
    check(painted > 2000, `the loss chart is blank (${painted} painted pixels)`);
    const evalPts = JSON.parse(await page.$eval('#chart-eval canvas', (c) => c.dataset.points));
    check(evalPts.length >= 2, `eval loss chart has ${evalPts.length} points`);
    const lrPts = JSON.parse(await page.$eval('#chart-lr canvas', (c) => c.dataset.points));
    check(lrPts.length === want.length, `lr chart has ${lrPts.length} points`);
    const evApi = (await getJSON(base, `/api/runs/${RUN}/events`)).data.map((e) => `${e.seq} ${e.type}`);
    await page.waitForFunction((n) => document.querySelectorAll('#events-table tr').length >= n, evApi.length);
    const evUi = await page.$$eval('#events-table tr', (rows) => rows.map((r) => `${r.dataset.seq} ${r.children[2].textContent}`));
    check(JSON.stringify(evUi.slice().reverse()) === JSON.stringify(evApi), `events ${evUi} != API ${evApi}`);
    check(await page.$eval('#run-status', (e) => e.textContent.includes('main.test.browser')), 'registered model shown');
    check((await page.$$('#run-evals .gen')).length >= 1, 'eval prompt generations shown');
    check((await page.$$('#run-checkpoints tbody tr')).length >= 1, 'checkpoints shown');
    check(await page.$('#delete-run') !== null && await page.$('#cancel-run') === null, 'actions of a completed run');
    await shot(page, 'ui-run.png');

    // Create form: an invalid data file shows its file:line:column inline (Check the data)
    await page.goto(`${base}/#/create`);
    await page.waitForSelector('#create-form');
    await page.fill('#f-model', path.join(work, 'model'));
    await page.fill('#f-train_data_path', path.join(work, 'bad.jsonl'));
    await page.fill('#f-register_to', 'main.test');
    await page.click('#check-data');
    await page.waitForSelector('#error-train_data_path:not([hidden]) li', { timeout: 20000 });
    const issue = await page.$eval('#error-train_data_path li', (e) => e.textContent);
    check(issue.includes('bad.jsonl:2:'), `inline data error: ${issue}`);
    // a missing required field
    await page.fill('#f-register_to', '');
    await page.click('#create-submit');
    await page.waitForSelector('#error-register_to:not([hidden])');
    check((await page.$eval('#error-register_to', (e) => e.textContent)).includes('required'), 'required field error');
    await page.click('#advanced summary');
    await shot(page, 'ui-create.png');

    // Create a run through the form and watch it complete; its chart equals the API's metrics
    await page.goto(`${base}/#/registry`);
    await page.waitForSelector('#registry-table');
    await page.goto(`${base}/#/create`);
    await page.waitForSelector('#create-form');
    await page.fill('#f-model', path.join(work, 'model'));
    await page.fill('#f-train_data_path', path.join(work, 'train.jsonl'));
    await page.fill('#f-register_to', 'main.test.form');
    await page.fill('#f-eval_data_path', path.join(work, 'eval.jsonl'));
    await page.fill('#f-eval_prompts', 'Where is Maria? Maria went to Oslo.');
    await page.fill('#f-training_duration', '8ba');
    await page.fill('#f-learning_rate', 'abc');
    await page.fill('#f-context_length', '64');
    await page.$eval('#advanced', (d) => { d.open = true; });
    await page.fill('#f-name', 'form-run');
    await page.fill('#f-global_batch_size', '4');
    await page.fill('#f-micro_batch_size', '2');
    await page.fill('#f-threads', '1');
    await page.fill('#f-save_interval', '4ba');
    await page.fill('#f-eval_max_new_tokens', '4');
    // Check the data: the report and the run's memory plan against this machine's memory
    await page.click('#check-data');
    await page.waitForSelector('#check-memory', { timeout: 20000 });
    const memText = await page.$eval('#check-memory', (e) => e.textContent);
    check(/predicted peak .* available — fits$/.test(memText), `memory plan line: ${memText}`);
    await page.$eval('#check-panel', (e) => e.scrollIntoView());
    await shot(page, 'ui-create-check.png');
    await page.click('#create-submit');
    // an invalid value comes back from the API's (the CLI's) validation, under its field
    await page.waitForSelector('#error-learning_rate:not([hidden])', { timeout: 20000 });
    const lrErr = await page.$eval('#error-learning_rate', (e) => e.textContent);
    check(lrErr.includes('abc'), `inline learning rate error: ${lrErr}`);
    await shot(page, 'ui-create-error.png');
    await page.fill('#f-learning_rate', '1e-3');
    // a run that cannot fit in memory is refused with the numbers, under the memory limit field
    await page.fill('#f-memory_limit', '16M');
    await page.click('#create-submit');
    await page.waitForSelector('#error-memory_limit:not([hidden])', { timeout: 20000 });
    const memErr = await page.$eval('#error-memory_limit', (e) => e.textContent);
    check(/does not fit in memory/.test(memErr) && /16(\.0+)? MiB/.test(memErr), `inline memory error: ${memErr}`);
    await page.$eval('#field-memory_limit', (e) => e.scrollIntoView({ block: 'center' }));
    await shot(page, 'ui-create-memory.png');
    await page.fill('#f-memory_limit', '');
    await page.click('#create-submit');
    await page.waitForFunction(() => location.hash === '#/runs/form-run', null, { timeout: 30000 });
    await page.waitForSelector('#run-name');
    await page.waitForSelector('.badge[data-status="COMPLETED"]', { timeout: 120000 });
    await page.waitForFunction(() => {
      const c = document.querySelector('#chart-loss canvas');
      return c && c.dataset.points && JSON.parse(c.dataset.points).length === 8;
    }, null, { timeout: 15000 });
    const fm = (await getJSON(base, '/api/runs/form-run/metrics?name=loss')).data.map((m) => [m.step, m.value]);
    const fg = JSON.parse(await page.$eval('#chart-loss canvas', (c) => c.dataset.points));
    check(JSON.stringify(fm) === JSON.stringify(fg), `form run chart ${JSON.stringify(fg)} != API ${JSON.stringify(fm)}`);
    check(await paintedPixels(page, '#chart-loss canvas') > 2000, 'the form run\'s loss chart is blank');
    const fe = (await getJSON(base, '/api/runs/form-run/events')).data.map((e) => `${e.seq} ${e.type}`);
    await page.waitForFunction((n) => document.querySelectorAll('#events-table tr').length >= n, fe.length);
    const fu = await page.$$eval('#events-table tr', (rows) => rows.map((r) => `${r.dataset.seq} ${r.children[2].textContent}`));
    check(JSON.stringify(fu.slice().reverse()) === JSON.stringify(fe), `form run events ${fu} != API ${fe}`);
    await shot(page, 'ui-run-created.png');

    // Cancel a running run from its page
    const long = await fetch(`${base}/api/runs`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: path.join(work, 'model'), train_data_path: path.join(work, 'train.jsonl'),
        register_to: 'main.test', name: 'long-run', training_duration: '2000ba', learning_rate: 1e-3, context_length: 64,
        global_batch_size: 4, micro_batch_size: 2, threads: 1, save_interval: '10ba', keep_checkpoints: 1 }) });
    check(long.status === 201, `POST /api/runs: ${long.status}`);
    await page.goto(`${base}/#/runs/long-run`);
    await page.waitForSelector('.badge[data-status="RUNNING"]', { timeout: 60000 });
    await page.waitForFunction(() => {
      const c = document.querySelector('#chart-loss canvas');
      return c && c.dataset.points && JSON.parse(c.dataset.points).length >= 3;
    }, null, { timeout: 30000 });
    await shot(page, 'ui-run-live.png');
    await page.click('#cancel-run');
    await page.waitForSelector('.badge[data-status="STOPPED"]', { timeout: 60000 });
    check(await page.$('#resume-run') !== null, 'a stopped run offers resume');
    const lr = await getJSON(base, '/api/runs/long-run');
    check(lr.status === 'STOPPED' && lr.details === 'cancelled', `long-run after cancel: ${lr.status} ${lr.details}`);
    await shot(page, 'ui-run-cancelled.png');

    // Registry
    await page.goto(`${base}/#/registry/main.test.browser`);
    await page.waitForSelector('#registry-detail table');
    check(await page.$eval('#registry-detail', (e, run) => e.textContent.includes(run), RUN), 'registry shows the source run');
    await shot(page, 'ui-registry.png');

    // Playground on this server: /v1 answers, so the page is enabled and shows no note
    await page.goto(`${base}/#/playground?model=main.test.browser/1`);
    await page.waitForSelector('#pg-model:not([disabled])');
    check(!(await page.$('#playground-note')), 'the playground is enabled: /v1 answers');
    await shot(page, 'ui-playground.png');

    // The real /v1 of this server: a greedy reply streamed into the page equals the same request
    // asked without streaming through the API.
    await page.fill('#pg-temperature', '0');
    await page.fill('#pg-max-tokens', '8');
    await page.fill('#pg-input', 'Where is Maria?');
    await page.click('#pg-send');
    await page.waitForSelector('.msg-assistant:not(.streaming)', { timeout: 60000 });
    const realReply = await page.$eval('.msg-assistant .text', (e) => e.textContent);
    const direct = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'main.test.browser/1', messages: [{ role: 'user', content: 'Where is Maria?' }],
        temperature: 0, max_tokens: 8 }),
    }).then((r) => r.json());
    const directText = direct && direct.choices && direct.choices[0] ? direct.choices[0].message.content : undefined;
    check(directText !== undefined && realReply === directText,
      `playground reply through the real /v1 "${realReply}" != the API's "${directText}"`);
    await shot(page, 'ui-playground-real.png');

    // Playground against an OpenAI-shaped /v1 (a stand-in served on 127.0.0.1 until /v1 is in
    // ftune serve): the request is a streamed chat completion with the history, and the reply
    // appears chunk by chunk, ending with the whole text.
    const mock = await v1StandIn();
    try {
      await page.route('**/v1/**', (route) => route.continue({ url: mock.base + new URL(route.request().url()).pathname }));
      await page.goto(`${base}/#/runs`);
      await page.goto(`${base}/#/playground?model=main.test.browser/1`);
      await page.waitForSelector('#pg-input:not([disabled])');
      check(await page.$('#playground-note') === null, 'no /v1 note when /v1 answers');
      check(!(await page.evaluate(() => /^null$/m.test(document.querySelector('main').innerText))), 'a stray "null" on the playground');
      check(await page.$eval('#pg-model', (e) => e.value) === 'main.test.browser/1', 'the model of the link is picked');
      await page.fill('#pg-input', 'Where is Maria?');
      await page.click('#pg-send');
      // part of the reply, while the rest is still coming
      await page.waitForFunction(() => {
        const t = document.querySelector('.msg-assistant.streaming .text');
        return t && t.textContent.length > 0;
      }, null, { timeout: 10000 });
      const partial = await page.$eval('.msg-assistant .text', (e) => e.textContent);
      await shot(page, 'ui-playground-streaming.png');
      await page.waitForSelector('.msg-assistant:not(.streaming)', { timeout: 20000 });
      const full = await page.$eval('.msg-assistant .text', (e) => e.textContent);
      check(full === mock.reply, `playground reply "${full}" != streamed "${mock.reply}"`);
      check(partial.length > 0 && partial.length < full.length && full.startsWith(partial),
        `the reply did not appear chunk by chunk (first seen "${partial}")`);
      const req = mock.requests[0] || {};
      check(req.stream === true && req.model === 'main.test.browser/1' &&
        JSON.stringify(req.messages) === JSON.stringify([{ role: 'user', content: 'Where is Maria?' }]),
        `chat request ${JSON.stringify(req)}`);
      // a second turn sends the whole conversation
      await page.fill('#pg-input', 'And John?');
      await page.press('#pg-input', 'Enter');
      await page.waitForFunction(() => document.querySelectorAll('.msg-assistant:not(.streaming)').length === 2, null, { timeout: 20000 });
      const req2 = mock.requests[1] || {};
      check(JSON.stringify((req2.messages || []).map((m) => m.role)) === JSON.stringify(['user', 'assistant', 'user']) &&
        req2.messages[1].content === mock.reply, `second turn history ${JSON.stringify(req2.messages)}`);
      await shot(page, 'ui-playground-chat.png');
      await page.unroute('**/v1/**');
    } finally {
      mock.server.close();
    }
    await page.close();
  } finally {
    await ctx.close();
    proc.kill('SIGTERM');
  }

  // A token-protected server: the UI asks once, then works.
  const tokenFile = path.join(work, 'token');
  const token = 'browser-test-token-0123456789';
  fs.writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
  const srv2 = await serve(['--token-file', tokenFile]);
  const profile2 = fs.mkdtempSync(path.join(work, 'chromium-profile-'));
  const ctx2 = await chromium.launchPersistentContext(profile2, {
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = ctx2.pages()[0] || await ctx2.newPage();
    const p2 = watch(page, 'token');
    await page.goto(`${srv2.base}/#/runs`);
    await page.waitForSelector('#token-dialog[open]');
    await shot(page, 'ui-token.png');
    await page.fill('#token-input', token);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector(`tr[data-run="${RUN}"]`, { timeout: 15000 });
    // the 401 before the token is a console error Chromium always logs for a failed fetch; only
    // other errors count
    problems.push(...p2.filter((m) => !m.includes('401')));
  } finally {
    await ctx2.close();
    srv2.proc.kill('SIGTERM');
  }
  for (const p of problems) fail(p);
}

main().then(() => {
  console.error(failures ? `browser: ${failures} failure(s)` : 'browser: all checks passed');
  process.exit(failures ? 1 : 0);
}, (e) => {
  console.error(`browser: ${e.stack || e}`);
  process.exit(1);
});
