// Minimal MSE viewer for the glass-to-glass latency test (internal/gateway/latency_test.go):
// the column next to the MSE player (g2g-watch) and direct WebRTC. It does what the
// simplest live MSE page does and nothing else: a MediaSource on the main thread, the
// viewer WebSocket (PROTOCOL.md "Watching: MSE over WebSocket"), init and media segments
// appended in order to one SourceBuffer through a small queue, and every 100 ms a seek
// to (buffered end - lead) when the playhead is more than `edge` seconds behind the
// buffered end, playing muted. No rate trimming, no stall handling, no eviction (the
// browser evicts old media itself when an append needs room).
//
// Timeline: the gateway keeps decode times on one timeline across the inits of one
// publisher (resolution changes) and may restart it for a new publisher. So the first
// init of a connection and the first after an eos get a new MediaSource; a later init
// goes on the same SourceBuffer (changeType when the browser has it, else as is when the
// type is unchanged, else a new MediaSource).
//
// Query: stream=NAME, token=T, edge=seconds (default 0.1), lead=seconds (default 0.03).
// Test hook: window.g2g = {reader, state, error, reset(), counters()};
// window.minimal = {seeks, waits, inits, appends, errors, mime, playError, edge, lead, stop()}.
import { clockReader, percentile } from '/test/clock.js';
import { watchSocketURL } from '/player.js'; // the URL only: none of the player's policy

const q = new URLSearchParams(location.search);
const name = q.get('stream') || 'g2g';
const edge = seconds(q.get('edge'), 0.1);
const lead = seconds(q.get('lead'), 0.03);
const video = document.getElementById('video');
video.muted = true;
const reader = clockReader(video);
// seeks: to the live edge; waits: the element's 'waiting' events (it ran out of data).
const minimal = { edge, lead, seeks: 0, waits: 0, inits: 0, appends: 0, errors: 0, mime: null, playError: null, stop };
// Frames the element decoded and dropped (too late to show).
const quality = () => {
  const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
  return { decoded: q.totalVideoFrames || 0, dropped: q.droppedVideoFrames || 0 };
};
let since = { seeks: 0, waits: 0, ...quality() };
const g2g = {
  reader,
  state: 'connecting',
  error: null,
  /** Start a sample period: the clock samples and the counters. */
  reset() { reader.reset(); since = { seeks: minimal.seeks, waits: minimal.waits, ...quality() }; },
  /** Counters over the sample period. */
  counters() {
    const q = quality();
    return {
      seeks: minimal.seeks - since.seeks, waits: minimal.waits - since.waits, edge, lead,
      decoded: q.decoded - since.decoded, dropped: q.dropped - since.dropped,
    };
  },
};
window.g2g = g2g;
window.minimal = minimal;
document.getElementById('name').textContent = name;

let ws = null;
let ms = null; // the MediaSource
let sb = null; // its SourceBuffer, once open
let sbInit = false; // an init segment went into sb already
let type = ''; // the SourceBuffer's type (of the newest init queued)
let fresh = true; // the next init may restart the timeline: it gets a new MediaSource
let pendingInit = null; // an init message whose binary init segment is next
const queue = []; // in order: {type, data} for an init segment, {data} for media

function seconds(v, def) {
  const x = parseFloat(v);
  return Number.isFinite(x) && x >= 0 ? x : def;
}

function setState(state, error) {
  g2g.state = state;
  if (error) g2g.error = error;
  document.body.dataset.state = state;
  document.getElementById('state').textContent = error ? `${state}: ${error}` : state;
}

/** The init's mime, or with `Opus` capitalised (some Safari versions); null if neither plays. */
function supportedType(mime) {
  if (MediaSource.isTypeSupported(mime)) return mime;
  const alt = mime.replace(/opus/g, 'Opus');
  return MediaSource.isTypeSupported(alt) ? alt : null;
}

