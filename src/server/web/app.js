/* ftune web UI: runs, run page (live charts and events), create form, registry, playground.
 * Plain JavaScript, no dependencies; everything it loads comes from this server (see the
 * Content-Security-Policy the server sends). Pages are hash routes: #/runs, #/runs/NAME,
 * #/create, #/registry[/NAME], #/playground. */
'use strict';

/* ---------------------------------------------------------------- DOM helpers */

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const $ = (sel, root) => (root || document).querySelector(sel);
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s) || s < 0) return '–';
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
function runDuration(r) {
  if (!r.started) return null;
  const end = r.finished ? Date.parse(r.finished) : Date.now();
  return (end - Date.parse(r.started)) / 1000;
}
function fmtNum(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toFixed(digits === undefined ? 4 : digits);
}
const FINAL = new Set(['COMPLETED', 'FAILED', 'STOPPED']);
/* A model as a list shows it: a local folder by its last two parts (the full path is the cell's
 * title), a hub id or registered name as it is. */
function shortModel(m) {
  if (!m || !m.startsWith('/')) return m || '';
  const parts = m.split('/').filter(Boolean);
  return parts.length > 2 ? `…/${parts.slice(-2).join('/')}` : m;
}
function fmtBytes(b) {
  if (b === null || b === undefined || !isFinite(b)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? (b < 10 ? 2 : 1) : 0)} ${u[i]}`;
}
const badge = (st) => h('span', { class: `badge st-${st}`, 'data-status': st }, st);

function progressBar(r, big) {
  const pct = Math.max(0, Math.min(1, r.progress || 0)) * 100;
  const fill = h('div');
  fill.style.width = `${r.status === 'COMPLETED' ? 100 : pct}%`;
  return h('span', { class: 'progress' }, h('span', { class: big ? 'bar big' : 'bar' }, fill),
    h('span', { class: 'mono' }, `${Math.round(r.status === 'COMPLETED' ? 100 : pct)}%`),
    !FINAL.has(r.status) && r.eta_s !== null && r.eta_s !== undefined ? h('span', { class: 'muted' }, `ETA ${fmtDuration(r.eta_s)}`) : null);
}

/* ---------------------------------------------------------------- the API */

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.field = e.field;
    this.location = e.location;
    this.errors = e.errors;
  }
}

function authHeaders() {
  const t = localStorage.getItem('ftune.token');
  return t ? { Authorization: `Bearer ${t}` } : {};
}

let tokenWaiters = [];
function askToken(message) {
  const dlg = $('#token-dialog');
  $('#token-button').hidden = false;
  const errEl = $('#token-error');
  errEl.hidden = !message;
  errEl.textContent = message || '';
  if (!dlg.open) dlg.showModal();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

async function api(method, path, body, signal) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = { Accept: 'application/json', ...authHeaders() };
    if (method !== 'GET') headers['Content-Type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
    let j = null;
    try { j = await r.json(); } catch (e) { j = null; }
    if (r.status === 401) {
      await askToken(localStorage.getItem('ftune.token') ? 'That token was not accepted.' : '');
      continue;
    }
    if (!r.ok) throw new ApiError(r.status, j);
    return j;
  }
  throw new ApiError(401, { error: { message: 'no valid API token' } });
}

/* Follow a run's events as Server-Sent Events over fetch (an EventSource cannot send the
 * Authorization header). Reconnects after a dropped connection with Last-Event-ID, so nothing
 * is lost or repeated. Calls onEvent(e) per event and onEnd(status) when the run ends. */
async function followEvents(name, after, onEvent, onEnd, signal) {
  let last = after;
  while (!signal.aborted) {
    try {
      const r = await fetch(`/api/runs/${enc(name)}/events?follow=1`, {
        headers: { Accept: 'text/event-stream', 'Last-Event-ID': String(last), ...authHeaders() }, signal,
      });
      if (r.status === 401) { await askToken(''); continue; }
      if (!r.ok) return;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id = null, ev = 'message', data = '';
          for (const line of frame.split('\n')) {
            if (line.startsWith('id: ')) id = Number(line.slice(4));
            else if (line.startsWith('event: ')) ev = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (ev === 'end') { onEnd(JSON.parse(data).status); return; }
          if (id !== null && data && id > last) { last = id; onEvent(JSON.parse(data)); }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await sleep(1000);
  }
}

/* ---------------------------------------------------------------- charts */

/* A tick label with as many decimals as the tick spacing needs. */
function tickLabel(v, step) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) return v.toExponential(Math.max(0, Math.min(4, Math.round(Math.log10(a) - Math.log10(step)))));
  return v.toFixed(Math.max(0, Math.min(8, Math.ceil(-Math.log10(step) + 1e-9))));
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

/* A line chart of `points` ([[step, value], ...]) on a canvas, drawn by hand: axes with ticks,
 * a grid, the line and (when few) the points. The points are kept in data-points for tests. */
function drawChart(box, points, color, yLabel) {
  const canvas = $('canvas', box);
  const empty = $('.empty', box);
  canvas.dataset.points = JSON.stringify(points);
  empty.hidden = points.length > 0;
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth || 360, H = canvas.clientHeight || 220;
  canvas.width = Math.round(W * dpr);
  canvas.height = Math.round(H * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  if (!points.length) return;
  const L = 70, R = 12, T = 10, B = 30;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  g.font = '11px system-ui, sans-serif';
  g.strokeStyle = '#eaeef2';
  g.fillStyle = '#656d76';
  g.lineWidth = 1;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  const yt = niceTicks(y0, y1, 4);
  const ystep = yt.length > 1 ? yt[1] - yt[0] : Math.abs(y1 - y0) || 1;
  for (const t of yt) {
    if (t < y0 || t > y1) continue;
    g.beginPath(); g.moveTo(L, Y(t)); g.lineTo(W - R, Y(t)); g.stroke();
    g.fillText(tickLabel(t, ystep), L - 6, Y(t));
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (const t of niceTicks(x0, x1, 6)) {
    if (t < x0 || t > x1 || Math.round(t) !== t) continue;
    g.beginPath(); g.moveTo(X(t), T); g.lineTo(X(t), H - B); g.stroke();
    g.fillText(String(t), X(t), H - B + 6);
  }
  g.strokeStyle = '#8c959f';
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B); g.stroke();
  g.fillText('step', (L + W - R) / 2, H - 13);
  g.save();
  g.translate(4, (T + H - B) / 2);
  g.rotate(-Math.PI / 2);
  g.fillText(yLabel, 0, 0);
  g.restore();
  g.strokeStyle = color;
  g.lineWidth = 2;
  g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1]))));
  g.stroke();
  if (points.length <= 40) {
    g.fillStyle = color;
    for (const p of points) { g.beginPath(); g.arc(X(p[0]), Y(p[1]), 2.5, 0, 2 * Math.PI); g.fill(); }
  }
}

function chartBox(id, title) {
  return h('div', { class: 'panel' }, h('h2', {}, title),
    h('div', { class: 'chart', id }, h('canvas', { 'aria-label': title }), h('div', { class: 'empty' }, 'no points yet')));
}

/* ---------------------------------------------------------------- pages */

let pageAbort = new AbortController();
const main = () => $('#main');

function showError(e) {
  main().replaceChildren(h('div', { class: 'panel' }, h('h2', {}, 'Something went wrong'),
    h('p', { class: 'error' }, e.message || String(e))));
}

/* Runs: a table with live updates and a status filter. */
async function pageRuns(signal) {
  const filter = h('select', { id: 'status-filter', 'aria-label': 'status filter' },
    h('option', { value: '' }, 'all statuses'),
    ...['PENDING', 'QUEUED', 'STARTING', 'RUNNING', 'TERMINATING', 'COMPLETED', 'FAILED', 'STOPPED']
      .map((s) => h('option', { value: s }, s)));
  filter.value = new URLSearchParams(location.hash.split('?')[1] || '').get('status') || '';
  const body = h('tbody');
  const note = h('p', { class: 'muted' });
  main().replaceChildren(
    h('h1', {}, 'Runs'),
    h('div', { class: 'toolbar' }, filter, h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/create' }, 'Create run')),
    h('div', { class: 'panel' }, h('table', { id: 'runs-table' },
      h('thead', {}, h('tr', {}, ...['Name', 'Status', 'Progress', 'Model', 'Task', 'Created', 'Duration']
        .map((c) => h('th', {}, c)), h('th', { class: 'num' }, 'Final loss'))), body), note));
  filter.addEventListener('change', () => { location.hash = filter.value ? `#/runs?status=${filter.value}` : '#/runs'; });
  while (!signal.aborted) {
    try {
      const q = filter.value ? `?status=${enc(filter.value)}&limit=200` : '?limit=200';
      const list = await api('GET', `/api/runs${q}`, undefined, signal);
      body.replaceChildren(...list.data.map((r) => h('tr', { 'data-run': r.name },
        h('td', { class: 'nowrap' }, h('a', { href: `#/runs/${enc(r.name)}` }, r.name)),
        h('td', {}, badge(r.status)),
        h('td', {}, progressBar(r)),
        h('td', { class: 'mono', title: r.model || '' }, shortModel(r.model)),
        h('td', {}, r.task_type || ''),
        h('td', {}, fmtTime(r.created)),
        h('td', {}, fmtDuration(runDuration(r))),
        h('td', { class: 'num' }, fmtNum(r.final_loss)))));
      note.textContent = list.data.length ? (list.has_more ? 'Showing the newest 200 runs.' : '')
        : `No runs${filter.value ? ' with that status' : ''} yet. Create one with the form, or with \`ftune create\`.`;
    } catch (e) {
      if (signal.aborted) return;
      note.textContent = `Could not load the runs: ${e.message}`;
      note.className = 'error';
    }
    await sleep(2000);
  }
}

