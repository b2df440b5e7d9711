// Publisher: capture (camera, microphone, screen, a canvas test pattern, or a given
// MediaStream) -> RTCPeerConnection -> the gateway, over WS signaling
// (GET /ws/publish/NAME: trickle ICE, live viewer counts) or WHIP (POST /whip/NAME).
// No DOM access besides the optional canvas of the test pattern; publish.js is the page.

import { validStreamName, responseError } from './common.js';

const ICE_GATHER_TIMEOUT_MS = 2000;

/** Video codecs the gateway can take (MSE-playable from fMP4). VP8 is never offered. */
export const VIDEO_CODECS = [
  { id: 'h264', name: 'H.264', mime: 'video/h264' },
  { id: 'vp9', name: 'VP9', mime: 'video/vp9' },
  { id: 'av1', name: 'AV1', mime: 'video/av1' },
];

function h264Score(c) {
  const f = c.sdpFmtpLine || '';
  let s = 0;
  if (/packetization-mode=1/.test(f)) s += 100;
  const m = /profile-level-id=([0-9a-fA-F]{6})/.exec(f);
  const profile = m ? m[1].slice(0, 4).toLowerCase() : '';
  s += { '42e0': 30, '4200': 20, '4d00': 10, '6400': 5 }[profile] || 0;
  if (/level-asymmetry-allowed=1/.test(f)) s += 1;
  return s;
}

function senderVideoCaps() {
  if (typeof RTCRtpSender === 'undefined' || typeof RTCRtpSender.getCapabilities !== 'function') return null;
  return RTCRtpSender.getCapabilities('video');
}

/** The codecs of VIDEO_CODECS this browser can send: [{id, name, mime}]. */
export function availableVideoCodecs(caps = senderVideoCaps()) {
  if (!caps || !Array.isArray(caps.codecs)) return VIDEO_CODECS.slice(0, 1); // cannot tell: offer H.264
  return VIDEO_CODECS.filter((c) => caps.codecs.some((x) => x.mimeType.toLowerCase() === c.mime));
}

/**
 * Codec preference list with `preferred` first (H.264: packetization-mode=1 and
 * Constrained Baseline first), then the other codecs the gateway takes, then RTX.
 * VP8, RED and FEC are left out. Returns {codecs, first} or null.
 */
export function videoCodecPreferences(caps, preferred = 'h264') {
  if (!caps || !Array.isArray(caps.codecs)) return null;
  const of = (mime) => caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  const order = [...VIDEO_CODECS].sort((a, b) => (b.id === preferred) - (a.id === preferred));
  const list = [];
  let first = null;
  for (const c of order) {
    let entries = of(c.mime);
    if (c.id === 'h264') entries = entries.sort((a, b) => h264Score(b) - h264Score(a));
    if (entries.length && !first) first = c.name;
    list.push(...entries);
  }
  if (!list.length) return null;
  return { codecs: [...list, ...of('video/rtx')], first };
}

