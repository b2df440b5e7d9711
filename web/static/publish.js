// publish.html: camera + microphone -> WHIP (RFC 9725) -> POST /whip/NAME.
// Query: stream=NAME (required), token=T (sent as Authorization: Bearer T), autostart=1,
// width=, height=, fps= (capture size and rate; default 1280x720 at 30).
// Test hook: window.publisher = {pc, stream, state, error, resource, start(), stop()},
// document.body.dataset.state = idle|starting|connecting|connected|failed|stopped.
import { params, validStreamName, responseError, formatBitrate, codecName } from './common.js';

const $ = (id) => document.getElementById(id);
const ICE_GATHER_TIMEOUT_MS = 2000;

// ---- WebRTC helpers -----------------------------------------------------------

function codecScore(c) {
  const f = c.sdpFmtpLine || '';
  let s = 0;
  if (/packetization-mode=1/.test(f)) s += 100;
  const m = /profile-level-id=([0-9a-fA-F]{6})/.exec(f);
  const profile = m ? m[1].slice(0, 4).toLowerCase() : '';
  s += { '42e0': 30, '4200': 20, '4d00': 10, '6400': 5 }[profile] || 0;
  if (/level-asymmetry-allowed=1/.test(f)) s += 1;
  return s;
}

/**
 * Codec preference list: H.264 (packetization-mode=1 first, Constrained Baseline
 * first), then RTX. RED/ULPFEC/FlexFEC are left out. Without H.264 fall back to what
 * the gateway also accepts: VP9, then AV1. Returns {codecs, name} or null.
 */
export function videoCodecPreferences(caps) {
  if (!caps || !Array.isArray(caps.codecs)) return null;
  const of = (re) => caps.codecs.filter((c) => re.test(c.mimeType));
  const rtx = of(/^video\/rtx$/i);
  const h264 = of(/^video\/h264$/i).sort((a, b) => codecScore(b) - codecScore(a));
  if (h264.length) return { codecs: [...h264, ...rtx], name: 'H.264' };
  const alt = [...of(/^video\/vp9$/i), ...of(/^video\/av1$/i)];
  if (alt.length) return { codecs: [...alt, ...rtx], name: alt[0].mimeType.split('/')[1].toUpperCase() };
  return null;
}

function setVideoCodecs(transceiver) {
  if (typeof transceiver.setCodecPreferences !== 'function') {
    return 'this browser cannot set codec preferences; the gateway picks from the offer';
  }
  const tries = [];
  if (typeof RTCRtpSender.getCapabilities === 'function') tries.push(RTCRtpSender.getCapabilities('video'));
  if (typeof RTCRtpReceiver.getCapabilities === 'function') tries.push(RTCRtpReceiver.getCapabilities('video'));
  let lastErr = null;
  for (const caps of tries) {
    const prefs = videoCodecPreferences(caps);
    if (!prefs) continue;
    try {
      transceiver.setCodecPreferences(prefs.codecs);
      return prefs.name === 'H.264' ? null : `H.264 is not available in this browser: sending ${prefs.name}`;
    } catch (e) {
      lastErr = e; // older engines only accept receiver capabilities: try those
    }
  }
  if (lastErr) return `could not force H.264 (${lastErr.message}); the gateway picks from the offer`;
  return 'this browser offers neither H.264 nor VP9/AV1: the gateway will likely refuse';
}

function setAudioCodecs(transceiver) {
  if (typeof transceiver.setCodecPreferences !== 'function' || typeof RTCRtpSender.getCapabilities !== 'function') return;
  const caps = RTCRtpSender.getCapabilities('audio');
  if (!caps) return;
  const opus = caps.codecs.filter((c) => /^audio\/opus$/i.test(c.mimeType));
  if (!opus.length) return;
  const rest = caps.codecs.filter((c) => !/^audio\/(opus|red)$/i.test(c.mimeType));
  try { transceiver.setCodecPreferences([...opus, ...rest]); } catch { /* keep browser order */ }
}

async function setDegradation(sender, keepResolution) {
  if (!sender || typeof sender.getParameters !== 'function') return;
  try {
    const p = sender.getParameters();
    p.degradationPreference = keepResolution ? 'maintain-resolution' : 'balanced';
    await sender.setParameters(p);
  } catch (e) {
    console.warn('degradationPreference not applied:', e.message || e);
  }
}

function waitIceGathering(pc, timeoutMs) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') { resolve(); return; }
    let timer = null;
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCand);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const onCand = (ev) => { if (!ev.candidate) done(); };
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCand);
    timer = setTimeout(done, timeoutMs);
  });
}