/* One run: status, progress, charts, events, evaluations, checkpoints, actions. */
async function pageRun(name, signal) {
  let run;
  try { run = await api('GET', `/api/runs/${enc(name)}`, undefined, signal); } catch (e) {
    if (e.status === 404) {
      main().replaceChildren(h('div', { class: 'panel' }, h('h2', {}, `No run named ${name}`),
        h('p', {}, h('a', { href: '#/runs' }, 'Back to the runs'))));
      return;
    }
    throw e;
  }
  const head = h('h1', {});
  const actions = h('div', { class: 'toolbar', id: 'run-actions' });
  const actionMsg = h('p', { class: 'error', id: 'action-error', hidden: true });
  const status = h('div', { class: 'panel', id: 'run-status' });
  const eventsBody = h('tbody');
  const evals = h('div', { id: 'run-evals' });
  const cks = h('div', { id: 'run-checkpoints' });
  const config = h('div', { id: 'run-config' });
  main().replaceChildren(head, actions, actionMsg, status,
    h('div', { class: 'grid3' }, chartBox('chart-loss', 'Training loss'), chartBox('chart-eval', 'Eval loss'),
      chartBox('chart-lr', 'Learning rate')),
    h('div', { class: 'grid2' },
      h('div', { class: 'panel' }, h('h2', {}, 'Events'), h('div', { class: 'events' },
        h('table', { id: 'events-table' }, eventsBody))),
      h('div', { class: 'panel' }, h('h2', {}, 'Configuration'), config)),
    h('div', { class: 'panel' }, h('h2', {}, 'Evaluations'), evals),
    h('div', { class: 'panel' }, h('h2', {}, 'Checkpoints'), cks));

  const act = async (label, method, path, after) => {
    actionMsg.hidden = true;
    try {
      await api(method, path, method === 'POST' ? {} : undefined);
      if (after) after(); else await refresh();
    } catch (e) {
      actionMsg.hidden = false;
      actionMsg.textContent = `${label}: ${e.message}`;
    }
  };
  const render = (r) => {
    head.replaceChildren(h('span', { class: 'mono', id: 'run-name' }, r.name), badge(r.status));
    actions.replaceChildren(...[
      !FINAL.has(r.status) ? h('button', { id: 'cancel-run', class: 'danger', onclick: () => act('Cancel', 'POST', `/api/runs/${enc(r.name)}/cancel`) }, 'Cancel') : null,
      r.status === 'FAILED' || r.status === 'STOPPED' ? h('button', { id: 'resume-run', onclick: () => act('Resume', 'POST', `/api/runs/${enc(r.name)}/resume`) }, 'Resume') : null,
      FINAL.has(r.status) ? h('button', { id: 'delete-run', class: 'danger', onclick: () => {
        if (confirm(`Delete run ${r.name} and its files? Registered versions stay.`))
          act('Delete', 'DELETE', `/api/runs/${enc(r.name)}`, () => { location.hash = '#/runs'; });
      } }, 'Delete') : null].filter(Boolean));
    status.replaceChildren(
      h('div', { class: 'progress' }, progressBar(r, true)),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Model'), h('dd', { class: 'mono' }, r.model || ''),
        h('dt', {}, 'Task'), h('dd', {}, r.task_type || ''),
        h('dt', {}, 'Created'), h('dd', {}, fmtTime(r.created)),
        h('dt', {}, 'Duration'), h('dd', {}, fmtDuration(runDuration(r))),
        r.details ? [h('dt', {}, 'Details'), h('dd', { class: r.status === 'FAILED' ? 'error' : '' }, r.details)] : null,
        h('dt', {}, 'Registered'), h('dd', {}, r.registered_model
          ? [h('a', { href: `#/registry/${enc(r.registered_model.split('/')[0])}` }, r.registered_model), ' · ',
            h('a', { href: `#/playground?model=${enc(r.registered_model)}` }, 'try it')]
          : h('span', { class: 'muted' }, `not yet (registers to ${r.register_to || '–'})`)),
        h('dt', {}, 'Run folder'), h('dd', { class: 'mono' }, r.run_dir || '')));
    const cfg = r.config || {};
    config.replaceChildren(h('pre', { class: 'mono' }, JSON.stringify(cfg, null, 2)));
    evals.replaceChildren(...(r.evaluations.length ? r.evaluations.map((e) => h('div', { class: 'eval' },
      h('div', {}, h('b', {}, `step ${e.step}`), ` (epoch ${e.epoch}) · eval loss ${fmtNum(e.eval_loss)}`,
        e.eval_token_accuracy !== undefined ? ` · token accuracy ${fmtNum(100 * e.eval_token_accuracy, 1)}%` : ''),
      ...(e.generations || []).map((g) => h('div', { class: 'gen' }, h('div', { class: 'p' }, g.prompt), h('div', {}, g.completion)))))
      : [h('p', { class: 'muted' }, 'No evaluations yet: they run at every checkpoint when the run has eval data or eval prompts.')]));
    cks.replaceChildren(r.checkpoints.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', { class: 'num' }, 'Step'),
      h('th', { class: 'num' }, 'Epoch'), h('th', {}, 'Saved'), h('th', {}, 'Path'))),
    h('tbody', {}, ...r.checkpoints.map((c) => h('tr', {}, h('td', { class: 'mono nowrap' }, c.name), h('td', { class: 'num' }, c.step),
      h('td', { class: 'num' }, c.epoch), h('td', {}, fmtTime(c.created)), h('td', { class: 'mono' }, c.path)))))
      : h('p', { class: 'muted' }, 'No checkpoints yet.'));
  };
  const drawMetrics = async () => {
    const m = await api('GET', `/api/runs/${enc(name)}/metrics`, undefined, signal);
    const by = (n) => m.data.filter((p) => p.name === n && p.value !== null).map((p) => [p.step, p.value]);
    drawChart($('#chart-loss'), by('loss'), '#1f6feb', 'loss');
    drawChart($('#chart-eval'), by('eval_loss'), '#8250df', 'eval loss');
    if (!by('eval_loss').length && run && !run.eval_data_path)
      $('#chart-eval .empty').textContent = 'this run has no eval data (eval_data_path)';
    drawChart($('#chart-lr'), by('lr'), '#1a7f37', 'learning rate');
  };
  const refresh = async () => {
    run = await api('GET', `/api/runs/${enc(name)}`, undefined, signal);
    render(run);
    await drawMetrics();
  };
  render(run);
  await drawMetrics();
  const addEvent = (e) => {
    eventsBody.prepend(h('tr', { class: `lvl-${e.level}`, 'data-seq': e.seq },
      h('td', { class: 'num mono' }, e.seq), h('td', { class: 'mono' }, fmtTime(e.time).slice(11)),
      h('td', { class: 'mono' }, e.type), h('td', {}, e.message)));
  };
  let ended = FINAL.has(run.status);
  followEvents(name, 0, addEvent, () => { ended = true; }, signal);
  window.addEventListener('resize', () => { if (!signal.aborted) drawMetrics().catch(() => {}); }, { signal });
  /* the status, progress and charts refresh while the run is live, once more after it ends */
  for (;;) {
    await sleep(1500);
    if (signal.aborted) return;
    const wasFinal = FINAL.has(run.status);
    try { await refresh(); } catch (e) { if (signal.aborted) return; if (e.status === 404) { location.hash = '#/runs'; return; } }
    if (wasFinal && ended) break;
  }
}