function setVideoCodecs(transceiver, preferred) {
  if (typeof transceiver.setCodecPreferences !== 'function') {
    return 'this browser cannot set codec preferences; the gateway picks from the offer';
  }
  const tries = [senderVideoCaps()];
  if (typeof RTCRtpReceiver.getCapabilities === 'function') tries.push(RTCRtpReceiver.getCapabilities('video'));
  let lastErr = null;
  for (const caps of tries) {
    const prefs = videoCodecPreferences(caps, preferred);
    if (!prefs) continue;
    try {
      transceiver.setCodecPreferences(prefs.codecs);
      const want = VIDEO_CODECS.find((c) => c.id === preferred);
      return want && prefs.first !== want.name ? `${want.name} is not available in this browser: sending ${prefs.first}` : null;
    } catch (e) {
      lastErr = e; // older engines only accept receiver capabilities: try those
    }
  }
  if (lastErr) return `could not set codec preferences (${lastErr.message}); the gateway picks from the offer`;
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

/** A clear message for a getUserMedia / getDisplayMedia failure. */
export function mediaErrorMessage(e, what) {
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return what === 'screen'
        ? 'Screen sharing was cancelled or denied.'
        : `Permission to use the ${what} was denied. Allow access in the browser's site settings and try again.`;
    case 'NotFoundError':
      return `No ${what.replace(' and ', ' or ')} found. Connect one, or choose "None" / another source.`;
    case 'OverconstrainedError':
      return `The ${what} cannot do ${e.constraint ? `the requested ${e.constraint}` : 'what was asked'} (or it was unplugged). Pick other settings or another device.`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${what} could not be started: it may be in use by another application.`;
    default:
      return `Could not open the ${what}: ${(e && e.message) || e}`;
  }
}

/**
 * A canvas test pattern: moving bars and a clock. Returns {track, stop}.
 * Used as a video source ("Test pattern") and for switching without a camera.
 */
export function testPattern({ width = 640, height = 360, fps = 30, label = 'test pattern' } = {}) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const stream = canvas.captureStream(fps);
  const track = stream.getVideoTracks()[0];
  let n = 0;
  const colors = ['#e4e8ed', '#e3c12b', '#2bc7d4', '#2fbf71', '#c63bd4', '#f0564a', '#3b6bff'];
  const paint = () => {
    const w = canvas.width;
    const h = canvas.height;
    colors.forEach((c, i) => { ctx.fillStyle = c; ctx.fillRect((i * w) / colors.length, 0, w / colors.length + 1, h); });
    ctx.fillStyle = 'rgba(0,0,0,.65)';
    ctx.fillRect(0, h * 0.62, w, h * 0.38);
    ctx.fillStyle = '#fff';
    ctx.fillRect(((n * 4) % (w + 40)) - 40, h * 0.64, 40, h * 0.06);
    ctx.font = `${Math.round(h * 0.12)}px monospace`;
    ctx.textBaseline = 'middle';
    ctx.fillText(new Date().toISOString().slice(11, 23), w * 0.05, h * 0.8);
    ctx.font = `${Math.round(h * 0.06)}px sans-serif`;
    ctx.fillText(`${label} ${w}×${h} #${n}`, w * 0.05, h * 0.93);
    n++;
  };
  paint();
  const timer = setInterval(paint, 1000 / fps);
  track.addEventListener('ended', () => clearInterval(timer));
  const stop = () => { clearInterval(timer); track.stop(); };
  return { track, stop, canvas };
}

function videoConstraints({ deviceId = '', width = 1280, height = 720, fps = 30, facingMode = '' } = {}) {
  const c = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps } };
  if (deviceId) c.deviceId = { exact: deviceId };
  else if (facingMode) c.facingMode = { ideal: facingMode };
  return c;
}

// ---------------------------------------------------------------------------

/**
 * Events: 'change' (state, error, warning, viewers, connection), 'media' (tracks changed).
 * Fields: pc, stream, state (idle|starting|connecting|connected|failed|stopped), error,
 * warning, resource (WHIP session URL), signal ('ws'|'whip'), viewers (number or null),
 * codec (negotiated video codec name), source ('camera'|'screen'|'canvas'|'stream'),
 * videoSender, audioSender, muted {video, audio}.
 */
export class Publisher extends EventTarget {
  constructor({ stream, token = '', signal = 'ws', server = '' }) {
    super();
    this.streamName = stream;
    this.token = token;
    this.signal = signal === 'whip' ? 'whip' : 'ws';
    this.server = server ? new URL(server, location.href) : new URL(location.href);
    this.pc = null;
    this.ws = null;
    this.stream = null;
    this.state = 'idle';
    this.error = null;
    this.warning = null;
    this.resource = null;
    this.viewers = null;
    this.codec = null;
    this.source = null;
    this.videoSender = null;
    this.audioSender = null;
    this.maxBitrate = 0;
    this.muted = { video: false, audio: false };
    this.opts = {};
    this._pattern = null;
    this._gen = 0;
    this._pollTimer = null;
    this.nodes = [];      // in a cluster: the other nodes' base URLs (GET /api/nodes)
    this.failovers = 0;   // publishes moved to another node after a loss
  }

