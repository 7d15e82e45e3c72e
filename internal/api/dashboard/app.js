// sluice dashboard: polls /api/v1/status every second and draws it. No
// framework, no external resources; every value goes in as text, never as
// HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'sluice.api-token';
const HISTORY = 600; // samples kept for the charts (10 minutes at 1/s)
const samples = [];
let lastStatus = null;
let needToken = false;

// A token may arrive once in the URL fragment (#token=…), which browsers
// never send to the server; it moves to sessionStorage and out of the
// address bar at once.
(function takeTokenFromFragment() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
})();

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  const t = token();
  if (t) headers['Authorization'] = 'Bearer ' + t;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'same-origin' });
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const err = new Error((data && data.error) || ('HTTP ' + r.status));
    err.status = r.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

// ---------- formatting ----------
function fmtInt(n) { return (n === undefined || n === null) ? '–' : Math.round(n).toLocaleString('en-US'); }
function fmtBytes(n) {
  if (n === undefined || n === null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + u[i];
}
function fmtSecs(s) {
  if (s === undefined || s === null || s < 0) return '–';
  if (s < 1) return (s * 1000).toFixed(0) + ' ms';
  if (s < 60) return s.toFixed(1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + (m % 60) + ' min';
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
}
function fmtPct(p) { return (p === undefined || p === null) ? '–' : p.toFixed(1) + '%'; }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'hidden') e.hidden = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function bar(fraction, cls, label) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  const inner = el('div');
  inner.style.width = (f * 100).toFixed(1) + '%';
  return el('div', { class: 'bar ' + (cls || ''), role: 'progressbar', 'aria-valuenow': (f * 100).toFixed(0), 'aria-valuemin': '0', 'aria-valuemax': '100' }, inner, el('span', {}, label));
}

function sevClass(sev) { return sev === 'critical' ? 'crit' : sev === 'high' ? 'high' : sev === 'warning' ? 'warn' : ''; }

// ---------- rendering ----------
function render(st) {
  lastStatus = st;
  $('slot').textContent = 'slot ' + st.slot + (st.version ? ' · ' + st.version : '');
  const state = $('state');
  state.textContent = st.phase;
  state.className = 'badge ' + (st.phase === 'cut over' ? 'badge-ok' : '');
  $('paused').hidden = !st.paused;
  const reasons = st.throttled || {};
  const throttled = Object.keys(reasons).length > 0;
  $('throttled-badge').hidden = !throttled;
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();

  $('phase').textContent = st.phase + (st.paused ? ' (paused)' : '');
  $('uptime').textContent = 'running ' + fmtSecs(st.uptime_seconds);
  let rows = 0; let est = 0; let rate = 0;
  for (const t of st.tables || []) { rows += t.rows_copied; est += Math.max(t.rows_estimate, t.rows_copied); rate += t.rows_per_second; }
  $('rows-total').textContent = fmtInt(rows);
  const copying = (st.tables || []).some((t) => t.phase !== 'streaming' && t.phase !== 'done');
  const rateText = !copying ? 'copy done' : (st.paused || throttled) ? 'copy held' : fmtInt(rate) + ' rows/s';
  $('rows-rate').textContent = est > 0 ? fmtPct(100 * rows / est) + ' of ~' + fmtInt(est) + ' · ' + rateText : '';
  $('lag').textContent = fmtSecs(st.lag_seconds);
  $('lag-sub').textContent = fmtBytes(st.lag_bytes) + ' behind · p99 ' + fmtSecs(st.lag_p99_seconds);
  $('wal').textContent = fmtBytes(st.wal_retained_bytes);
  const wr = st.readings && st.readings.wal;
  $('wal-sub').textContent = 'most ' + fmtBytes(st.wal_retained_max_bytes) +
    (wr && wr.safe_bytes !== undefined && wr.safe_bytes !== null ? ' · ' + fmtBytes(wr.safe_bytes) + ' before max_slot_wal_keep_size' : '') +
    (wr && wr.status ? ' · ' + wr.status : '');
  $('changes').textContent = fmtInt(st.changes_applied);
  $('lsn').textContent = 'applied ' + st.applied_lsn + ' of ' + st.source_lsn;
  $('throttle').textContent = st.paused ? 'paused' : throttled ? 'held back' : 'none';
  $('throttle-why').textContent = Object.entries(reasons).map(([k, v]) => k + ': ' + v).join(' · ');
  $('throttle').parentElement.className = 'tile' + (throttled || st.paused ? ' warn' : '');

  // worst alert colours the tiles it concerns
  const worst = {};
  for (const a of st.alerts || []) {
    const order = { warning: 1, high: 2, critical: 3 };
    const check = a.check;
    if (!worst[check] || order[a.severity] > order[worst[check]]) worst[check] = a.severity;
  }
  $('lag').parentElement.className = 'tile ' + sevClass(worst.lag);
  $('wal').parentElement.className = 'tile ' + sevClass(worst.wal);

  renderTables(st);
  renderAlerts(st.alerts || []);
  renderReadings(st.readings);
  renderVerify(st.verify);

  const now = Date.now() / 1000;
  // rows/s over the last ~5 s: chunks land in bursts, a per-second rate would jump
  const prev = samples[Math.max(0, samples.length - 5)];
  let rps = 0;
  if (prev && now > prev.t) rps = Math.max(0, (rows - prev.rows) / (now - prev.t));
  samples.push({ t: now, rows, rps, lag: st.lag_seconds || 0 });
  while (samples.length > HISTORY) samples.shift();
  drawChart($('chart-rows'), samples.map((s) => s.rps), $('chart-rows-max'), (v) => fmtInt(v) + ' rows/s');
  $('chart-lag').classList.add('lag');
  drawChart($('chart-lag'), samples.map((s) => s.lag), $('chart-lag-max'), fmtSecs);
}