/* The create form: every create() parameter (SPEC §2), required ones marked, advanced folded. */
const FIELDS = [
  { k: 'model', label: 'Model', req: true, hint: 'a local folder, a hub id org/name in the Hugging Face cache, or a registered catalog.schema.name[/version]', list: 'model-options' },
  { k: 'train_data_path', label: 'Training data', req: true, hint: 'JSONL file or folder (chat, instruction), folder of .txt (continued pretraining), Parquet, Delta table c.s.t, /Volumes/…' },
  { k: 'register_to', label: 'Register to', req: true, hint: 'catalog.schema (the model is named after the run) or catalog.schema.name' },
  { k: 'task_type', label: 'Task', type: 'select', options: ['CHAT_COMPLETION', 'INSTRUCTION_FINETUNE', 'CONTINUED_PRETRAIN'], dflt: 'CHAT_COMPLETION' },
  { k: 'eval_data_path', label: 'Eval data', hint: 'same format as the training data (optional)' },
  { k: 'eval_prompts', label: 'Eval prompts', type: 'lines', hint: 'one prompt a line; each gets a sampled completion at every checkpoint' },
  { k: 'training_duration', label: 'Training duration', placeholder: '1ep', hint: 'Nep epochs, Ntok tokens or Nba optimizer steps' },
  { k: 'learning_rate', label: 'Learning rate', type: 'number', placeholder: '5e-7', hint: 'peak learning rate' },
  { k: 'context_length', label: 'Context length', type: 'int', placeholder: 'min(8192, model max)' },
  { k: 'custom_weights_path', label: 'Custom weights', adv: true, hint: 'a checkpoint folder (…/checkpoints/ep2-ba30) or latest pointer of an earlier run' },
  { k: 'experiment_path', label: 'Experiment path', adv: true, placeholder: '/Users/<user>/<run name>' },
  { k: 'name', label: 'Run name', adv: true, placeholder: '<task>-<model>-<6 letters>' },
  { k: 'seed', label: 'Seed', type: 'int', adv: true, placeholder: '17' },
  { k: 'global_batch_size', label: 'Global batch size', type: 'int', adv: true, placeholder: 'automatic' },
  { k: 'micro_batch_size', label: 'Micro batch size', type: 'int', adv: true, placeholder: 'automatic' },
  { k: 'optimizer', label: 'Optimizer', type: 'select', options: ['adamw', 'lion'], dflt: 'adamw', adv: true },
  { k: 'weight_decay', label: 'Weight decay', type: 'number', adv: true, placeholder: '0' },
  { k: 'warmup', label: 'Warmup', adv: true, placeholder: '2%', hint: 'N% of the duration, or Nba / Nep / Ntok' },
  { k: 'grad_clip', label: 'Gradient clip', type: 'number', adv: true, placeholder: '1.0', hint: '0 disables' },
  { k: 'loss_on', label: 'Loss on', type: 'select', options: ['all_assistant', 'last_assistant'], dflt: 'all_assistant', adv: true },
  { k: 'save_interval', label: 'Save interval', adv: true, placeholder: 'every epoch and at the end', hint: 'Nba or Nep' },
  { k: 'keep_checkpoints', label: 'Keep checkpoints', type: 'int', adv: true, placeholder: 'all' },
  { k: 'dtype', label: 'Precision', type: 'select', options: ['fp32', 'bf16', 'auto'], dflt: 'fp32', adv: true, hint: 'bf16: mixed precision (fp32 master weights); auto: the fastest here' },
  { k: 'memory_limit', label: 'Memory limit', adv: true, placeholder: '95% of the available memory', hint: '20G or 80%: the predicted peak must fit, or the run is refused' },
  { k: 'activation_checkpointing', label: 'Activation checkpointing', type: 'select', options: ['auto', 'on', 'off'], dflt: 'auto', adv: true, hint: 'auto: only when needed to fit in memory' },
  { k: 'export_dtype', label: 'Export precision', type: 'select', options: ['auto', 'fp32', 'bf16', 'fp16'], dflt: 'auto', adv: true, hint: 'the registered weights; auto: the base model\'s torch_dtype' },
  { k: 'device', label: 'Device', type: 'select', options: ['cpu'], dflt: 'cpu', adv: true },
  { k: 'threads', label: 'Threads', type: 'int', adv: true, placeholder: 'all cores' },
  { k: 'eval_max_new_tokens', label: 'Eval tokens per prompt', type: 'int', adv: true, placeholder: '100' },
  { k: 'data_prep_cluster_id', label: 'Data prep cluster id', adv: true, hint: 'accepted for compatibility; not needed' },
  { k: 'validate_inputs', label: 'Validate inputs before queueing', type: 'bool', dflt: true, adv: true },
];