  _set(state, error) {
    this.state = state;
    if (error !== undefined) this.error = error;
    this.dispatchEvent(new CustomEvent('change'));
  }

  _changed() { this.dispatchEvent(new CustomEvent('change')); }

  warn(msg) {
    this.warning = msg;
    this._changed();
  }

  _headers(extra) {
    const h = Object.assign({}, extra);
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  // ---- capture ------------------------------------------------------------

  async _videoTrack(source, o) {
    if (source === 'none') return null;
    if (source === 'canvas') {
      const p = testPattern({ width: o.width || 640, height: o.height || 360, fps: o.fps || 30 });
      this._stopPattern();
      this._pattern = p;
      return p.track;
    }
    const md = navigator.mediaDevices;
    if (!md) {
      throw new Error(window.isSecureContext === false
        ? 'Capture needs a secure page: open this over https:// or http://localhost.'
        : 'This browser has no media capture.');
    }
    if (source === 'screen') {
      if (!md.getDisplayMedia) throw new Error('This browser cannot share the screen.');
      let s;
      try {
        s = await md.getDisplayMedia({ video: { frameRate: { ideal: o.fps || 30 } }, audio: false });
      } catch (e) {
        throw new Error(mediaErrorMessage(e, 'screen'));
      }
      const t = s.getVideoTracks()[0];
      t.addEventListener('ended', () => {
        if (this.stream && this.stream.getVideoTracks()[0] === t) this.warn('Screen sharing ended: viewers see the last frame. Pick a source to continue.');
      });
      return t;
    }
    if (!md.getUserMedia) throw new Error('This browser has no getUserMedia.');
    try {
      const s = await md.getUserMedia({ video: videoConstraints({ deviceId: o.cameraId, width: o.width, height: o.height, fps: o.fps, facingMode: o.facingMode }) });
      return s.getVideoTracks()[0];
    } catch (e) {
      throw new Error(mediaErrorMessage(e, 'camera'));
    }
  }

  async _audioTrack(micId) {
    if (micId === 'none') return null;
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) throw new Error('This browser has no getUserMedia.');
    try {
      const s = await md.getUserMedia({ audio: micId ? { deviceId: { exact: micId } } : true });
      return s.getAudioTracks()[0];
    } catch (e) {
      throw new Error(mediaErrorMessage(e, 'microphone'));
    }
  }

  async _getMedia(o) {
    if (o.stream) return o.stream;
    const source = o.source || 'camera';
    if (source === 'none' && o.micId === 'none') throw new Error('Choose a video source or a microphone (both are "None").');
    // Video and audio separately: a missing microphone must not cost the camera.
    let vt = null;
    let at = null;
    let verr = null;
    let aerr = null;
    try { vt = await this._videoTrack(source, o); } catch (e) { verr = e; }
    try { at = await this._audioTrack(o.micId || ''); } catch (e) { aerr = e; }
    if (!vt && !at) throw verr || aerr || new Error('Nothing to publish.');
    if (verr) this.warn(`${verr.message} Publishing audio only.`);
    else if (aerr) this.warn(`${aerr.message} Publishing video only.`);
    return new MediaStream([vt, at].filter(Boolean));
  }

  _stopPattern() {
    if (this._pattern) this._pattern.stop();
    this._pattern = null;
  }

  // ---- publish --------------------------------------------------------------

  /**
   * Capture and publish. opts: source ('camera'|'screen'|'canvas'|'none'), cameraId,
   * micId ('none' = no audio), width, height, fps, facingMode, codec ('h264'|'vp9'|'av1'),
   * maxBitrate (bits/s, 0 = no cap), keepResolution, stream (a MediaStream to publish as is).
   */
  async start(opts = {}) {
    if (this.state === 'starting' || this.state === 'connecting' || this.state === 'connected') return;
    return this._start(opts, false);
  }