function newMediaSource(t) {
  queue.length = 0;
  sb = null;
  sbInit = false;
  type = t;
  const m = new MediaSource();
  ms = m;
  if (video.src) URL.revokeObjectURL(video.src);
  video.src = URL.createObjectURL(m);
  m.addEventListener('sourceopen', () => {
    if (ms !== m) return;
    try {
      sb = m.addSourceBuffer(t);
    } catch (e) {
      setState('error', `addSourceBuffer(${t}): ${e.message || e}`);
      return;
    }
    sb.addEventListener('updateend', pump);
    pump();
  }, { once: true });
}

function onInit(info, data) {
  const t = supportedType(String(info.mime || ''));
  if (!t) {
    setState('error', `not playable here: ${info.mime}`);
    return;
  }
  minimal.inits++;
  minimal.mime = t;
  const canChange = typeof SourceBuffer !== 'undefined' && 'changeType' in SourceBuffer.prototype;
  if (fresh || !ms || ms.readyState === 'ended' || (t !== type && !canChange)) newMediaSource(t);
  fresh = false;
  type = t;
  queue.push({ type: t, data });
  if (g2g.state !== 'playing') setState('buffering');
  pump();
}

function onMedia(data) {
  if (!ms) return; // no init yet
  queue.push({ data });
  pump();
}

/** Append the next queued segment (one at a time: updateend calls back). */
function pump() {
  while (sb && ms.readyState === 'open' && !sb.updating && queue.length) {
    const op = queue.shift();
    try {
      // A later init on this SourceBuffer (its first one needs no changeType).
      if (op.type && sbInit && sb.changeType) sb.changeType(op.type);
      if (op.type) sbInit = true;
      sb.appendBuffer(op.data);
      minimal.appends++;
      return;
    } catch (e) {
      minimal.errors++;
      g2g.error = `append: ${e.name || ''} ${e.message || e}`.trim();
    }
  }
}

/** Every 100 ms: back to the live edge when more than `edge` behind, and play. */
function keepToEdge() {
  const b = video.buffered;
  if (!b.length) return;
  const start = b.start(b.length - 1);
  const end = b.end(b.length - 1);
  if (end - video.currentTime > edge) {
    video.currentTime = Math.max(start, end - lead);
    minimal.seeks++;
  }
  if (video.paused) {
    video.play().catch((e) => { minimal.playError = `${e && e.name}: ${e && e.message}`; });
  }
  // After a reconnect or a server 'waiting', the next init sets 'buffering' while the
  // element may never have stopped: no 'playing' event comes then.
  if (g2g.state === 'buffering' && !video.paused && video.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) {
    setState('playing');
  }
}

function onText(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return;
  }
  switch (msg && msg.type) {
    case 'waiting':
      setState('waiting');
      break;
    case 'init':
      pendingInit = msg; // the next binary message is its init segment
      break;
    case 'eos':
      pendingInit = null;
      fresh = true;
      setState('eos');
      break;
    case 'error':
      setState('error', String(msg.message || 'server error'));
      break;
    default:
  }
}

function connect() {
  ws = new WebSocket(watchSocketURL(name, q.get('token') || ''));
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      onText(ev.data);
    } else if (pendingInit) {
      const info = pendingInit;
      pendingInit = null;
      onInit(info, ev.data);
    } else {
      onMedia(ev.data);
    }
  };
  ws.onclose = () => {
    // Come back in a second; the new connection's first init starts a new MediaSource.
    ws = null;
    fresh = true;
    pendingInit = null;
    if (g2g.state !== 'stopped' && g2g.state !== 'error') {
      setState('closed');
      setTimeout(connect, 1000);
    }
  };
}

function stop() {
  setState('stopped');
  clearInterval(edgeTimer);
  reader.stop();
  if (ws) ws.close(1000, 'viewer stopped');
  video.pause();
}

video.addEventListener('playing', () => { if (g2g.state === 'buffering') setState('playing'); });
video.addEventListener('waiting', () => { minimal.waits++; });
const edgeTimer = setInterval(keepToEdge, 100);
connect();
setInterval(() => {
  document.getElementById('lat').textContent =
    `${reader.samples.length} samples, p50 ${percentile(reader.samples, 50)} ms, p95 ${percentile(reader.samples, 95)} ms; ` +
    `seeks ${minimal.seeks}, waiting ${minimal.waits}, edge ${edge} s, lead ${lead} s`;
}, 1000);