function fieldEl(f) {
  const id = `f-${f.k}`;
  let input;
  if (f.type === 'select') input = h('select', { id, name: f.k }, ...f.options.map((o) => h('option', { value: o, selected: o === f.dflt }, o)));
  else if (f.type === 'lines') input = h('textarea', { id, name: f.k, placeholder: 'Summarize: …' });
  else if (f.type === 'bool') input = h('input', { id, name: f.k, type: 'checkbox', checked: f.dflt });
  else input = h('input', { id, name: f.k, type: 'text', placeholder: f.placeholder || '', list: f.list, autocomplete: 'off', inputmode: f.type === 'int' ? 'numeric' : null, required: f.req });
  return h('div', { class: 'field', id: `field-${f.k}` },
    f.type === 'bool' ? h('label', { for: id }, input, ' ', f.label)
      : [h('label', { for: id }, f.label, f.req ? h('span', { class: 'req', title: 'required' }, ' *') : null), input],
    f.hint ? h('div', { class: 'hint' }, f.hint) : null,
    h('div', { class: 'error', id: `error-${f.k}`, hidden: true }));
}

function formValues(form) {
  const body = {};
  for (const f of FIELDS) {
    const el = form.elements[f.k];
    if (f.type === 'bool') { if (el.checked !== f.dflt) body[f.k] = el.checked; continue; }
    const v = el.value.trim();
    if (!v) continue;
    if (f.type === 'select' && v === f.dflt && !f.req) continue;
    if (f.type === 'lines') { const lines = v.split('\n').map((s) => s.trim()).filter(Boolean); if (lines.length) body[f.k] = lines; continue; }
    if (f.type === 'int' && /^-?\d+$/.test(v)) { body[f.k] = Number(v); continue; }
    if (f.type === 'number' && v !== '' && isFinite(Number(v))) { body[f.k] = Number(v); continue; }
    body[f.k] = v; /* a malformed number goes as text: the API names the field */
  }
  return body;
}

