// operator.html: the live operator view (admin grant). Polls GET /api/streams every 2 s
// with the admin token and draws, per stream, the video track, the publisher (kind and
// address), viewers, and small charts of bitrate, viewers and viewer latency p50/p95 kept
// in the page (2 minutes). A stream's viewer list comes from
// GET /api/streams/{name}/viewers; "End" buttons call DELETE /api/streams/{name}/publisher
// and DELETE /api/streams/{name}/viewers/{id} (a second click confirms).
// Test hook: window.operator = {streams, history, viewers, error, updated};
// document.body.dataset.state = loading|ok|error|login.
import { el, codecName, formatBitrate, formatDuration, responseError } from './common.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const HISTORY = 60; // points: 2 minutes

const state = { streams: [], history: new Map(), viewers: null, viewersOf: '', error: null, updated: null };
window.operator = state;

// The token: ?token= once (then dropped from the address bar), or typed in; kept for this tab.
let token = new URLSearchParams(location.search).get('token') || sessionStorage.getItem('mseway-admin') || '';
if (new URLSearchParams(location.search).has('token')) {
  sessionStorage.setItem('mseway-admin', token);
  history.replaceState(null, '', location.pathname);
}

function api(path, init = {}) {
  const headers = Object.assign({ Accept: 'application/json' }, init.headers);
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(path, Object.assign({ cache: 'no-store' }, init, { headers }));
}

function record(s) {
  let h = state.history.get(s.name);
  if (!h) {
    h = { bitrate: [], viewers: [], p50: [], p95: [] };
    state.history.set(s.name, h);
  }
  const vs = s.viewerStats || {};
  const push = (arr, v) => { arr.push(Number.isFinite(v) ? v : null); if (arr.length > HISTORY) arr.shift(); };
  push(h.bitrate, s.bitrate || 0);
  push(h.viewers, s.viewers || 0);
  push(h.p50, vs.reporting ? vs.latencyP50 : null);
  push(h.p95, vs.reporting ? vs.latencyP95 : null);
  return h;
}

/** A small line chart: series = [{values, color}], drawn to scale from 0 to the max seen. */
function chart(series, label) {
  const c = el('canvas', { width: 160, height: 40, class: 'spark', role: 'img', 'aria-label': label });
  const ctx = c.getContext('2d');
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const top = Math.max(1e-9, ...all);
  ctx.lineWidth = 1.5;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = ((HISTORY - s.values.length + i) / (HISTORY - 1)) * (c.width - 2) + 1; // newest on the right
      const y = c.height - 2 - (v / top) * (c.height - 6);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
  return el('div', { class: 'chart' }, c, el('div', { class: 'muted small' }, label));
}

function confirmButton(text, action) {
  const b = el('button', { class: 'btn btn-small btn-danger', type: 'button' }, text);
  let armed = null;
  b.addEventListener('click', async () => {
    if (!armed) {
      b.textContent = 'Confirm';
      armed = setTimeout(() => { armed = null; b.textContent = text; }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.disabled = true;
    try {
      await action();
    } finally {
      b.disabled = false;
      b.textContent = text;
    }
  });
  return b;
}

async function act(method, path) {
  const res = await api(path, { method });
  if (!res.ok) {
    state.error = await responseError(res);
    render();
    return false;
  }
  return true;
}

function streamRow(s) {
  const h = record(s);
  const video = (s.tracks || []).find((t) => t.kind === 'video');
  const p = s.publisher;
  const kf = s.keyframeInterval ? `keyframe every ${s.keyframeInterval.toFixed(1)} s` : '';
  const name = String(s.name || '');
  const enc = encodeURIComponent(name);
  const vs = s.viewerStats || {};
  return el('tr', { dataset: { stream: name } },
    el('td', { class: 'mono name' }, el('a', { href: `/watch.html?stream=${enc}` }, name),
      s.node ? el('div', { class: 'muted small' }, `node ${s.node}`) : null),
    el('td', null, video
      ? el('div', null, `${codecName(video.codec)} ${video.width || '?'}×${video.height || '?'}`,
        video.fps ? ` ${video.fps} fps` : '', el('div', { class: 'muted small' }, kf))
      : el('span', { class: 'muted' }, '—')),
    el('td', null, p
      ? el('div', null, el('span', { class: 'tag', title: `protocol ${p.protocol || '?'}` }, String(p.kind || p.protocol || '?').toUpperCase()), ' ',
        el('span', { class: 'mono small' }, p.remoteAddr || ''),
        el('div', { class: 'muted small' }, p.since ? `for ${formatDuration((Date.now() - Date.parse(p.since)) / 1000)}` : ''))
      : el('span', { class: 'muted' }, s.node ? 'on another node' : '—')),
    el('td', { class: 'num' }, String(s.viewers || 0)),
    el('td', null, chart([{ values: h.bitrate, color: '#3b9eff' }], formatBitrate(s.bitrate))),
    el('td', null, chart([{ values: h.viewers, color: '#2fbf71' }], `${s.viewers || 0} now`)),
    el('td', null, chart([{ values: h.p50, color: '#e3a22b' }, { values: h.p95, color: '#f0564a' }],
      vs.reporting ? `${(vs.latencyP50 * 1000).toFixed(0)} / ${(vs.latencyP95 * 1000).toFixed(0)} ms (${vs.reporting} reporting)` : 'no reports')),
    el('td', { class: 'actions' },
      el('button', { class: 'btn btn-small', type: 'button', dataset: { action: 'viewers' }, onclick: () => showViewers(name) }, 'Viewers'),
      ' ',
      s.live && p ? confirmButton('End publish', async () => { if (await act('DELETE', `/api/streams/${enc}/publisher`)) refresh(); }) : null));
}

function render() {
  const body = $('streams');
  const live = state.streams.filter((s) => s.live);
  $('count').textContent = live.length ? `${live.length}` : '';
  if (!live.length) {
    body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 8 }, state.updated ? 'No live stream.' : 'Loading…')));
  } else {
    body.replaceChildren(...live.map(streamRow));
  }
  $('error').hidden = !state.error;
  $('error').textContent = state.error || '';
  $('updated').textContent = state.updated ? `updated ${state.updated.toLocaleTimeString()}` : '';
  document.body.dataset.state = state.needLogin ? 'login' : state.error ? 'error' : state.updated ? 'ok' : 'loading';
  $('login').hidden = !state.needLogin;
  renderViewers();
}

