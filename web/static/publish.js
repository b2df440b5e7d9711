// publish.html: capture -> the gateway (publisher.js), with device pickers, constraints,
// codec choice, bitrate cap, mute, live source switching (replaceTrack) and viewer count.
// Query: stream=NAME (required), token=T, autostart=1, signal=ws|whip (default ws),
// codec=h264|vp9|av1, source=camera|screen|canvas|none, width=, height=, fps=, bitrate= (bits/s).
// Test hook: window.publisher (see publisher.js), document.body.dataset.state =
// idle|starting|connecting|connected|failed|stopped.
import { params, validStreamName, formatBitrate, codecName } from './common.js';
import { Publisher, availableVideoCodecs } from './publisher.js';

// Kept for older tests and tools that imported it from here.
export { videoCodecPreferences } from './publisher.js';

const $ = (id) => document.getElementById(id);
const q = params();
const name = q.get('stream') || '';
const token = q.get('token') || '';
const publisher = new Publisher({ stream: name, token, signal: q.get('signal') || 'ws' });
window.publisher = publisher;

const BANNER = {
  idle: 'Not publishing: choose a source and press Start',
  starting: 'Opening camera / microphone…',
  connecting: 'Connecting to the gateway…',
  connected: '',
  failed: 'Not publishing',
  stopped: 'Stopped',
};

function num(k, lo, hi) {
  const v = parseInt(q.get(k), 10);
  return v >= lo && v <= hi ? v : 0;
}

function selectedResolution() {
  const [w, h] = $('resolution').value.split('x').map((x) => parseInt(x, 10));
  return { width: w, height: h };
}

function formOptions() {
  const { width, height } = selectedResolution();
  return {
    source: $('source').value,
    cameraId: $('camera').value,
    micId: $('mic').value,
    width,
    height,
    fps: parseInt($('fps').value, 10),
    facingMode: $('facing').value,
    codec: $('codec').value || 'h264',
    maxBitrate: parseInt($('bitrate').value, 10) || 0,
    keepResolution: $('keepres').checked,
  };
}

function ensureOption(sel, value, label) {
  if (![...sel.options].some((o) => o.value === value)) sel.append(new Option(label, value));
  sel.value = value;
}

function applyQuery() {
  const w = num('width', 16, 4096);
  const h = num('height', 16, 4096);
  if (w && h) ensureOption($('resolution'), `${w}x${h}`, `${w}×${h}`);
  const fps = num('fps', 1, 120);
  if (fps) ensureOption($('fps'), String(fps), `${fps} fps`);
  const src = q.get('source');
  if (['camera', 'screen', 'canvas', 'none'].includes(src)) $('source').value = src;
  const br = num('bitrate', 1, 1e9);
  if (br) ensureOption($('bitrate'), String(br), formatBitrate(br));
  const codecs = availableVideoCodecs();
  const sel = $('codec');
  sel.replaceChildren(...codecs.map((c) => new Option(c.name, c.id)));
  const want = (q.get('codec') || 'h264').toLowerCase();
  if (codecs.some((c) => c.id === want)) sel.value = want;
  else if (q.get('codec')) publisher.warn(`This browser cannot send ${want.toUpperCase()}; using ${sel.options[0] ? sel.options[0].text : 'the default'}.`);
  if (q.get('keepres') === '0') $('keepres').checked = false;
}

/** Show what the publisher actually uses (it may have been changed through the API). */
function syncForm() {
  const o = publisher.opts || {};
  if (publisher.source && publisher.source !== 'stream') $('source').value = publisher.source;
  if (o.width && o.height) ensureOption($('resolution'), `${o.width}x${o.height}`, `${o.width}×${o.height}`);
  if (o.fps) ensureOption($('fps'), String(o.fps), `${o.fps} fps`);
}