function clearErrors(form) {
  for (const el of form.querySelectorAll('.field .error')) { el.hidden = true; el.textContent = ''; }
  for (const el of form.querySelectorAll('.field.invalid')) el.classList.remove('invalid');
  $('#form-error').hidden = true;
  $('#check-result').replaceChildren();
}

function issueLine(i) { return `${i.line ? `${i.file}:${i.line}:${i.column}` : i.file}: ${i.level || 'error'}: ${i.message}`; }

function showFieldError(form, field, message, issues) {
  const box = field && $(`#error-${field}`, form);
  if (!box) {
    const fe = $('#form-error');
    fe.hidden = false;
    fe.textContent = message;
    return;
  }
  box.closest('.field').classList.add('invalid');
  box.hidden = false;
  box.replaceChildren(message, issues && issues.length ? h('ul', { class: 'issues' }, ...issues.slice(0, 50).map((i) => h('li', {}, issueLine(i)))) : '');
  const det = box.closest('details');
  if (det) det.open = true;
  box.closest('.field').scrollIntoView({ block: 'center' });
}

async function pageCreate(signal) {
  const basic = FIELDS.filter((f) => !f.adv), adv = FIELDS.filter((f) => f.adv);
  const models = h('datalist', { id: 'model-options' });
  const check = h('div', { id: 'check-result' });
  const form = h('form', { id: 'create-form', novalidate: true },
    h('div', { class: 'panel' }, h('h2', {}, 'What to train'), ...basic.slice(0, 3).map(fieldEl)),
    h('div', { class: 'panel' }, h('h2', {}, 'Training'), h('div', { class: 'grid2' },
      h('div', {}, ...basic.slice(3, 6).map(fieldEl)), h('div', {}, ...basic.slice(6).map(fieldEl)))),
    h('div', { class: 'panel' }, h('details', { id: 'advanced' }, h('summary', {}, 'Advanced'),
      h('div', { class: 'grid2' }, h('div', {}, ...adv.slice(0, 12).map(fieldEl)), h('div', {}, ...adv.slice(12).map(fieldEl))))),
    models,
    h('p', { class: 'error', id: 'form-error', hidden: true }),
    check,
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'check-data' }, 'Check the data'),
      h('button', { type: 'submit', class: 'primary', id: 'create-submit' }, 'Create run')));
  main().replaceChildren(h('h1', {}, 'Create a run'), form);
  /* The model picker: the catalogue's models present here, other catalogue ids, and registered models. */
  Promise.all([api('GET', '/api/models', undefined, signal), api('GET', '/api/registry', undefined, signal)]).then(([m, r]) => {
    const opts = [];
    for (const x of r.data) opts.push(h('option', { value: x.name }, `registered, latest v${x.latest_version}`));
    for (const x of m.data) opts.push(h('option', { value: x.present ? x.path : x.name }, `${x.name}${x.present ? ' (local)' : ' (not downloaded)'}`));
    models.replaceChildren(...opts);
  }).catch(() => {});

  $('#check-data').addEventListener('click', async () => {
    clearErrors(form);
    const v = formValues(form);
    const body = {};
    for (const k of ['train_data_path', 'model', 'task_type', 'context_length', 'training_duration', 'global_batch_size', 'seed',
      'micro_batch_size', 'optimizer', 'dtype', 'memory_limit', 'activation_checkpointing']) if (v[k] !== undefined) body[k] = v[k];
    check.replaceChildren(h('p', { class: 'muted' }, 'Checking every record…'));
    try {
      const rep = await api('POST', '/api/validate', body, signal);
      const s = rep.summary || {};
      const mem = rep.memory;
      check.replaceChildren(h('div', { class: 'panel', id: 'check-panel' }, h('h2', {}, rep.valid ? 'The data is valid' : 'The data has errors'),
        h('p', {}, `${s.records ?? '?'} records, ${s.samples ?? '?'} samples, ${s.tokens ?? '?'} tokens (${s.trainable_tokens ?? '?'} trainable)` +
          (s.steps_total ? `; ${s.steps_total} steps` : '')),
        mem ? h('p', { id: 'check-memory', class: mem.fits ? '' : 'error' },
          `Memory: predicted peak ${fmtBytes(mem.predicted_peak_bytes)} (weights ${fmtBytes(mem.weights_bytes)}, gradients ${fmtBytes(mem.gradients_bytes)}, ` +
          `optimizer ${fmtBytes(mem.optimizer_bytes)}, activations ${fmtBytes(mem.activations_bytes)}); limit ${fmtBytes(mem.limit_bytes)} of ` +
          `${fmtBytes(mem.available_bytes)} available — ${mem.fits ? 'fits' : 'does not fit'}`) : null));
      if (!rep.valid) showFieldError(form, 'train_data_path', `${rep.errors.length} problem(s):`, rep.errors);
      else if (mem && !mem.fits) showFieldError(form, 'memory_limit', mem.message || 'the run does not fit in memory');
    } catch (e) {
      check.replaceChildren();
      showFieldError(form, e.field === 'path' ? 'train_data_path' : e.field, e.message);
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = formValues(form);
    for (const f of FIELDS) if (f.req && !body[f.k]) { showFieldError(form, f.k, `${f.label} is required`); return; }
    const btn = $('#create-submit');
    btn.disabled = true;
    btn.textContent = 'Validating and creating…';
    try {
      const run = await api('POST', '/api/runs', body, signal);
      location.hash = `#/runs/${enc(run.name)}`;
    } catch (e) {
      showFieldError(form, e.field, e.location && e.location.line ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.message}` : e.message, e.errors);
    } finally {
      btn.disabled = false;
      btn.textContent = 'Create run';
    }
  });
}

/* Registry: registered models; one model's versions with metrics, source run and checkpoint. */
async function pageRegistry(name, signal) {
  const list = await api('GET', '/api/registry', undefined, signal);
  const detail = h('div', { id: 'registry-detail' });
  main().replaceChildren(h('h1', {}, 'Registry'),
    h('div', { class: 'panel' }, list.data.length ? h('table', { id: 'registry-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Model'), h('th', { class: 'num' }, 'Latest version'), h('th', {}, 'Source run'), h('th', {}, 'Registered'))),
      h('tbody', {}, ...list.data.map((m) => h('tr', {},
        h('td', {}, h('a', { href: `#/registry/${enc(m.name)}` }, m.name)), h('td', { class: 'num' }, m.latest_version),
        h('td', {}, m.run ? h('a', { href: `#/runs/${enc(m.run)}` }, m.run) : '–'), h('td', {}, fmtTime(m.created))))))
      : h('p', { class: 'muted' }, 'Nothing registered yet: a completed run registers its model here.')),
    detail);
  if (!name) return;
  const m = await api('GET', `/api/registry/${enc(name)}`, undefined, signal);
  detail.replaceChildren(h('div', { class: 'panel' }, h('h2', {}, m.name),
    h('table', {}, h('thead', {}, h('tr', {}, ...['Version', 'Metrics', 'Source run', 'Checkpoint', 'Path', 'Registered', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, ...m.versions.map((v) => h('tr', {},
        h('td', { class: 'num' }, v.version),
        h('td', { class: 'mono' }, Object.entries(v.metrics || {}).map(([k, x]) => `${k} ${typeof x === 'number' && !Number.isInteger(x) ? fmtNum(x) : x}`).join(' · ') || '–'),
        h('td', { class: 'nowrap' }, v.run ? h('a', { href: `#/runs/${enc(v.run)}` }, v.run) : '–'),
        h('td', { class: 'mono' }, v.checkpoint ? v.checkpoint.split('/').pop() : '–'),
        h('td', { class: 'mono' }, v.path),
        h('td', {}, fmtTime(v.created)),
        h('td', { class: 'nowrap' }, h('a', { href: `#/playground?model=${enc(`${m.name}/${v.version}`)}` }, 'try it'))))))));
}

/* Playground: chat with a registered model through the OpenAI-compatible endpoint,
 * POST /v1/chat/completions with "stream": true: Server-Sent Events whose data lines are
 * chat.completion.chunk objects ({choices: [{delta: {content}}]}), ended by "data: [DONE]".
 * The tokens appear as they arrive; Stop aborts the request. Without /v1 on this server the page
 * says so and shows the terminal command instead. */
async function chatStream(model, messages, params, onDelta, signal) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await fetch('/v1/chat/completions', {
      method: 'POST', signal,
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...authHeaders() },
      body: JSON.stringify({ model, messages, stream: true, ...params }),
    });
    if (r.status === 401) { await askToken(localStorage.getItem('ftune.token') ? 'That token was not accepted.' : ''); continue; }
    if (!r.ok) {
      let j = null;
      try { j = await r.json(); } catch (e) { j = null; }
      throw new ApiError(r.status, j);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '', finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
        const data = frame.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        if (!data) continue;
        if (data === '[DONE]') return finish;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk);
        const c = (chunk.choices || [])[0] || {};
        if (c.delta && c.delta.content) onDelta(c.delta.content);
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    return finish;
  }
  throw new ApiError(401, { error: { message: 'no valid API token' } });
}