  /** start(), or with reuseMedia a republish of the media already captured (to another node). */
  async _start(opts, reuseMedia) {
    const o = Object.assign({ source: 'camera', codec: 'h264', keepResolution: true, maxBitrate: 0 }, this.opts, opts);
    this.opts = o;
    const gen = ++this._gen;
    const live = () => gen === this._gen;
    this.error = null;
    this.lastServerError = null;
    if (!reuseMedia) this.warning = null;
    this.resource = null;
    this.viewers = null;
    this.codec = null;
    reuseMedia = reuseMedia && !!this.stream;
    if (!reuseMedia) this._stopTracks();
    this._set('starting', null);
    try {
      if (!validStreamName(this.streamName)) throw new Error(`invalid stream name "${this.streamName}"`);
      let stream = this.stream;
      if (!reuseMedia) {
        stream = await this._getMedia(o);
        if (!live()) { if (!o.stream) stream.getTracks().forEach((t) => t.stop()); return; }
        this.stream = stream;
        this.source = o.stream ? 'stream' : o.source;
        this.muted = { video: false, audio: false };
        this.dispatchEvent(new CustomEvent('media'));
      }

      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      this.pc = pc;
      pc.addEventListener('connectionstatechange', () => this._onConnState(pc));
      pc.addEventListener('iceconnectionstatechange', () => this._changed());

      const vt = stream.getVideoTracks()[0];
      const at = stream.getAudioTracks()[0];
      if (vt) {
        if (this.source === 'screen' || this.source === 'canvas') vt.contentHint = this.source === 'screen' ? 'detail' : 'motion';
        const tr = pc.addTransceiver(vt, { direction: 'sendonly', streams: [stream] });
        const w = setVideoCodecs(tr, o.codec);
        if (w) this.warn(w);
        this.videoSender = tr.sender;
      }
      if (at) {
        const tr = pc.addTransceiver(at, { direction: 'sendonly', streams: [stream] });
        setAudioCodecs(tr);
        this.audioSender = tr.sender;
      }
      await pc.setLocalDescription(await pc.createOffer());
      if (!live()) return;
      this._set('connecting');
      if (this.signal === 'ws') await this._negotiateWS(pc, live);
      else await this._negotiateWHIP(pc, live);
      if (!live()) return;
      await this._applySenderParams();
      this.codec = negotiatedVideoCodec(pc.remoteDescription && pc.remoteDescription.sdp);
      const want = VIDEO_CODECS.find((c) => c.id === o.codec);
      if (vt && want && this.codec && this.codec !== want.name) {
        this.warn(`The gateway chose ${this.codec} (${want.name} was preferred).`);
      }
      if (this.signal === 'whip') this._startViewerPolling();
      this._refreshNodes();
      if (pc.connectionState === 'connected') this._set('connected');
      else this._changed();
    } catch (e) {
      if (!live()) return;
      console.warn('publish failed:', e.message || e);
      if (reuseMedia && this._moveOn(e.message || String(e), e.busy)) return;
      this._teardown();
      this._set('failed', e.message || String(e));
    }
  }