async function fillDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  const fill = (sel, kind, defLabel, noneLabel, generic) => {
    const keep = sel.value;
    const list = devices.filter((d) => d.kind === kind && d.deviceId && d.deviceId !== 'default');
    sel.replaceChildren();
    sel.append(new Option(defLabel, ''));
    list.forEach((d, i) => sel.append(new Option(d.label || `${generic} ${i + 1}`, d.deviceId)));
    if (noneLabel) sel.append(new Option(noneLabel, 'none'));
    sel.value = [...sel.options].some((o) => o.value === keep) ? keep : '';
  };
  fill($('camera'), 'videoinput', 'Default camera', null, 'Camera');
  fill($('mic'), 'audioinput', 'Default microphone', 'No microphone', 'Microphone');
  const s = publisher.stream;
  if (s) {
    const pick = (sel, t) => {
      const id = t && t.getSettings ? t.getSettings().deviceId : '';
      if (id && [...sel.options].some((o) => o.value === id)) sel.value = id;
    };
    if ($('camera').value === '' && publisher.source === 'camera') pick($('camera'), s.getVideoTracks()[0]);
    if ($('mic').value === '') pick($('mic'), s.getAudioTracks()[0]);
  }
}

function range(c) {
  if (!c || typeof c !== 'object') return Array.isArray(c) ? c.join('/') : c === undefined ? '' : String(c);
  const r = (x) => (Number.isInteger(x) ? x : Math.round(x * 10) / 10);
  return `${r(c.min)}–${r(c.max)}`;
}

function renderTrackInfo() {
  const s = publisher.stream;
  const vt = s && s.getVideoTracks()[0];
  const at = s && s.getAudioTracks()[0];
  if (vt) {
    const st = vt.getSettings ? vt.getSettings() : {};
    const parts = [];
    if (st.width && st.height) parts.push(`${st.width}×${st.height}`);
    if (st.frameRate) parts.push(`${Math.round(st.frameRate * 10) / 10} fps`);
    if (st.facingMode) parts.push(st.facingMode);
    if (st.displaySurface) parts.push(st.displaySurface);
    parts.push(vt.label || publisher.source || '');
    $('i-vsettings').textContent = parts.filter(Boolean).join(' · ');
    const caps = typeof vt.getCapabilities === 'function' ? vt.getCapabilities() : null;
    if (caps && Object.keys(caps).length) {
      const c = [];
      if (caps.width) c.push(`width ${range(caps.width)}`);
      if (caps.height) c.push(`height ${range(caps.height)}`);
      if (caps.frameRate) c.push(`fps ${range(caps.frameRate)}`);
      if (caps.facingMode && caps.facingMode.length) c.push(`facing ${caps.facingMode.join('/')}`);
      $('i-vcaps').textContent = c.join(' · ') || '—';
    } else {
      $('i-vcaps').textContent = publisher.source === 'canvas' ? 'test pattern: any size' : '—';
    }
  } else {
    $('i-vsettings').textContent = '—';
    $('i-vcaps').textContent = '—';
  }
  if (at) {
    const st = at.getSettings ? at.getSettings() : {};
    const parts = [];
    if (st.sampleRate) parts.push(`${st.sampleRate / 1000} kHz`);
    if (st.channelCount) parts.push(`${st.channelCount} ch`);
    if (st.echoCancellation !== undefined) parts.push(`echo cancel ${st.echoCancellation ? 'on' : 'off'}`);
    parts.push(at.label || '');
    $('i-asettings').textContent = parts.filter(Boolean).join(' · ');
  } else {
    $('i-asettings').textContent = '—';
  }
}