function mediaErrorMessage(e, wanted) {
  const what = wanted.video && wanted.audio ? 'camera and microphone' : wanted.video ? 'camera' : 'microphone';
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Permission to use the ${what} was denied. Allow access in the browser's site settings and press Start again.`;
    case 'NotFoundError':
      return `No ${what.replace(' and ', ' or ')} found. Connect a device or choose "No camera" / "No microphone".`;
    case 'OverconstrainedError':
      return `The selected ${what} is not available (unplugged?). Pick another device.`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${what} could not be started: it may be in use by another application.`;
    default:
      return `Could not open the ${what}: ${(e && e.message) || e}`;
  }
}

// ---- Publisher ------------------------------------------------------------------

/** Capture size and rate: 1280x720 at 30 fps unless the URL asks for
 *  another (?width=640&height=360&fps=15). */
function captureConstraints() {
  const q = new URLSearchParams(location.search);
  const num = (k, d) => { const v = parseInt(q.get(k), 10); return v > 0 && v <= 4096 ? v : d; };
  return { width: { ideal: num('width', 1280) }, height: { ideal: num('height', 720) }, frameRate: { ideal: num('fps', 30) } };
}

export class Publisher extends EventTarget {
  constructor({ stream, token = '' }) {
    super();
    this.streamName = stream;
    this.token = token;
    this.pc = null;
    this.stream = null;
    this.state = 'idle';
    this.error = null;
    this.warning = null;
    this.resource = null; // WHIP session URL from the Location header
    this.videoSender = null;
    this.audioSender = null;
    this._gen = 0;
  }

  _set(state, error) {
    this.state = state;
    if (error !== undefined) this.error = error;
    this.dispatchEvent(new CustomEvent('change'));
  }

  _warn(msg) {
    this.warning = msg;
    this.dispatchEvent(new CustomEvent('change'));
  }

  _headers(extra) {
    const h = Object.assign({}, extra);
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  async _getMedia(cameraId, micId) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error(window.isSecureContext === false
        ? 'Camera access needs a secure page: open this over https:// or http://localhost.'
        : 'This browser has no getUserMedia.');
    }
    const video = cameraId === 'none' ? false : {
      ...captureConstraints(),
      ...(cameraId ? { deviceId: { exact: cameraId } } : {}),
    };
    const audio = micId === 'none' ? false : (micId ? { deviceId: { exact: micId } } : true);
    if (!video && !audio) throw new Error('Choose a camera or a microphone (both are set to "No …").');
    try {
      return await navigator.mediaDevices.getUserMedia({ video, audio });
    } catch (e) {
      // One of the two missing: publish what there is, and say so.
      if (video && audio && (e.name === 'NotFoundError' || e.name === 'OverconstrainedError' || e.name === 'NotReadableError')) {
        for (const [c, label] of [[{ video }, 'microphone'], [{ audio }, 'camera']]) {
          try {
            const s = await navigator.mediaDevices.getUserMedia(c);
            this._warn(`No usable ${label}: publishing ${label === 'camera' ? 'audio' : 'video'} only.`);
            return s;
          } catch { /* try the other */ }
        }
      }
      throw new Error(mediaErrorMessage(e, { video: !!video, audio: !!audio }));
    }
  }

  /** getUserMedia, offer, WHIP POST. Resolves when the answer is set. */
  async start({ cameraId = '', micId = '', keepResolution = true } = {}) {
    if (this.state === 'starting' || this.state === 'connecting' || this.state === 'connected') return;
    const gen = ++this._gen;
    const live = () => gen === this._gen;
    this.error = null;
    this.warning = null;
    this.resource = null;
    if (this.stream) {
      this.stream.getTracks().forEach((t) => t.stop());
      this.stream = null;
    }
    this._set('starting', null);
    try {
      if (!validStreamName(this.streamName)) throw new Error(`invalid stream name "${this.streamName}"`);
      const stream = await this._getMedia(cameraId, micId);
      if (!live()) { stream.getTracks().forEach((t) => t.stop()); return; }
      this.stream = stream;
      this.dispatchEvent(new CustomEvent('media'));

      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      this.pc = pc;
      pc.addEventListener('connectionstatechange', () => this._onConnState(pc));
      pc.addEventListener('iceconnectionstatechange', () => this.dispatchEvent(new CustomEvent('change')));

      const vt = stream.getVideoTracks()[0];
      const at = stream.getAudioTracks()[0];
      if (vt) {
        const tr = pc.addTransceiver(vt, { direction: 'sendonly', streams: [stream] });
        const w = setVideoCodecs(tr);
        if (w) this._warn(w);
        this.videoSender = tr.sender;
        await setDegradation(tr.sender, keepResolution);
      }
      if (at) {
        const tr = pc.addTransceiver(at, { direction: 'sendonly', streams: [stream] });
        setAudioCodecs(tr);
        this.audioSender = tr.sender;
      }

      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await waitIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
      if (!live()) return;

      this._set('connecting');
      const url = `/whip/${encodeURIComponent(this.streamName)}`;
      let res;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: this._headers({ 'Content-Type': 'application/sdp' }),
          body: pc.localDescription.sdp,
        });
      } catch (e) {
        throw new Error(`Cannot reach the gateway (${e.message || e}).`);
      }
      if (!live()) return;
      if (res.status !== 201) throw new Error(await responseError(res));
      const loc = res.headers.get('Location');
      if (loc) this.resource = new URL(loc, res.url || location.href).href;
      else this._warn('The gateway sent no Location header: Stop cannot end the session on the server.');
      const answer = await res.text();
      if (!live()) { this._delete(); return; }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      if (this.videoSender) await setDegradation(this.videoSender, keepResolution);
      this.dispatchEvent(new CustomEvent('change'));
      if (pc.connectionState === 'connected') this._set('connected');
    } catch (e) {
      if (!live()) return;
      console.warn('publish failed:', e.message || e);
      this._teardown();
      this._set('failed', e.message || String(e));
    }
  }

  _onConnState(pc) {
    if (pc !== this.pc) return;
    switch (pc.connectionState) {
      case 'connected':
        this._set('connected');
        break;
      case 'disconnected':
        if (this.state === 'connected') this._set('connecting');
        else this.dispatchEvent(new CustomEvent('change'));
        break;
      case 'failed':
        this._delete();
        this._teardown({ keepMedia: true });
        this._set('failed', 'Connection to the gateway failed (ICE/DTLS): check network and firewall.');
        break;
      default:
        this.dispatchEvent(new CustomEvent('change'));
    }
  }

  _delete({ keepalive = false } = {}) {
    const url = this.resource;
    this.resource = null;
    if (!url) return Promise.resolve();
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = ctl ? setTimeout(() => ctl.abort(), 3000) : null;
    return fetch(url, { method: 'DELETE', headers: this._headers(), keepalive, signal: ctl ? ctl.signal : undefined })
      .then((res) => { if (!res.ok && res.status !== 404) console.warn(`WHIP DELETE: HTTP ${res.status}`); })
      .catch((e) => console.warn('WHIP DELETE failed:', e.message || e))
      .finally(() => clearTimeout(timer));
  }

  _teardown({ keepMedia = false } = {}) {
    if (this.pc) {
      try { this.pc.close(); } catch { /* ignore */ }
    }
    this.videoSender = null;
    this.audioSender = null;
    if (!keepMedia && this.stream) {
      this.stream.getTracks().forEach((t) => t.stop());
      this.stream = null;
      this.dispatchEvent(new CustomEvent('media'));
    }
  }

  /** Stop: DELETE the WHIP resource, close the connection, stop the tracks. */
  async stop({ keepalive = false } = {}) {
    this._gen++;
    const del = this._delete({ keepalive });
    this._teardown();
    this.pc = null;
    this._set('stopped', null);
    await del;
  }

  async setKeepResolution(keep) {
    if (this.videoSender) await setDegradation(this.videoSender, keep);
  }

  /** Swap the camera or microphone of a running publish without renegotiating. */
  async switchDevice(kind, deviceId) {
    const sender = kind === 'video' ? this.videoSender : this.audioSender;
    if (!sender || !this.stream) return false;
    let track = null;
    if (deviceId !== 'none') {
      const c = kind === 'video'
        ? { video: { ...captureConstraints(), ...(deviceId ? { deviceId: { exact: deviceId } } : {}) } }
        : { audio: deviceId ? { deviceId: { exact: deviceId } } : true };
      const s = await navigator.mediaDevices.getUserMedia(c);
      track = kind === 'video' ? s.getVideoTracks()[0] : s.getAudioTracks()[0];
    }
    await sender.replaceTrack(track);
    const old = kind === 'video' ? this.stream.getVideoTracks() : this.stream.getAudioTracks();
    old.forEach((t) => { t.stop(); this.stream.removeTrack(t); });
    if (track) this.stream.addTrack(track);
    this.dispatchEvent(new CustomEvent('media'));
    return true;
  }
}

// ---- page -----------------------------------------------------------------------

const q = params();
const name = q.get('stream') || '';
const token = q.get('token') || '';
const publisher = new Publisher({ stream: name, token });
window.publisher = publisher;

const BANNER = {
  idle: 'Camera is off',
  starting: 'Opening camera and microphone…',
  connecting: 'Connecting to the gateway…',
  connected: '',
  failed: 'Not publishing',
  stopped: 'Stopped',
};

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
    sel.append(new Option(noneLabel, 'none'));
    sel.value = [...sel.options].some((o) => o.value === keep) ? keep : '';
  };
  fill($('camera'), 'videoinput', 'Default camera', 'No camera', 'Camera');
  fill($('mic'), 'audioinput', 'Default microphone', 'No microphone', 'Microphone');
  // Show the devices actually in use.
  const s = publisher.stream;
  if (s) {
    const vt = s.getVideoTracks()[0];
    const at = s.getAudioTracks()[0];
    const pick = (sel, t) => {
      const id = t && t.getSettings ? t.getSettings().deviceId : '';
      if (id && [...sel.options].some((o) => o.value === id)) sel.value = id;
    };
    if ($('camera').value === '') pick($('camera'), vt);
    if ($('mic').value === '') pick($('mic'), at);
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
  $('i-ice').textContent = pc ? `${pc.iceConnectionState} (gathering ${pc.iceGatheringState})` : '—';
  $('i-resource').textContent = publisher.resource || '—';

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

  const text = st === 'failed' && publisher.error ? publisher.error : BANNER[st];
  $('banner-text').textContent = text || '';
  $('banner').hidden = !text || (st !== 'failed' && publisher.stream && st !== 'starting' && st !== 'connecting');
  $('banner').classList.toggle('banner-error', st === 'failed');
  $('banner').classList.toggle('banner-busy', st === 'starting' || st === 'connecting');
}

function renderMedia() {
  const v = $('preview');
  if (v.srcObject !== publisher.stream) v.srcObject = publisher.stream || null;
  if (publisher.stream) v.play().catch(() => {});
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
    if (r.type === 'outbound-rtp' && (r.kind === 'video' || r.kind === 'audio' || r.mediaType)) {
      const kind = r.kind || r.mediaType;
      if (!out[kind] || (r.bytesSent || 0) > (out[kind].bytesSent || 0)) out[kind] = r;
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
}

async function pollViewers() {
  if (publisher.state !== 'connected') return;
  try {
    const res = await fetch('/api/streams', { cache: 'no-store' });
    if (!res.ok) return;
    const list = await res.json();
    const s = Array.isArray(list) && list.find((x) => x && x.name === name);
    $('i-viewers').textContent = s ? String(s.viewers ?? 0) : '—';
  } catch { /* gateway busy; next time */ }
}

function main() {
  $('stream-name').textContent = name || '(none)';
  $('title-name').textContent = name;
  document.title = `Publish ${name || ''} · mseway`;
  $('watch-link').href = `/watch.html?stream=${encodeURIComponent(name)}${token ? `&token=${encodeURIComponent(token)}` : ''}`;

  publisher.addEventListener('change', render);
  publisher.addEventListener('media', () => { renderMedia(); fillDevices(); });

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
    publisher.start({ cameraId: $('camera').value, micId: $('mic').value, keepResolution: $('keepres').checked });
  });
  $('stop').addEventListener('click', () => publisher.stop());
  $('keepres').addEventListener('change', () => publisher.setKeepResolution($('keepres').checked));
  for (const [id, kind] of [['camera', 'video'], ['mic', 'audio']]) {
    $(id).addEventListener('change', async () => {
      if (!publisher.pc || !publisher.stream) return;
      try {
        const ok = await publisher.switchDevice(kind, $(id).value);
        if (!ok) publisher._warn(`No ${kind} track was published: stop and start again to add one.`);
      } catch (e) {
        publisher._warn(`Could not switch ${kind === 'video' ? 'camera' : 'microphone'}: ${e.message || e}`);
      }
    });
  }
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', fillDevices);
  }
  window.addEventListener('pagehide', () => {
    if (publisher.resource) publisher.stop({ keepalive: true });
  });
  setInterval(pollStats, 1000);
  setInterval(pollViewers, 2000);

  render();
  fillDevices().finally(() => {
    if (q.get('autostart') === '1') {
      publisher.start({ cameraId: $('camera').value, micId: $('mic').value, keepResolution: $('keepres').checked });
    }
  });
}

main();
