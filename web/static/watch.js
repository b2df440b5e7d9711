// watch.html: plays /ws/watch/NAME with MSEPlayer and shows its state and stats.
// Query: stream=NAME (required), token=T, latency=seconds (base target, default DEFAULT_TARGET_LATENCY), muted=0,
// mode=auto|worker|main|managed (MSE path), keep=seconds (buffer kept behind the playhead).
import { MSEPlayer, DEFAULT_TARGET_LATENCY } from './player.js';
import { params, validStreamName, describeTrack, formatBitrate } from './common.js';

const $ = (id) => document.getElementById(id);
const q = params();
const name = q.get('stream') || '';
const token = q.get('token') || '';
let target = parseFloat(q.get('latency'));
if (!Number.isFinite(target) || target < 0.02 || target > 30) target = DEFAULT_TARGET_LATENCY;
const mode = ['worker', 'main', 'managed'].includes(q.get('mode')) ? q.get('mode') : 'auto';
let keep = parseFloat(q.get('keep'));
if (!Number.isFinite(keep) || keep < 1 || keep > 600) keep = 10;

const video = $('video');
const STATE_TEXT = {
  connecting: 'Connecting…',
  waiting: 'Waiting for publisher…',
  playing: '',
  ended: 'Stream ended',
  error: 'Error',
};

function setBodyState(state) {
  document.body.dataset.state = state;
}

function fmtSec(x) {
  return Number.isFinite(x) ? `${(x * 1000).toFixed(0)} ms` : '—';
}

function renderState(state, message) {
  setBodyState(state);
  const pill = $('pill');
  pill.textContent = state;
  pill.className = `pill pill-${state}`;
  const banner = $('banner');
  const text = state === 'playing' ? '' : (state === 'error' ? `Error: ${message}` :
    state === 'connecting' && message && message !== 'connecting' ? `${STATE_TEXT.connecting} (${message})` :
      state === 'ended' && message ? `Stream ended — ${message.replace(/^stream ended[:;]?\s*/i, '')}` :
        STATE_TEXT[state] || message);
  $('banner-text').textContent = text;
  banner.hidden = state === 'playing';
  banner.classList.toggle('banner-error', state === 'error');
  banner.classList.toggle('banner-busy', state === 'connecting' || state === 'waiting');
  $('i-status').textContent = message && message !== state ? `${state} — ${message}` : state;
  $('s-state').textContent = state;
}

function renderStats(s) {
  $('s-latency').textContent = s.timeshifted
    ? `recording: ${Number.isFinite(s.position) ? ((Date.now() - s.position) / 1000).toFixed(1) : '?'} s behind now, ${s.speed}×`
    : s.latency === null ? '—' : `${fmtSec(s.latency)} (target ${fmtSec(s.targetLatency)}${s.jitter > 0.001 ? `, jitter ${fmtSec(s.jitter)}` : ''}${s.rateTrim === false ? ', seeks' : ''})`;
  $('s-buffer').textContent = s.buffered === null ? '—' : `${fmtSec(s.buffered)} ahead, ${s.bufferedRange.toFixed(1)} s kept`;
  $('s-mode').textContent = s.mode ? `${s.mode}${s.audioLeftOut ? ' (audio off while muted)' : ''}` : '—';
  $('s-stalls').textContent = `${s.stalls} (${(s.stallTime || 0).toFixed(1)} s), ${s.jumps} jumps`;
  $('s-res').textContent = s.width && s.height ? `${s.width}×${s.height}` : '—';
  $('s-fps').textContent = s.fps === null ? '—' : s.fps.toFixed(1);
  $('s-bitrate').textContent = s.bitrate === null ? '—' : formatBitrate(s.bitrate);
  $('s-frames').textContent = `${s.droppedFrames} / ${s.decodedFrames}`;
  $('s-rate').textContent = `${s.playbackRate.toFixed(2)}×`;
  $('s-segments').textContent = `${s.segments}${s.queue ? ` (${s.queue} queued)` : ''}`;
  $('s-inits').textContent = String(s.inits);
  $('s-reconnects').textContent = String(s.reconnects);
  if (window.player && window.player.lastError) $('i-error').textContent = window.player.lastError;
}

function renderInit(info) {
  $('i-mime').textContent = info.mime || '—';
  const tracks = Array.isArray(info.tracks) ? info.tracks : [];
  $('i-tracks').textContent = tracks.length ? tracks.map((t) => `${t.kind || '?'}: ${describeTrack(t)}`).join(' · ') : '—';
}