function render() {
  const st = publisher.state;
  document.body.dataset.state = st;
  const pill = $('pill');
  pill.textContent = st;
  pill.className = `pill pill-${st}`;
  $('i-state').textContent = st;
  const pc = publisher.pc;
  $('i-conn').textContent = pc ? pc.connectionState : '—';
  $('i-ice').textContent = pc
    ? `${pc.iceConnectionState} (gathering ${pc.iceGatheringState})${publisher.iceRestarts ? `, ${publisher.iceRestarts} restart${publisher.iceRestarts > 1 ? 's' : ''}` : ''}`
    : '—';
  $('i-signal').textContent = publisher.signal === 'ws'
    ? `WebSocket${publisher.ws ? ' (open)' : ''}`
    : `WHIP${publisher.resource ? ` ${new URL(publisher.resource).pathname}` : ''}`;
  const v = publisher.viewers;
  $('i-viewers').textContent = v === null || v === undefined ? '—' : String(v);
  $('viewers-badge').hidden = v === null || v === undefined;
  $('viewers-count').textContent = String(v || 0);
  $('viewers-word').textContent = v === 1 ? 'viewer' : 'viewers';

  const err = $('error');
  err.hidden = !publisher.error;
  err.textContent = publisher.error || '';
  const warn = $('warning');
  warn.hidden = !publisher.warning;
  warn.textContent = publisher.warning || '';

  const busy = st === 'starting' || st === 'connecting' || st === 'connected';
  $('start').disabled = busy || !validStreamName(name);
  $('start').textContent = st === 'failed' || st === 'stopped' ? 'Publish again' : 'Start publishing';
  $('stop').disabled = !busy;
  $('codec').disabled = busy; // the codec is negotiated once
  const hasV = !!(publisher.stream && publisher.stream.getVideoTracks().length);
  const hasA = !!(publisher.stream && publisher.stream.getAudioTracks().length);
  $('mute-video').disabled = !hasV;
  $('mute-audio').disabled = !hasA;
  $('mute-video').textContent = publisher.muted.video ? 'Show video' : 'Hide video';
  $('mute-audio').textContent = publisher.muted.audio ? 'Unmute mic' : 'Mute mic';
  $('mute-video').setAttribute('aria-pressed', String(publisher.muted.video));
  $('mute-audio').setAttribute('aria-pressed', String(publisher.muted.audio));
  $('camera').disabled = $('source').value !== 'camera';
  $('facing').disabled = $('source').value !== 'camera';

  const text = st === 'failed' && publisher.error ? publisher.error : BANNER[st];
  $('banner-text').textContent = text || '';
  const showingMedia = publisher.stream && publisher.stream.getVideoTracks().length;
  $('banner').hidden = !text || (st !== 'failed' && showingMedia && st !== 'starting' && st !== 'connecting');
  $('banner').classList.toggle('banner-error', st === 'failed');
  $('banner').classList.toggle('banner-busy', st === 'starting' || st === 'connecting');
}

function renderMedia() {
  const v = $('preview');
  if (v.srcObject !== publisher.stream) v.srcObject = publisher.stream || null;
  if (publisher.stream) v.play().catch(() => {});
  renderTrackInfo();
}

let prevStats = null;
async function pollStats() {
  const pc = publisher.pc;
  if (!pc || publisher.state === 'stopped' || publisher.state === 'failed') {
    prevStats = null;
    $('live-figures').textContent = '';
    return;
  }
  let report;
  try { report = await pc.getStats(); } catch { return; }
  const now = performance.now();
  const codecs = new Map();
  const out = {};
  report.forEach((r) => {
    if (r.type === 'codec') codecs.set(r.id, r);
    if (r.type === 'outbound-rtp' && (r.kind === 'video' || r.kind === 'audio')) {
      if (!out[r.kind] || (r.bytesSent || 0) > (out[r.kind].bytesSent || 0)) out[r.kind] = r;
    }
  });
  const line = (kind) => {
    const r = out[kind];
    if (!r) return null;
    const c = r.codecId && codecs.get(r.codecId);
    const parts = [c ? codecName(c.mimeType.split('/')[1]) : '?'];
    if (kind === 'video' && r.frameWidth) parts.push(`${r.frameWidth}×${r.frameHeight}`);
    if (kind === 'video' && r.framesPerSecond) parts.push(`${Math.round(r.framesPerSecond)} fps`);
    const p = prevStats && prevStats[kind];
    if (p) {
      const dt = (now - prevStats.at) / 1000;
      if (dt > 0) parts.push(formatBitrate(((r.bytesSent || 0) - (p.bytesSent || 0)) * 8 / dt));
    }
    if (kind === 'video' && r.qualityLimitationReason && r.qualityLimitationReason !== 'none') {
      parts.push(`limited by ${r.qualityLimitationReason}`);
    }
    return parts.join(' · ');
  };
  const v = line('video');
  const a = line('audio');
  $('i-video').textContent = v || (publisher.videoSender ? '…' : '—');
  $('i-audio').textContent = a || (publisher.audioSender ? '…' : '—');
  $('live-figures').textContent = v || '';
  prevStats = { at: now, video: out.video, audio: out.audio };
  renderTrackInfo();
}