function renderViewers() {
  const panel = $('viewers-panel');
  panel.hidden = !state.viewersOf;
  if (!state.viewersOf) return;
  $('viewers-stream').textContent = state.viewersOf;
  const enc = encodeURIComponent(state.viewersOf);
  const rows = (state.viewers || []).map((v) => {
    const st = v.stats || {};
    const ms = (x) => (Number.isFinite(x) ? `${(x * 1000).toFixed(0)} ms` : '—');
    return el('tr', { dataset: { viewer: String(v.id) } },
      el('td', { class: 'mono' }, String(v.id)),
      el('td', { class: 'mono small' }, v.remote || ''),
      el('td', null, v.since ? formatDuration((Date.now() - Date.parse(v.since)) / 1000) : '—'),
      el('td', { class: 'num' }, ms(st.latency)),
      el('td', { class: 'num' }, ms(st.buffered)),
      el('td', { class: 'num' }, st.decodedFrames ?? '—'),
      el('td', { class: 'num' }, st.droppedFrames ?? '—'),
      el('td', { class: 'num', title: Number.isFinite(st.stallTime) ? `${st.stallTime.toFixed(1)} s stalled` : '' }, st.stalls ?? '—'),
      el('td', { class: 'num' }, String(v.recentSkips || 0)),
      el('td', { class: 'actions' }, confirmButton('Disconnect', async () => {
        if (await act('DELETE', `/api/streams/${enc}/viewers/${v.id}`)) loadViewers();
      })));
  });
  $('viewers').replaceChildren(...(rows.length ? rows : [el('tr', { class: 'empty' }, el('td', { colspan: 10 }, state.viewers ? 'No viewer on this node.' : 'Loading…'))]));
}

async function loadViewers() {
  if (!state.viewersOf) return;
  const name = state.viewersOf;
  try {
    const res = await api(`/api/streams/${encodeURIComponent(name)}/viewers`);
    if (name !== state.viewersOf) return;
    if (res.ok) state.viewers = await res.json();
    else if (res.status === 404) state.viewers = []; // no viewer (or stream) on this node now
    else state.error = await responseError(res);
  } catch (e) {
    state.error = e.message || String(e);
  }
  renderViewers();
}

function showViewers(name) {
  state.viewersOf = name;
  state.viewers = null;
  renderViewers();
  loadViewers();
}

let inflight = false;
async function refresh() {
  if (inflight) return;
  inflight = true;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    if (!state.adminChecked) {
      // A view token lists streams too, without what operators need: ask an
      // admin-only endpoint first (GET /api/nodes without a stream).
      const check = await api('/api/nodes', { signal: ctl.signal });
      if (check.status === 401 || check.status === 403) {
        state.needLogin = true;
        throw new Error(`${await responseError(check)}: this page needs a token with the admin grant`);
      }
      if (!check.ok) throw new Error(await responseError(check));
      state.adminChecked = true;
    }
    const res = await api('/api/streams', { signal: ctl.signal });
    if (res.status === 401 || res.status === 403) {
      state.needLogin = true;
      state.adminChecked = false;
      throw new Error(`${await responseError(res)}: this page needs an admin token`);
    }
    if (!res.ok) throw new Error(await responseError(res));
    const data = await res.json();
    if (!Array.isArray(data)) throw new Error('unexpected answer (not a JSON array)');
    state.needLogin = false;
    state.streams = data.filter((s) => s && typeof s === 'object');
    state.error = null;
    state.updated = new Date();
  } catch (e) {
    state.error = e.name === 'AbortError' ? 'timed out' : (e.message || String(e));
  } finally {
    clearTimeout(timer);
    inflight = false;
  }
  render();
  loadViewers();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('login-token').value.trim();
  sessionStorage.setItem('mseway-admin', token);
  state.needLogin = false;
  state.adminChecked = false;
  refresh();
});
$('viewers-close').addEventListener('click', () => { state.viewersOf = ''; renderViewers(); });

render();
refresh();
setInterval(refresh, REFRESH_MS);