  /** In a cluster: the other nodes that serve this stream, from GET /api/nodes?stream=. */
  async _refreshNodes() {
    try {
      const url = new URL(`/api/nodes?stream=${encodeURIComponent(this.streamName)}`, this.server).href;
      const res = await fetch(url, { headers: this._headers({}), cache: 'no-store' });
      if (!res.ok) return;
      const list = await res.json();
      if (!Array.isArray(list)) return;
      this.nodes = list.filter((n) => n && !n.self && typeof n.url === 'string' && /^https?:\/\//.test(n.url)).map((n) => n.url);
    } catch { /* not a cluster, or an older gateway */ }
  }

  /**
   * The publish was lost without a word from the gateway (its node died, or the
   * network to it): publish the same media to the next node of the cluster, if
   * any, and keep trying for a while (a dead node's claim on the name lapses after
   * a few seconds: 409 meanwhile). Returns false when there is nowhere to go.
   */
  _moveOn(why, busy) {
    if (!this.nodes.length || !this.stream) return false;
    this._moveTries = (this._moveTries || 0) + 1;
    if (this._moveTries > 20) { this._moveTries = 0; return false; }
    if (!busy) {
      const cur = this.server.origin;
      const ring = [cur, ...this.nodes.filter((u) => new URL(u).origin !== cur)];
      this.server = new URL(ring[1 % ring.length]);
    }
    this._teardown({ keepMedia: true });
    this.failovers++;
    this.error = null;
    this.warning = `Lost the gateway (${why}); publishing to ${this.server.host}…`;
    this._set('connecting');
    const gen = this._gen;
    setTimeout(() => { if (gen === this._gen) this._start({}, true); }, 300 + Math.random() * 700);
    return true;
  }

  async _negotiateWHIP(pc, live) {
    await waitIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (!live()) return;
    const url = new URL(`/whip/${encodeURIComponent(this.streamName)}`, this.server).href;
    let res;
    try {
      res = await fetch(url, { method: 'POST', headers: this._headers({ 'Content-Type': 'application/sdp' }), body: pc.localDescription.sdp });
    } catch (e) {
      throw new Error(`Cannot reach the gateway (${e.message || e}).`);
    }
    if (!live()) return;
    if (res.status !== 201) {
      const err = new Error(await responseError(res));
      err.busy = res.status === 409;
      throw err;
    }
    const loc = res.headers.get('Location');
    this.etag = res.headers.get('ETag');
    this.iceRestarts = 0;
    if (loc) this.resource = new URL(loc, res.url || url).href;
    else this.warn('The gateway sent no Location header: Stop cannot end the session on the server.');
    const answer = await res.text();
    if (!live()) { this._delete(); return; }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  }

  /** WS signaling: offer out, answer + trickled candidates in, then viewer counts. */
  _negotiateWS(pc, live) {
    return new Promise((resolve, reject) => {
      const proto = this.server.protocol === 'https:' ? 'wss' : 'ws';
      const q = this.token ? `?token=${encodeURIComponent(this.token)}` : '';
      const ws = new WebSocket(`${proto}://${this.server.host}/ws/publish/${encodeURIComponent(this.streamName)}${q}`);
      this.ws = ws;
      let answered = false;
      const early = [];
      const send = (m) => { if (ws.readyState === 1) ws.send(JSON.stringify(m)); };
      this._wsSend = send;
      pc.addEventListener('icecandidate', (ev) => {
        if (ev.candidate && ev.candidate.candidate) send({ type: 'candidate', candidate: ev.candidate.toJSON() });
      });
      ws.onopen = () => send({ type: 'offer', sdp: pc.localDescription.sdp });
      ws.onmessage = async (ev) => {
        if (this.ws !== ws || !live()) return;
        let m;
        try { m = JSON.parse(ev.data); } catch { return; }
        try {
          switch (m.type) {
            case 'answer':
              await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
              if (answered && this._wsRestart) this._wsRestart.resolve(true); // an ICE restart's answer
              answered = true;
              for (const c of early.splice(0)) await pc.addIceCandidate(c).catch(() => {});
              resolve();
              break;
            case 'candidate':
              if (!m.candidate) break;
              if (answered) await pc.addIceCandidate(m.candidate).catch((e) => console.warn('remote candidate', e));
              else early.push(m.candidate);
              break;
            case 'viewers':
              this.viewers = Number(m.count) || 0;
              this._changed();
              break;
            case 'error':
              this.lastServerError = String(m.message || 'error');
              if (!answered) {
                const err = new Error(`Gateway: ${this.lastServerError}`);
                err.busy = /already has a publisher/.test(this.lastServerError);
                reject(err);
              }
              else if (this._wsRestart) this._wsRestart.reject(new Error(`Gateway: ${this.lastServerError}`));
              break;
            default:
          }
        } catch (e) {
          if (!answered) reject(e);
        }
      };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (!answered) {
          reject(new Error(this.lastServerError ? `Gateway: ${this.lastServerError}` : `Cannot reach the gateway signaling (WebSocket closed, code ${ev.code}).`));
          return;
        }
        // Closing the signaling socket ends the publish on the server.
        if (live() && (this.state === 'connected' || this.state === 'connecting')) {
          if (!this.lastServerError && this._moveOn('signaling connection closed')) return;
          this._teardown({ keepMedia: true });
          this._set('failed', this.lastServerError ? `Publish ended: ${this.lastServerError}` : 'The gateway closed the signaling connection (restart or network loss).');
        }
      };
    });
  }