function renderTables(st) {
  const body = $('tables').tBodies[0];
  body.replaceChildren();
  const held = st.paused ? 'paused' : (Object.keys(st.throttled || {}).length ? 'throttled' : '');
  for (const t of st.tables || []) {
    const est = Math.max(t.rows_estimate, t.rows_copied);
    const done = t.phase === 'streaming' || t.phase === 'done';
    const frac = done ? 1 : (est > 0 ? t.rows_copied / est : 0);
    const name = t.source === t.target ? t.source : t.source + ' → ' + t.target;
    body.append(el('tr', { 'data-table': t.source },
      el('td', {}, name),
      el('td', { class: 'phase' }, t.phase),
      el('td', {}, bar(frac, done ? 'done' : '', done ? 'copied' : fmtPct(100 * frac))),
      el('td', { class: 'num rows' }, fmtInt(t.rows_copied) + (est > 0 ? ' / ' + fmtInt(est) : '')),
      el('td', { class: 'num' }, done || held ? '–' : fmtInt(t.rows_per_second)),
      el('td', { class: 'num' }, done ? '–' : (held || fmtSecs(t.eta_seconds))),
      el('td', { class: 'num' }, fmtInt(t.changes_applied))));
  }
}

function renderAlerts(alerts) {
  const list = $('alerts');
  list.replaceChildren();
  $('alert-count').textContent = alerts.length ? '(' + alerts.length + ' firing)' : '';
  if (!alerts.length) { list.append(el("li", { class: "ok" }, "none: all watched measures are under their thresholds")); return; }
  for (const a of alerts) {
    list.append(el('li', { class: a.severity, 'data-code': a.code },
      el('span', { class: 'sev' }, a.severity), el('strong', {}, a.code), ' ', a.message,
      el('div', { class: 'hint' }, (a.hint || '') + ' · since ' + new Date(a.since).toLocaleTimeString())));
  }
}

function renderReadings(r) {
  const body = $('disks').tBodies[0];
  body.replaceChildren();
  if (r && r.disks && r.disks.length) {
    for (const d of r.disks) {
      const p = d.used_percent;
      const cls = p >= 90 ? 'crit' : p >= 80 ? 'high' : p >= 70 ? 'warn' : '';
      body.append(el('tr', {}, el('td', {}, d.path + ' (' + d.roles.join(', ') + ')'),
        el('td', { class: 'num' }, fmtBytes(d.used_bytes) + ' of ' + fmtBytes(d.total_bytes)),
        el('td', {}, bar(p / 100, cls, fmtPct(p)))));
    }
  } else {
    body.append(el('tr', {}, el('td', { class: 'muted', colspan: '3' }, 'no filesystem watched')));
  }
  const dl = $('stress');
  dl.replaceChildren();
  const s = r && r.stress;
  if (!s) { dl.append(el('dt', {}, 'source'), el('dd', {}, 'not measured yet')); return; }
  const rows = [['active sessions', fmtInt(s.active_sessions)], ['longest query', fmtSecs(s.longest_query_seconds)],
    ['waiting on locks', fmtInt(s.lock_waits)], ['connections', fmtInt(s.connections) + ' of ' + fmtInt(s.max_connections) + ' (' + fmtPct(s.connections_percent) + ')']];
  for (const [k, v] of rows) dl.append(el('dt', {}, k), el('dd', {}, v));
}

function renderVerify(v) {
  const box = $('verify');
  if (!v || v.state === 'idle') { box.textContent = 'not run'; return; }
  if (v.state === 'running') { box.textContent = 'verifying ' + v.mode + ' rows since ' + new Date(v.started_at).toLocaleTimeString() + '…'; return; }
  if (v.state === 'failed') { box.textContent = 'verify failed: ' + v.error; return; }
  const r = v.report;
  box.textContent = (r.mode === 'full' ? 'all rows: ' : 'changed rows: ') + fmtInt(r.rows_compared) + ' compared, ' +
    (r.differences ? fmtInt(r.differences) + ' differ' : 'all equal') + ' (' + new Date(v.finished_at).toLocaleTimeString() + ')';
}