function setupControls(player) {
  const mute = $('mute');
  const syncMute = () => {
    mute.textContent = video.muted ? 'Unmute' : 'Mute';
    mute.setAttribute('aria-pressed', String(!video.muted));
  };
  mute.addEventListener('click', () => player.setMuted(!video.muted));
  video.addEventListener('volumechange', syncMute);
  syncMute();

  $('live').addEventListener('click', () => {
    if (player.timeshifted) player.goLive();
    else player.seekLive();
  });
  setupTimeline(player);

  const statsBox = $('stats');
  const statsBtn = $('stats-toggle');
  const showStats = (on, save) => {
    statsBox.hidden = !on;
    statsBtn.setAttribute('aria-pressed', String(on));
    if (save) try { localStorage.setItem('mseway.stats', on ? '1' : '0'); } catch { /* private mode */ }
  };
  // Default: on, except on small screens where it would cover the picture.
  let initial = !(window.matchMedia && window.matchMedia('(max-width: 600px)').matches);
  try {
    const saved = localStorage.getItem('mseway.stats');
    if (saved !== null) initial = saved === '1';
  } catch { /* ignore */ }
  showStats(initial);
  statsBtn.addEventListener('click', () => showStats(statsBox.hidden, true));

  const fs = $('fullscreen');
  const box = $('player');
  fs.addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (box.requestFullscreen) box.requestFullscreen().catch(() => {});
    else if (video.webkitEnterFullscreen) video.webkitEnterFullscreen();
  });

  const gesture = $('gesture');
  player.addEventListener('gesture', () => { gesture.hidden = false; });
  gesture.addEventListener('click', () => {
    gesture.hidden = true;
    player.play();
  });
}

// The DVR timeline: shown when the stream has recordings on this node (GET
// /api/recordings). Its range is the oldest recording's start .. now; dragging it back
// plays the recording from there through the same MediaSource (player.timeshift), the
// Live button comes back to the live edge, the speed button toggles 1x / 2x.
const DVR_LOOKBACK_MS = 24 * 3600 * 1000;
const LIVE_SNAP_MS = 3000; // released this close to now: live

function setupTimeline(player) {
  const dvr = $('dvr');
  const bar = $('timeline');
  const at = $('timeline-at');
  const speed = $('speed');
  let oldest = null; // wall-clock ms of the oldest recording
  let dragging = false;

  const refresh = async () => {
    const from = new Date(Date.now() - DVR_LOOKBACK_MS).toISOString();
    try {
      const res = await fetch(`/api/recordings?stream=${encodeURIComponent(name)}&from=${encodeURIComponent(from)}`,
        { headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: 'omit' });
      if (!res.ok) return;
      const files = await res.json();
      oldest = Array.isArray(files) && files.length ? Date.parse(files[0].start) : null;
    } catch { /* keep what we had */ }
    dvr.hidden = oldest === null;
  };
  refresh();
  setInterval(refresh, 30000); // the window's start moves slowly; the server caches the listing too

  const label = (ms) => {
    const behind = Math.max(0, Date.now() - ms) / 1000;
    if (behind < 1.5) return 'live';
    const m = Math.floor(behind / 60);
    const s = Math.floor(behind % 60);
    return `−${m}:${String(s).padStart(2, '0')}`;
  };
  const render = () => {
    if (oldest === null || dragging) return;
    const now = Date.now();
    bar.max = String(Math.max(1, Math.round((now - oldest) / 1000)));
    const pos = player.timeshifted && Number.isFinite(player.stats.position) ? player.stats.position : now;
    bar.value = String(Math.round((Math.min(pos, now) - oldest) / 1000));
    at.textContent = player.timeshifted ? label(pos) : 'live';
    document.body.dataset.timeshift = player.timeshifted ? '1' : '0';
    speed.hidden = !player.timeshifted;
    speed.textContent = `${player.speed || 1}×`;
  };
  setInterval(render, 500);
  bar.addEventListener('input', () => {
    dragging = true;
    at.textContent = label(oldest + Number(bar.value) * 1000);
  });
  bar.addEventListener('change', () => {
    dragging = false;
    const target = oldest + Number(bar.value) * 1000;
    if (Date.now() - target < LIVE_SNAP_MS) player.goLive();
    else player.timeshift(target);
    render();
  });
  speed.addEventListener('click', () => {
    player.setSpeed((player.speed || 1) === 1 ? 2 : 1);
    render();
  });
}

function main() {
  $('stream-name').textContent = name || '(none)';
  $('i-name').textContent = name || '—';
  $('i-target').textContent = `${fmtSec(target)} (adapts to jitter and stalls)`;
  document.title = `${name || 'Watch'} · mseway`;

  if (!validStreamName(name)) {
    const msg = name ? `invalid stream name "${name}" (1-64 chars of A-Z a-z 0-9 . _ -, not . or ..)` : 'no stream given: open watch.html?stream=NAME';
    window.player = { state: 'error', stats: {}, inits: 0, lastError: msg };
    renderState('error', msg);
    $('i-error').textContent = msg;
    $('publish-link').hidden = true;
    return;
  }
  $('publish-link').href = `/publish.html?stream=${encodeURIComponent(name)}${token ? `&token=${encodeURIComponent(token)}` : ''}`;

  const player = new MSEPlayer(video, { stream: name, token, targetLatency: target, mode, evictKeep: keep });
  window.player = player;
  player.addEventListener('state', (ev) => {
    renderState(ev.detail.state, ev.detail.message);
    $('i-mode').textContent = player.mode ? `${player.mode}${mode === 'auto' ? ' (auto)' : ' (forced)'}` : '—';
    $('i-error').textContent = player.lastError || '—';
  });
  player.addEventListener('stats', (ev) => renderStats(ev.detail));
  player.addEventListener('init', (ev) => renderInit(ev.detail));
  setupControls(player);
  renderState(player.state, player.message);
  if (q.get('muted') === '0') player.setMuted(false); // before start: the first connection has audio
  player.start();
  window.addEventListener('pagehide', () => player.stop());
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) player.start(); });
}

main();