async function pagePlayground(signal) {
  const want = new URLSearchParams(location.hash.split('?')[1] || '').get('model') || '';
  const reg = await api('GET', '/api/registry', undefined, signal).catch(() => ({ data: [] }));
  /* /v1 answers 501 on a server without inference: ask /health-style, without a console error */
  let v1models = null;
  const probe = await fetch('/v1/models', { headers: { Accept: 'application/json', ...authHeaders() }, signal }).catch(() => null);
  if (probe && probe.ok) v1models = await probe.json().catch(() => null);
  const v1 = !!(v1models && Array.isArray(v1models.data));
  const ids = v1 ? v1models.data.map((m) => m.id) : reg.data.map((m) => m.name);
  const select = h('select', { id: 'pg-model', 'aria-label': 'model', disabled: !v1 },
    ...(want && !ids.includes(want) ? [h('option', { value: want }, want)] : []),
    ...ids.map((id) => h('option', { value: id, selected: id === want }, id)));
  const chat = h('div', { class: 'chat', id: 'pg-chat', 'aria-live': 'polite' });
  const input = h('textarea', { id: 'pg-input', disabled: !v1, placeholder: 'Say something… (Enter sends, Shift+Enter starts a new line)' });
  const maxTokens = h('input', { id: 'pg-max-tokens', type: 'number', min: '1', max: '4096', value: '128', disabled: !v1 });
  const temperature = h('input', { id: 'pg-temperature', type: 'number', min: '0', max: '2', step: '0.1', value: '0.7', disabled: !v1 });
  const send = h('button', { class: 'primary', id: 'pg-send', disabled: !v1 }, 'Send');
  const stopB = h('button', { id: 'pg-stop', hidden: true }, 'Stop');
  const clear = h('button', { id: 'pg-clear', disabled: !v1 }, 'Clear');
  const status = h('span', { class: 'muted', id: 'pg-status' });
  let history = [];
  let reqAbort = null;
  const bubble = (role, text) => h('div', { class: `msg msg-${role}` }, h('div', { class: 'who' }, role === 'user' ? 'You' : 'Model'), h('div', { class: 'text' }, text));
  const empty = () => chat.replaceChildren(h('p', { class: 'muted' }, v1 ? (ids.length ? 'Pick a model and say something.' : 'No registered models yet: a completed run registers one.') : ''));
  empty();
  async function submit() {
    const text = input.value.trim();
    if (!text || !select.value || reqAbort) return;
    if (!history.length) chat.replaceChildren();
    history.push({ role: 'user', content: text });
    chat.append(bubble('user', text));
    input.value = '';
    const out = bubble('assistant', '');
    out.classList.add('streaming');
    chat.append(out);
    const body = $('.text', out);
    reqAbort = new AbortController();
    const onPage = () => reqAbort && reqAbort.abort();
    signal.addEventListener('abort', onPage);
    send.disabled = true;
    stopB.hidden = false;
    status.textContent = 'generating…';
    let reply = '';
    const t0 = performance.now();
    try {
      const finish = await chatStream(select.value, history, { max_tokens: Number(maxTokens.value) || 128, temperature: Number(temperature.value) }, (d) => {
        reply += d;
        body.textContent = reply;
        chat.scrollTop = chat.scrollHeight;
      }, reqAbort.signal);
      status.textContent = `${finish === 'length' ? 'stopped at max tokens' : 'done'} in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    } catch (e) {
      if (e.name === 'AbortError') status.textContent = 'stopped';
      else {
        status.textContent = '';
        out.append(h('div', { class: 'error' }, e.message || String(e)));
      }
    }
    out.classList.remove('streaming');
    if (reply) history.push({ role: 'assistant', content: reply });
    else history.pop(); /* nothing came back: the question can be asked again */
    signal.removeEventListener('abort', onPage);
    reqAbort = null;
    send.disabled = false;
    stopB.hidden = true;
    input.focus();
  }
  send.addEventListener('click', submit);
  stopB.addEventListener('click', () => reqAbort && reqAbort.abort());
  clear.addEventListener('click', () => { if (!reqAbort) { history = []; empty(); status.textContent = ''; } });
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); submit(); } });
  main().replaceChildren(h('h1', {}, 'Playground'),
    ...(v1 ? [] : [h('div', { class: 'note', id: 'playground-note' },
      'Chatting with a registered model needs the OpenAI-compatible inference endpoint (/v1), which this version of ',
      h('code', {}, 'ftune serve'), ' does not have yet. Until then, try a model from a terminal: ',
      h('code', {}, `ftune generate --model ${want || (reg.data[0] ? reg.data[0].name : 'catalog.schema.name')} --chat --prompt "Hello"`))]),
    h('div', { class: 'panel' },
      h('div', { class: 'toolbar' }, h('label', { for: 'pg-model' }, 'Model'), select,
        h('label', { for: 'pg-max-tokens' }, 'Max tokens'), maxTokens,
        h('label', { for: 'pg-temperature' }, 'Temperature'), temperature),
      chat, input,
      h('div', { class: 'row' }, send, stopB, clear, status)));
  if (v1) input.focus();
}

/* ---------------------------------------------------------------- routing */

async function route() {
  pageAbort.abort();
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  const hash = location.hash || '#/runs';
  const [path] = hash.slice(1).split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === (parts[0] || 'runs'));
  try {
    if (!parts.length || parts[0] === 'runs') {
      document.title = parts[1] ? `${parts[1]} · ftune` : 'Runs · ftune';
      await (parts[1] ? pageRun(parts[1], signal) : pageRuns(signal));
    } else if (parts[0] === 'create') {
      document.title = 'Create run · ftune';
      await pageCreate(signal);
    } else if (parts[0] === 'registry') {
      document.title = 'Registry · ftune';
      await pageRegistry(parts[1], signal);
    } else if (parts[0] === 'playground') {
      document.title = 'Playground · ftune';
      await pagePlayground(signal);
    } else {
      main().replaceChildren(h('div', { class: 'panel' }, h('h2', {}, 'No such page'), h('a', { href: '#/runs' }, 'Runs')));
    }
  } catch (e) {
    if (!signal.aborted && e.name !== 'AbortError') showError(e);
  }
}

function init() {
  $('#token-form').addEventListener('submit', () => {
    localStorage.setItem('ftune.token', $('#token-input').value.trim());
    const w = tokenWaiters;
    tokenWaiters = [];
    w.forEach((r) => r());
  });
  $('#token-button').addEventListener('click', () => askToken(''));
  if (localStorage.getItem('ftune.token')) $('#token-button').hidden = false;
  window.addEventListener('hashchange', route);
  route();
}
document.addEventListener('DOMContentLoaded', init);