  _startViewerPolling() {
    clearInterval(this._pollTimer);
    const poll = async () => {
      if (this.state !== 'connected' && this.state !== 'connecting') return;
      try {
        const res = await fetch(new URL('/api/streams', this.server).href, { cache: 'no-store' });
        if (!res.ok) return;
        const list = await res.json();
        const s = Array.isArray(list) && list.find((x) => x && x.name === this.streamName);
        const n = s ? Number(s.viewers) || 0 : null;
        if (n !== this.viewers) { this.viewers = n; this._changed(); }
      } catch { /* next time */ }
    };
    poll();
    this._pollTimer = setInterval(poll, 2000);
  }

  async _applySenderParams() {
    const s = this.videoSender;
    if (!s || typeof s.getParameters !== 'function') return;
    try {
      const p = s.getParameters();
      p.degradationPreference = this.opts.keepResolution ? 'maintain-resolution' : 'balanced';
      if (p.encodings && p.encodings.length) {
        if (this.maxBitrate > 0) p.encodings[0].maxBitrate = this.maxBitrate;
        else delete p.encodings[0].maxBitrate;
      }
      await s.setParameters(p);
    } catch (e) {
      console.warn('sender parameters not applied:', e.message || e);
    }
  }

  /** Cap the video bitrate (bits/s; 0 = no cap). Applies at once to a running publish. */
  async setMaxBitrate(bps) {
    this.maxBitrate = bps > 0 ? bps : 0;
    this.opts.maxBitrate = this.maxBitrate;
    await this._applySenderParams();
    this._changed();
  }

  async setKeepResolution(keep) {
    this.opts.keepResolution = !!keep;
    await this._applySenderParams();
  }

  /** Mute (track.enabled = false: black frames / silence, the publish stays up). */
  setMuted(kind, muted) {
    this.muted[kind] = !!muted;
    if (this.stream) for (const t of kind === 'video' ? this.stream.getVideoTracks() : this.stream.getAudioTracks()) t.enabled = !muted;
    this._changed();
  }