function drawChart(svg, values, label, fmt) {
  const W = 600; const H = 120;
  const max = Math.max(1e-9, ...values);
  const top = niceMax(max);
  label.textContent = values.length ? 'now ' + fmt(values[values.length - 1]) + ' · scale ' + fmt(top) : '';
  svg.replaceChildren();
  const ns = 'http://www.w3.org/2000/svg';
  for (const f of [0.25, 0.5, 0.75]) {
    const g = document.createElementNS(ns, 'line');
    g.setAttribute('x1', '0'); g.setAttribute('x2', String(W)); g.setAttribute('y1', String(H * f)); g.setAttribute('y2', String(H * f));
    g.setAttribute('class', 'grid');
    svg.append(g);
  }
  if (values.length < 2) return;
  const step = W / (HISTORY - 1);
  const x0 = W - (values.length - 1) * step;
  const pts = values.map((v, i) => (x0 + i * step).toFixed(1) + ',' + (H - (v / top) * (H - 4)).toFixed(1));
  const area = document.createElementNS(ns, 'polygon');
  area.setAttribute('points', x0.toFixed(1) + ',' + H + ' ' + pts.join(' ') + ' ' + W + ',' + H);
  area.setAttribute('class', 'area');
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts.join(' '));
  line.setAttribute('class', 'line');
  svg.append(area, line);
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---------- actions ----------
function say(text, isError) {
  const m = $('message');
  m.textContent = text;
  m.className = 'message' + (isError ? ' error' : '');
}

function showTokenState() {
  const has = !!token();
  $('token-state').textContent = has ? 'token set for this tab' : (needToken ? 'this page needs the API token' : 'no token: read-only');
  $('token-forget').hidden = !has;
  $('token-input').hidden = has;
  $('token-save').hidden = has;
  $('token-label').hidden = has;
}

async function act(what, path, body) {
  if (!token()) { say('paste the API token first (printed when sluice sync started)', true); $('token-input').focus(); return null; }
  try {
    const r = await api('POST', path, body);
    say(what + ': done');
    poll(true);
    return r;
  } catch (e) {
    if (e.status === 401) { say(what + ': the API token was refused', true); }
    else say(what + ' failed: ' + e.message, true);
    return null;
  }
}

function wire() {
  $('btn-pause').addEventListener('click', () => act('pause', '/api/v1/pause'));
  $('btn-resume').addEventListener('click', () => act('resume', '/api/v1/resume'));
  $('btn-verify').addEventListener('click', () => act('verify (' + $('verify-mode').value + ')', '/api/v1/verify', { mode: $('verify-mode').value }));
  $('btn-cutover').addEventListener('click', () => {
    if (!token()) { say('paste the API token first', true); return; }
    const tables = (lastStatus && lastStatus.tables || []).map((t) => t.source).join(', ');
    $('cutover-tables').textContent = 'Tables: ' + (tables || '–');
    $('cutover-dialog').showModal();
  });
  $('cutover-dialog').addEventListener('close', async () => {
    if ($('cutover-dialog').returnValue !== 'confirm') { say('cutover cancelled'); return; }
    say('cutting over… (waits for the copy and the lag)');
    const r = await act('cutover', '/api/v1/cutover');
    if (r) say('cut over: writes paused ' + r.write_pause_ms.toFixed(1) + ' ms, ' + r.rows_verified + ' changed rows verified');
  });
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token-input').value.trim();
    if (!v) return;
    sessionStorage.setItem(TOKEN_KEY, v);
    $('token-input').value = '';
    showTokenState();
    say('token kept for this tab');
    poll(true);
  });
  $('token-forget').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); showTokenState(); say('token forgotten'); });
  showTokenState();
}

let timer = null;
async function poll(once) {
  try {
    const st = await api('GET', '/api/v1/status');
    needToken = false;
    render(st);
  } catch (e) {
    if (e.status === 401) { needToken = true; say('reading the status needs the API token here: paste it below', true); }
    else { $('state').textContent = 'unreachable'; $('state').className = 'badge badge-crit'; }
    showTokenState();
  }
  if (once) {
    try {
      const ev = await api('GET', '/api/v1/alerts');
      renderEvents(ev.events || []);
    } catch (e) { /* shown by the status poll */ }
    return;
  }
  clearTimeout(timer);
  timer = setTimeout(() => poll(false), 1000);
}

let eventTick = 0;
function renderEvents(events) {
  const list = $('events');
  list.replaceChildren();
  if (!events.length) { list.append(el('li', { class: 'muted' }, 'none')); return; }
  for (const e of events.slice(-15).reverse()) {
    list.append(el('li', {}, new Date(e.at).toLocaleTimeString() + ' ' + (e.state === 'resolved' ? 'resolved' : e.severity) + ' ' + e.code + ': ' + e.message));
  }
}

async function pollEvents() {
  try { renderEvents((await api('GET', '/api/v1/alerts')).events || []); } catch (e) { /* ignore */ }
  eventTick = setTimeout(pollEvents, 5000);
}

wire();
poll(false);
pollEvents();
