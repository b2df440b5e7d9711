// index.html: stream list from GET /api/streams (every 2 s) and a form to publish or
// watch a new name. Test hook: window.streamList = {streams, error, updated};
// document.body.dataset.state = loading|ok|error.
// With ?token=T (a view or admin token, when the gateway wants one) the list is
// fetched with it, and the watch/publish links carry it on.
import { el, validStreamName, describeTrack, formatDuration } from './common.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const state = { streams: [], error: null, updated: null };
const pageToken = new URLSearchParams(location.search).get('token') || '';
window.streamList = state;

function streamURL(page, name, token) {
  const t = token ? `&token=${encodeURIComponent(token)}` : '';
  return `/${page}.html?stream=${encodeURIComponent(name)}${t}`;
}

// In a cluster, s.node names the node the stream is published on.
function publisherCell(s) {
  const p = s.publisher;
  const node = typeof s.node === 'string' && s.node
    ? el('div', { class: 'muted small node', title: 'cluster node the stream is published on' }, 'node ', el('span', { class: 'mono' }, s.node))
    : null;
  if (!p) return node || el('span', { class: 'muted' }, '—');
  const since = p.since ? Date.parse(p.since) : NaN;
  const age = Number.isFinite(since) ? formatDuration((Date.now() - since) / 1000) : '';
  return el('div', { class: 'publisher' },
    el('span', { class: 'tag' }, (p.protocol || '?').toUpperCase()),
    ' ',
    el('span', { class: 'mono' }, p.remoteAddr || ''),
    age ? el('div', { class: 'muted small', title: p.since }, `for ${age}`) : null,
    node);
}

function tracksCell(tracks) {
  if (!Array.isArray(tracks) || !tracks.length) return el('span', { class: 'muted' }, '—');
  return el('div', { class: 'tracks' }, tracks.map((t) =>
    el('div', { class: 'track' }, el('span', { class: `kind kind-${t.kind || 'other'}` }, t.kind || '?'), ' ', describeTrack(t))));
}

function row(s) {
  const name = String(s.name || '');
  return el('tr', { dataset: { stream: name } },
    el('td', { class: 'mono name' }, el('a', { href: streamURL('watch', name, pageToken) }, name)),
    el('td', null, s.live
      ? el('span', { class: 'pill pill-live' }, 'live')
      : el('span', { class: 'pill pill-offline' }, 'offline')),
    el('td', null, tracksCell(s.tracks)),
    el('td', { class: 'num' }, String(Number(s.viewers) || 0)),
    el('td', null, publisherCell(s)),
    el('td', { class: 'actions' },
      el('a', { class: 'btn btn-small', href: streamURL('watch', name, pageToken) }, 'watch'),
      ' ',
      el('a', { class: 'btn btn-small btn-ghost', href: streamURL('publish', name, pageToken) }, 'publish')));
}

function render() {
  const body = $('streams');
  const list = state.streams.slice().sort((a, b) => (b.live - a.live) || String(a.name).localeCompare(String(b.name)));
  if (!list.length) {
    body.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 6 },
      state.error ? 'Stream list unavailable.' : state.updated ? 'No streams yet. Start one with the form above.' : 'Loading…')));
  } else {
    body.replaceChildren(...list.map(row));
  }
  const live = list.filter((s) => s.live).length;
  $('count').textContent = list.length ? `${live} live / ${list.length}` : '';
  const err = $('list-error');
  err.hidden = !state.error;
  err.textContent = state.error ? `Cannot load /api/streams: ${state.error}` : '';
  $('updated').textContent = state.updated ? `updated ${state.updated.toLocaleTimeString()}` : '';
  document.body.dataset.state = state.error ? 'error' : state.updated ? 'ok' : 'loading';
}

let inflight = false;
async function refresh() {
  if (inflight) return;
  inflight = true;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    const headers = { Accept: 'application/json' };
    if (pageToken) headers.Authorization = `Bearer ${pageToken}`;
    const res = await fetch('/api/streams', { cache: 'no-store', signal: ctl.signal, headers });
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try { const j = await res.json(); if (j && j.error) msg += `: ${j.error}`; } catch { /* not JSON */ }
      throw new Error(msg);
    }
    const data = await res.json();
    if (!Array.isArray(data)) throw new Error('unexpected response (not a JSON array)');
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
}

function setupForm() {
  const form = $('new-form');
  const input = $('new-name');
  const msg = $('new-error');
  const check = () => {
    const v = input.value.trim();
    const ok = validStreamName(v);
    msg.hidden = ok || v === '';
    msg.textContent = ok ? '' : 'Use 1-64 characters: letters, digits, dot, underscore, dash.';
    input.setAttribute('aria-invalid', String(!ok && v !== ''));
    return ok;
  };
  input.addEventListener('input', check);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = input.value.trim();
    if (!check()) {
      msg.hidden = false;
      if (!name) msg.textContent = 'Enter a stream name.';
      input.focus();
      return;
    }
    const action = ev.submitter && ev.submitter.value === 'watch' ? 'watch' : 'publish';
    location.href = streamURL(action, name, $('new-token').value.trim());
  });
}

setupForm();
render();
refresh();
setInterval(refresh, REFRESH_MS);
document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