  /** Change resolution / frame rate of the running camera without a new track. */
  async applyVideoConstraints({ width, height, fps }) {
    const t = this.stream && this.stream.getVideoTracks()[0];
    if (!t) return false;
    this.opts = Object.assign(this.opts, { width, height, fps });
    if (this.source === 'canvas' && this._pattern) {
      this._pattern.canvas.width = width;
      this._pattern.canvas.height = height;
      this.dispatchEvent(new CustomEvent('media'));
      return true;
    }
    await t.applyConstraints({ width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps } });
    this.dispatchEvent(new CustomEvent('media'));
    return true;
  }

  /**
   * Switch the video source (opts: source, cameraId, width, height, fps, facingMode, track)
   * or the microphone ('audio', {micId}) of a running publish with replaceTrack: no
   * renegotiation, the viewers keep playing.
   */
  async switchSource(kind, opts = {}) {
    const sender = kind === 'video' ? this.videoSender : this.audioSender;
    if (!sender || !this.stream) return false;
    const o = Object.assign({}, this.opts, opts);
    const oldPattern = this._pattern;
    let track;
    if (opts.track) track = opts.track;
    else if (kind === 'video') {
      if (o.source === 'canvas') this._pattern = null; // _videoTrack makes a new one
      track = await this._videoTrack(o.source, o);
    } else track = await this._audioTrack(o.micId || '');
    if (track && kind === 'video') track.contentHint = o.source === 'screen' ? 'detail' : o.source === 'canvas' ? 'motion' : '';
    if (track) track.enabled = !this.muted[kind];
    await sender.replaceTrack(track);
    const old = kind === 'video' ? this.stream.getVideoTracks() : this.stream.getAudioTracks();
    old.forEach((t) => { t.stop(); this.stream.removeTrack(t); });
    if (oldPattern && oldPattern !== this._pattern) oldPattern.stop();
    if (track) this.stream.addTrack(track);
    if (kind === 'video') {
      this.source = opts.track ? 'stream' : o.source;
      Object.assign(this.opts, { source: o.source, cameraId: o.cameraId, width: o.width, height: o.height, fps: o.fps, facingMode: o.facingMode });
    } else this.opts.micId = o.micId;
    this.dispatchEvent(new CustomEvent('media'));
    this._changed();
    return true;
  }

  _onConnState(pc) {
    if (pc !== this.pc) return;
    switch (pc.connectionState) {
      case 'connected':
        this._moveTries = 0;
        this._set('connected');
        break;
      case 'disconnected':
        if (this.state === 'connected') this._set('connecting');
        else this._changed();
        // The path may have changed (Wi-Fi to cellular): restart ICE at once,
        // before the gateway gives the session up (a few seconds).
        this.restartIce().catch((e) => console.warn('ICE restart failed:', e.message || e));
        break;
      case 'failed':
        this._delete();
        if (this._moveOn('ICE/DTLS failed')) break;
        this._teardown({ keepMedia: true });
        this._set('failed', 'Connection to the gateway failed (ICE/DTLS): check network and firewall.');
        break;
      default:
        this._changed();
    }
  }

  /**
   * ICE restart. Over WHIP (RFC 9725 section 4.3.2): new local credentials
   * and candidates go out in a PATCH with If-Match: "*"; the gateway's new
   * ones come back in the 200 and replace the old ones in the remote
   * description. Over WebSocket signaling: a new offer with new credentials,
   * answered on the socket, candidates trickling both ways. Media and codecs
   * stay as they are. Called on 'disconnected'; tests call it.
   */
  async restartIce() {
    const pc = this.pc;
    if (!pc || this._restarting || pc.signalingState !== 'stable') return false;
    if (this.signal === 'ws') return this._restartIceWS(pc);
    if (!this.resource) return false;
    this._restarting = true;
    try {
      pc.restartIce();
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      await waitIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
      if (pc !== this.pc) return false;
      const res = await fetch(this.resource, {
        method: 'PATCH',
        headers: this._headers({ 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' }),
        body: iceFragment(pc.localDescription.sdp),
      });
      if (pc !== this.pc) return false;
      if (res.status !== 200) {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw new Error(await responseError(res));
      }
      const frag = parseIceFragment(await res.text());
      await pc.setRemoteDescription({ type: 'answer', sdp: replaceIce(pc.remoteDescription.sdp, frag) });
      this.etag = res.headers.get('ETag');
      this.iceRestarts++;
      this._changed();
      return true;
    } finally {
      this._restarting = false;
    }
  }

  async _restartIceWS(pc) {
    if (!this.ws || !this._wsSend) return false;
    this._restarting = true;
    try {
      const answered = new Promise((resolve, reject) => { this._wsRestart = { resolve, reject }; });
      const timer = setTimeout(() => this._wsRestart && this._wsRestart.reject(new Error('no answer to the ICE restart')), 10000);
      pc.restartIce();
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      this._wsSend({ type: 'offer', sdp: pc.localDescription.sdp });
      try {
        await answered;
      } catch (e) {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw e;
      } finally {
        clearTimeout(timer);
        this._wsRestart = null;
      }
      this.iceRestarts = (this.iceRestarts || 0) + 1;
      this._changed();
      return true;
    } finally {
      this._restarting = false;
    }
  }

  _delete({ keepalive = false } = {}) {
    const url = this.resource;
    this.resource = null;
    if (!url) return Promise.resolve();
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 3000);
    return fetch(url, { method: 'DELETE', headers: this._headers(), keepalive, signal: ctl.signal })
      .then((res) => { if (!res.ok && res.status !== 404) console.warn(`WHIP DELETE: HTTP ${res.status}`); })
      .catch((e) => console.warn('WHIP DELETE failed:', e.message || e))
      .finally(() => clearTimeout(timer));
  }

  _stopTracks() {
    if (this.stream && this.source !== 'stream') this.stream.getTracks().forEach((t) => t.stop());
    this._stopPattern();
    if (this.stream) {
      this.stream = null;
      this.dispatchEvent(new CustomEvent('media'));
    }
  }

  _teardown({ keepMedia = false } = {}) {
    clearInterval(this._pollTimer);
    this._pollTimer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try { ws.close(1000, 'publisher stopped'); } catch { /* ignore */ }
    }
    if (this.pc) {
      try { this.pc.close(); } catch { /* ignore */ }
    }
    this.videoSender = null;
    this.audioSender = null;
    this.viewers = null;
    if (!keepMedia) this._stopTracks();
  }

  /** Stop: end the session (WHIP DELETE or closing the socket), close, stop the tracks. */
  async stop({ keepalive = false } = {}) {
    this._gen++;
    const del = this._delete({ keepalive });
    this._teardown();
    this.pc = null;
    this._set('stopped', null);
    await del;
  }
}