async function onSourceChange() {
  render();
  if (!publisher.videoSender) return; // not publishing: used at the next Start
  try {
    const o = formOptions();
    if (o.source === 'none') {
      await publisher.switchSource('video', { track: null, source: 'none' });
    } else {
      await publisher.switchSource('video', o);
    }
    publisher.warn(null);
  } catch (e) {
    publisher.warn(`Could not switch the video source: ${e.message || e}`);
  }
}

async function onConstraintsChange() {
  if (!publisher.videoSender || !publisher.stream) return;
  const o = formOptions();
  try {
    if (publisher.source === 'camera' || publisher.source === 'canvas') {
      await publisher.applyVideoConstraints({ width: o.width, height: o.height, fps: o.fps });
    }
  } catch (e) {
    publisher.warn(`The camera cannot do ${o.width}×${o.height} at ${o.fps} fps: ${e.message || e.name}`);
  }
}

function main() {
  $('stream-name').textContent = name || '(none)';
  $('title-name').textContent = name;
  document.title = `Publish ${name || ''} · mseway`;
  $('watch-link').href = `/watch.html?stream=${encodeURIComponent(name)}${token ? `&token=${encodeURIComponent(token)}` : ''}`;

  publisher.addEventListener('change', render);
  publisher.addEventListener('media', () => { syncForm(); renderMedia(); fillDevices(); render(); });
  applyQuery();

  if (!validStreamName(name)) {
    publisher.error = name
      ? `Invalid stream name "${name}": use 1-64 characters of A-Z a-z 0-9 . _ -`
      : 'No stream name: open publish.html?stream=NAME or start from the stream list.';
    $('watch-link').hidden = true;
    publisher.state = 'failed';
    render();
    return;
  }

  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    publisher.start(formOptions());
  });
  $('stop').addEventListener('click', () => publisher.stop());
  $('keepres').addEventListener('change', () => publisher.setKeepResolution($('keepres').checked));
  $('bitrate').addEventListener('change', () => publisher.setMaxBitrate(parseInt($('bitrate').value, 10) || 0));
  $('source').addEventListener('change', onSourceChange);
  $('camera').addEventListener('change', onSourceChange);
  $('facing').addEventListener('change', onSourceChange);
  $('resolution').addEventListener('change', onConstraintsChange);
  $('fps').addEventListener('change', onConstraintsChange);
  $('mic').addEventListener('change', async () => {
    if (!publisher.pc || !publisher.stream) return;
    try {
      const ok = await publisher.switchSource('audio', { micId: $('mic').value });
      if (!ok) publisher.warn('No audio track was published: stop and start again to add one.');
    } catch (e) {
      publisher.warn(`Could not switch the microphone: ${e.message || e}`);
    }
  });
  $('mute-video').addEventListener('click', () => publisher.setMuted('video', !publisher.muted.video));
  $('mute-audio').addEventListener('click', () => publisher.setMuted('audio', !publisher.muted.audio));
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', fillDevices);
  }
  window.addEventListener('pagehide', () => {
    if (publisher.pc) publisher.stop({ keepalive: true });
  });
  setInterval(pollStats, 1000);

  render();
  fillDevices().finally(() => {
    if (q.get('autostart') === '1') publisher.start(formOptions());
  });
}

main();