/** The ICE credentials and candidates of an SDP's first media section, as an RFC 8840 fragment. */
export function iceFragment(sdp) {
  let section = -1;
  let ufrag = '';
  let pwd = '';
  let mid = '0';
  const cands = [];
  for (const l of sdp.split(/\r?\n/)) {
    if (l.startsWith('m=')) section++;
    else if (section > 0) break; // the first section carries the bundle's transport
    else if (l.startsWith('a=ice-ufrag:')) ufrag = l;
    else if (l.startsWith('a=ice-pwd:')) pwd = l;
    else if (l.startsWith('a=mid:')) mid = l.slice(6);
    else if (l.startsWith('a=candidate:') && section === 0) cands.push(l);
  }
  return [ufrag, pwd, 'm=audio 9 UDP/TLS/RTP/SAVPF 0', `a=mid:${mid}`, ...cands, 'a=end-of-candidates']
    .filter(Boolean).join('\r\n') + '\r\n';
}

/** {ufrag, pwd, candidates} from an RFC 8840 fragment. */
export function parseIceFragment(text) {
  const f = { ufrag: '', pwd: '', candidates: [] };
  for (const l of text.split(/\r?\n/)) {
    if (l.startsWith('a=ice-ufrag:')) f.ufrag = l.slice(12);
    else if (l.startsWith('a=ice-pwd:')) f.pwd = l.slice(10);
    else if (l.startsWith('a=candidate:')) f.candidates.push(l);
  }
  if (!f.ufrag || !f.pwd) throw new Error('the gateway answered the ICE restart without ice-ufrag/ice-pwd');
  return f;
}

/** sdp with its ICE credentials and candidates replaced (candidates go in the first media section). */
export function replaceIce(sdp, frag) {
  const out = [];
  let section = -1;
  const flush = () => out.push(...frag.candidates, 'a=end-of-candidates');
  for (const l of sdp.replace(/\r?\n$/, '').split(/\r?\n/)) {
    if (l.startsWith('m=')) { if (section === 0) flush(); section++; out.push(l); continue; }
    if (l.startsWith('a=candidate:') || l === 'a=end-of-candidates') continue;
    if (l.startsWith('a=ice-ufrag:')) out.push(`a=ice-ufrag:${frag.ufrag}`);
    else if (l.startsWith('a=ice-pwd:')) out.push(`a=ice-pwd:${frag.pwd}`);
    else out.push(l);
  }
  if (section === 0) flush();
  return out.join('\r\n') + '\r\n';
}

/** The first video codec of an SDP answer (what the gateway picked): 'H.264', 'VP9', ... */
export function negotiatedVideoCodec(sdp) {
  if (!sdp) return null;
  const m = /^m=video \d+ [A-Z/]+ (\d+)/m.exec(sdp);
  if (!m) return null;
  const re = new RegExp(`^a=rtpmap:${m[1]} ([A-Za-z0-9-]+)/`, 'm');
  const r = re.exec(sdp);
  if (!r) return null;
  const n = r[1].toUpperCase();
  return n === 'H264' ? 'H.264' : n;
}
