// MSEPlayer: plays a gateway stream (PROTOCOL.md "Watching: MSE over WebSocket") in a
// <video> element through Media Source Extensions.
//
// Three paths, picked by feature detection (or forced with the `mode` option):
//   worker   MediaSource.canConstructInDedicatedWorker: a dedicated worker
//            (mse-worker.js) owns the WebSocket, the MediaSource and the SourceBuffer
//            and transfers `mediaSource.handle`; the page sets video.srcObject.
//   main     MediaSource on the main thread (engine.js StreamEngine in the page).
//   managed  ManagedMediaSource (Safari 17+ where plain MSE is missing), main thread,
//            with disableRemotePlayback set as it requires.
// In every path the page keeps the live-edge controller: it needs video.currentTime
// and video.buffered, which only the element has. The worker is told the playhead
// (eviction, quota) and asked to rebuild after media errors; it reports status
// (bytes, queue, segment counts) every 250 ms.

import { StreamEngine } from './engine.js';

export { WatchSocket, MSEPipeline, StreamEngine } from './engine.js';

const MODULE_URL = import.meta.url;

/**
 * The default base target (seconds behind the live edge), chosen by measurement
 * (docs/BENCHMARKS.md, "Glass-to-glass"): the lowest with no stall over 60 s of a real
 * browser publisher and next to no dropped frames; a jittery path raises the target in
 * force above it (ArrivalJitter), stalls too.
 */
export const DEFAULT_TARGET_LATENCY = 0.05;

/**
 * The least base target for a stream with audio (seconds), also chosen by measurement:
 * Chromium's audio renderer stops with about 0.1 s still buffered and refills before it
 * plays on, so below ~0.15 s a stream with audio stalls there every few seconds (video
 * alone holds 0.05 s). Option audioLatency; 0 turns it off.
 */
export const DEFAULT_AUDIO_LATENCY = 0.15;

/** ws(s)://host/ws/watch/NAME[?token=T]; host = server (an http(s) URL) or the page's. */
export function watchSocketURL(stream, token, loc = globalThis.location, server = '') {
  const base = server ? new URL(server, loc.href) : loc;
  const proto = base.protocol === 'https:' ? 'wss' : 'ws';
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${proto}://${base.host}/ws/watch/${encodeURIComponent(stream)}${q}`;
}

/**
 * Which path this browser can use: {mode, error}. requested: 'auto' (default),
 * 'worker', 'main' or 'managed'. A forced path the browser lacks gives an error.
 */
export function detectMode(requested = 'auto', g = globalThis) {
  const MS = g.MediaSource;
  const MMS = g.ManagedMediaSource;
  const worker = !!(MS && MS.canConstructInDedicatedWorker === true && typeof g.Worker === 'function');
  switch (requested) {
    case 'worker':
      return worker ? { mode: 'worker' } : { mode: null, error: 'MSE in a dedicated worker is not supported by this browser' };
    case 'main':
      return MS ? { mode: 'main' } : { mode: null, error: 'this browser has no MediaSource' };
    case 'managed':
      return MMS ? { mode: 'managed' } : { mode: null, error: 'this browser has no ManagedMediaSource (Safari 17+ has it)' };
    default:
      if (worker) return { mode: 'worker' };
      if (MS) return { mode: 'main' };
      if (MMS) return { mode: 'managed' };
      return { mode: null, error: 'this browser has no MediaSource support' };
  }
}

const VIDEO_EVENTS = ['playing', 'waiting', 'error', 'stalled', 'volumechange', 'ratechange', 'pause', 'loadeddata', 'canplay'];

// In the recording, a playhead this close to now (ms) goes live again.
const CAUGHT_UP_MS = 2000;

const round = (x, d = 3) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

// ---------------------------------------------------------------------------
// Backends: where the StreamEngine runs. Both call player._engineEvent(ev) and
// have the same methods.

class LocalBackend {
  constructor(player, managed) {
    this.player = player;
    this.managed = managed;
    this.objectURL = null;
    const MSClass = managed ? globalThis.ManagedMediaSource : globalThis.MediaSource;
    this.engine = new StreamEngine({
      url: player.url,
      maxQueue: player.maxQueue,
      MSClass,
      audio: player._wantAudio(),
      attach: (ms) => this._attach(ms),
      onEvent: (ev) => {
        if (ev.type === 'mse-open') this._revoke();
        player._engineEvent(ev);
      },
    });
  }

  _attach(ms) {
    const v = this.player.video;
    this._revoke();
    // ManagedMediaSource only opens when remote playback (AirPlay) is off.
    if (this.managed) v.disableRemotePlayback = true;
    v.srcObject = null;
    this.objectURL = URL.createObjectURL(ms);
    v.src = this.objectURL;
  }

  _revoke() {
    if (this.objectURL) URL.revokeObjectURL(this.objectURL);
    this.objectURL = null;
  }

  start() { this.engine.start(); }
  stop() { this.engine.stop(); this._revoke(); }
  send(msg) { return this.engine.send(msg); }
  setPlayhead(t) { this.engine.setPlayhead(t); }
  evict(t, keep) { this.engine.evict(t, keep); }
  rebuild() { this.engine.rebuild(); }
  timeshift(from) { this.engine.timeshift(from); }
  live() { this.engine.live(); }
  stall(ms) { this.engine.stall(ms); }
  setAudio(on) { this.engine.setAudio(on); }
  jitter() { return this.engine.jitter.estimate; }
  status() { return this.engine.status(); }
}

function makeWorker(url) {
  const u = new URL(url, globalThis.location.href);
  if (u.origin === globalThis.location.origin) return new Worker(u, { type: 'module' });
  // Embedded from another site: a worker script must be same-origin, so start a
  // tiny blob worker that imports the gateway's (CORS-enabled) module.
  const src = `import ${JSON.stringify(u.href)};`;
  const blob = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
  const w = new Worker(blob, { type: 'module' });
  setTimeout(() => URL.revokeObjectURL(blob), 10000);
  return w;
}

class WorkerBackend {
  constructor(player) {
    this.player = player;
    this.gotHandle = false;
    this.lastStatus = null;
    this.worker = makeWorker(player.workerURL);
    this.worker.onmessage = (e) => this._onMessage(e.data || {});
    this.worker.onerror = (e) => {
      e.preventDefault();
      player._workerFailed(`worker error: ${e.message || 'could not load mse-worker.js'}`, this);
    };
  }

  _onMessage(m) {
    const p = this.player;
    switch (m.type) {
      case 'handle':
        this.gotHandle = true;
        p.video.removeAttribute('src');
        p.video.srcObject = m.handle;
        break;
      case 'status':
        this.lastStatus = m.status;
        break;
      case 'event':
        p._engineEvent(m.ev);
        break;
      case 'fatal':
        p._workerFailed(m.message, this);
        break;
      default:
    }
  }

  _post(msg) {
    try { this.worker.postMessage(msg); } catch (e) { console.warn('worker postMessage', e); }
  }

  start() { this._post({ type: 'start', url: this.player.url, maxQueue: this.player.maxQueue, audio: this.player._wantAudio() }); }
  setAudio(on) { this._post({ type: 'audio', on }); }
  jitter() { return this.lastStatus ? this.lastStatus.jitter : 0; }
  stop() {
    this._post({ type: 'stop' });
    this.worker.terminate();
  }
  send(msg) { this._post({ type: 'send', msg }); return true; }
  setPlayhead(t) { this._post({ type: 'playhead', t }); }
  evict(t, keep) { this._post({ type: 'evict', t, keep }); }
  rebuild() { this._post({ type: 'rebuild' }); }
  timeshift(from) { this._post({ type: 'timeshift', from }); }
  live() { this._post({ type: 'live' }); }
  stall(ms) { this._post({ type: 'stall', ms }); }
  status() { return this.lastStatus || { bytes: 0, reconnects: 0, queue: 0, segments: 0, inits: 0, buffered: [] }; }
}

// ---------------------------------------------------------------------------

/**
 * Events (EventTarget): 'state' {detail: {state, message}}, 'stats' {detail: stats},
 * 'init' {detail: info}, 'gesture' (playback needs a click).
 * Public fields used by tests: state, message, mode, stats, inits, lastError,
 * targetLatency (current, adaptive), baseLatency.
 *
 * Options:
 *   stream, token, server (gateway http(s) URL; default: the page's origin), url (ws URL)
 *   mode            'auto' | 'worker' | 'main' | 'managed'
 *   targetLatency   base seconds behind the live edge to aim for (default DEFAULT_TARGET_LATENCY)
 *   audioLatency    the least base target while the stream has audio (default DEFAULT_AUDIO_LATENCY; 0: none)
 *   dropAudioWhenMuted  leave the stream's audio out while muted (default true): video alone
 *                   plays at the base target; unmuting reconnects with audio (a short pause)
 *   maxLatency      the adaptive target never rises above this (default max(1, 4 x target))
 *   evictKeep       seconds kept behind the playhead (default 10)
 */
export class MSEPlayer extends EventTarget {
  constructor(video, {
    stream,
    token = '',
    server = '',
    url = '',
    mode = 'auto',
    targetLatency = DEFAULT_TARGET_LATENCY,
    audioLatency = DEFAULT_AUDIO_LATENCY,
    dropAudioWhenMuted = true,
    maxLatency = 0,
    statsIntervalMs = 1000,
    controlIntervalMs = 250,
    evictKeep = 10,
    maxQueue = 200,
    workerURL = new URL('./mse-worker.js', MODULE_URL).href,
  } = {}) {
    super();
    this.video = video;
    this.streamName = stream;
    this.url = url || watchSocketURL(stream, token, globalThis.location, server);
    this.requestedMode = mode || 'auto';
    this.mode = null;
    this.workerURL = workerURL;
    this.baseLatency = targetLatency;
    // The target in force (adaptive): the larger of stallLatency (the base, raised by
    // each stall, creeping back down) and the base plus the arrival jitter measured by
    // the engine (ArrivalJitter in engine.js: the margin a jittery path needs).
    this.targetLatency = targetLatency;
    this.stallLatency = targetLatency;
    this.jitter = 0;
    this.audioLatency = audioLatency > 0 ? audioLatency : 0;
    this.dropAudioWhenMuted = dropAudioWhenMuted !== false;
    this.hasAudio = false; // the current init has an audio track
    this.maxLatency = maxLatency > 0 ? Math.max(maxLatency, targetLatency) : Math.max(1, 4 * targetLatency);
    this.statsIntervalMs = statsIntervalMs;
    this.controlIntervalMs = controlIntervalMs;
    this.evictKeep = evictKeep;
    this.evictEveryMs = Math.min(3000, Math.max(500, evictKeep * 500));
    this.maxQueue = maxQueue;

    this.state = 'connecting';
    this.message = 'connecting';
    this.inits = 0;
    this.lastError = null;
    this.initInfo = null;
    this.stats = {};
    this.seeks = 0;
    this.jumps = 0;
    this.stalls = 0;
    this.stallTime = 0; // seconds spent in stalls (counted when each one ends)
    this.gapJumps = 0;
    this.rebuilds = 0;
    this.needsGesture = false;

    this.backend = null;
    this.started = false; // playhead placed into the buffer and play() called
    this.attachedAt = 0; // when the current MediaSource was attached (performance.now())
    this.prerolled = false; // the element had data at its playhead (readyState >= 2) since then
    this.edgePending = false; // started without the seek to the live edge: do it once it may seek
    this.sinceInit = false; // media of a live init is flowing (not after eos/error)
    this.stopped = true;
    this.userPaused = false;
    this.lastRebuildAt = -Infinity; // a media error in the first seconds is rebuilt too
    this.wantMuted = true; // what the viewer asked for (setMuted); the engine may not change it
    this.rateTrim = true; // catch up by playbackRate (false: this engine cannot, see _rateQuirk)
    this.rateQuirk = ''; // why rate trimming was turned off, for stats and tests
    this.lastRateAt = -Infinity;
    this.trimCheck = null; // {wall, media, rate, underflows}: does a rate above 1 really catch up here?
    this.trimFailures = 0; // windows in a row where it did not (see _checkTrim)
    this.underflows = 0; // the element's 'waiting'/'stalled' events
    this.startedAt = 0;
    this.lastT = NaN;
    this.stallTicks = 0;
    this.inStall = false;
    this.lastStallAt = 0;
    this.lastCreepAt = 0;
    this.lastEvictAt = 0;
    this._timers = [];
    this._statsPrev = null;
    this._frameBase = { decoded: 0, dropped: 0, lastDecoded: 0, lastDropped: 0 };

    video.muted = true; // autoplay policies: start muted, the page offers unmute
    video.defaultMuted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute('playsinline', '');
    try { video.disableRemotePlayback = true; } catch { /* not supported */ }

    this._onVideo = (ev) => this._videoEvent(ev);
    for (const t of VIDEO_EVENTS) video.addEventListener(t, this._onVideo);
    this._onVisibility = () => { if (!document.hidden) this._tick(); };
  }

  // ---- public API -------------------------------------------------------

  start() {
    if (!this.stopped) return;
    const { mode, error } = detectMode(this.requestedMode);
    if (!mode) {
      this._fail(error);
      return;
    }
    this.stopped = false;
    this._setState('connecting', 'connecting');
    this._startBackend(mode);
    this._timers.push(setInterval(() => this._tick(), this.controlIntervalMs));
    this._timers.push(setInterval(() => this._statsTick(), this.statsIntervalMs));
    document.addEventListener('visibilitychange', this._onVisibility);
    // Every field is there from start(), not only after the first interval.
    this._statsTick();
  }

  _startBackend(mode) {
    this.mode = mode;
    this.started = false;
    this.sinceInit = false;
    try {
      this.backend = mode === 'worker' ? new WorkerBackend(this) : new LocalBackend(this, mode === 'managed');
    } catch (e) {
      if (mode === 'worker' && this.requestedMode === 'auto') {
        console.warn('MSE worker unavailable, using the main thread:', e);
        this._startBackend('main');
        return;
      }
      this._fail(`cannot start the player: ${e.message || e}`);
      return;
    }
    this.backend.start();
  }

  /** The worker could not start: fall back to the main thread unless the path was forced. */
  _workerFailed(message, backend) {
    if (backend !== this.backend || this.stopped) return;
    console.warn(message);
    this.lastError = message;
    if (this.requestedMode === 'auto' && !backend.gotHandle && globalThis.MediaSource) {
      backend.stop();
      this._startBackend('main');
      return;
    }
    this._fail(message);
  }

  /** User stop: close the socket (no reconnect) and release the MediaSource. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this._timers.forEach(clearInterval);
    this._timers = [];
    document.removeEventListener('visibilitychange', this._onVisibility);
    if (this.backend) this.backend.stop();
    this.backend = null;
    this.started = false;
    this.video.srcObject = null;
    this.video.removeAttribute('src');
    try { this.video.load(); } catch { /* ignore */ }
    this.sinceInit = false;
    this._setState('ended', 'stopped');
  }

  destroy() {
    this.stop();
    for (const t of VIDEO_EVENTS) this.video.removeEventListener(t, this._onVideo);
  }

  /** Whether the engine should play the stream's audio (not while muted: see dropAudioWhenMuted). */
  _wantAudio() { return !this.dropAudioWhenMuted || !this.wantMuted; }

  setMuted(muted) {
    const hadAudio = this._wantAudio();
    this.wantMuted = !!muted;
    if (this.backend && this._wantAudio() !== hadAudio) this.backend.setAudio(this._wantAudio());
    this.video.muted = !!muted;
    if (!muted && this.video.volume === 0) this.video.volume = 1;
    if (!muted) this.play(); // unmuting inside a click also satisfies autoplay rules
  }

  play() {
    this.userPaused = false;
    this.needsGesture = false;
    this._play();
  }

  pause() {
    this.userPaused = true;
    this.video.pause();
  }

  /** Jump to the live edge now. */
  seekLive() {
    const b = this.video.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    this._seek(Math.max(b.start(b.length - 1), end - this.targetLatency));
    this.userPaused = false;
    this._play();
  }

  // ---- time-shift (recordings) --------------------------------------------

  /**
   * Play the stream's recording from wall-clock time fromMs (ms since the epoch) through
   * the same MediaSource (README "Recording"); goLive() comes back to the live edge.
   * stats.position is then the wall-clock time of the frame shown.
   */
  timeshift(fromMs) {
    if (!this.backend || this.stopped || !Number.isFinite(fromMs)) return false;
    this.timeshifted = true;
    this.tsParts = [];
    this.tsEnd = false; // the last part is fetched
    this.tsSeekTo = fromMs; // seek there once its part is in
    this.speed = this.speed || 1;
    this.started = true; // no live start: the recording's parts place the playhead
    this.sinceInit = false; // no live reports while in the recording
    this.stallTicks = 0;
    this._setState('connecting', 'loading the recording');
    this.backend.timeshift(fromMs);
    this.dispatchEvent(new CustomEvent('timeshift', { detail: { on: true, from: fromMs } }));
    return true;
  }

  /** Back from the recording to the live edge (seekLive when already live). */
  goLive() {
    if (!this.timeshifted) {
      this.seekLive();
      return;
    }
    this.timeshifted = false;
    this.tsParts = [];
    this.tsSeekTo = NaN;
    this.speed = 1;
    this._setSpeedRate(1);
    this.started = false; // the server's init and GOP start at the live edge (_maybeStart)
    this.smoothLatency = NaN;
    this._setState('connecting', 'back to live');
    this.backend.live();
    this.dispatchEvent(new CustomEvent('timeshift', { detail: { on: false } }));
  }

  /** Playback speed in the recording: 1 or 2 (live plays at 1, trimmed by the controller). */
  setSpeed(r) {
    this.speed = r === 2 ? 2 : 1;
    if (this.timeshifted) this._setSpeedRate(this.speed);
  }

  _setSpeedRate(r) {
    const v = this.video;
    if (Math.abs(v.playbackRate - r) < 0.004) return;
    try {
      if ('preservesPitch' in v) v.preservesPitch = true;
      else if ('webkitPreservesPitch' in v) v.webkitPreservesPitch = true;
      v.playbackRate = r;
    } catch { /* ignore */ }
    if (v.muted !== this.wantMuted) v.muted = this.wantMuted; // WebKitGTK unmutes on a rate change
  }

  /** Wall-clock ms of media time t in the recording (NaN when not in a part). */
  _wallAt(t) {
    const parts = this.tsParts || [];
    for (let i = parts.length - 1; i >= 0; i--) {
      const p = parts[i];
      if (t >= p.pos - 0.05) return p.wall + (t - p.pos) * 1000;
    }
    return NaN;
  }

  _tickTimeshift(now, t, b) {
    const v = this.video;
    if (Number.isFinite(this.tsSeekTo)) return; // its part is not in yet
    if (v.paused && !this.userPaused && !this.needsGesture && this._ahead(b, t) > 0.2) this._play();
    this._setSpeedRate(this.speed || 1);
    const moving = Math.abs(t - this.lastT) > 0.001;
    if (!v.paused && !v.seeking && !moving) {
      if (++this.stallTicks >= 2) this._jumpGap();
    } else {
      this.stallTicks = 0;
    }
    if (!v.paused && moving && this.state !== 'playing') this._setState('playing', 'playing the recording');
    this.lastT = t;
    // Caught up with now (at 2x), or played all there was: live again.
    const wall = this._wallAt(t);
    if ((Number.isFinite(wall) && Date.now() - wall < CAUGHT_UP_MS) || (this.tsEnd && b.end(b.length - 1) - t < 0.5)) {
      this.goLive();
    }
    if (now - this.lastEvictAt > this.evictEveryMs) {
      this.lastEvictAt = now;
      this.backend.evict(t, this.evictKeep);
    }
  }

  /** Change the base target latency (seconds). */
  setTargetLatency(s) {
    if (!(s > 0)) return;
    this.baseLatency = s;
    this.targetLatency = s;
    this.stallLatency = s;
    this.maxLatency = Math.max(this.maxLatency, s);
  }

  /** Test hook: the network "stalls" for ms (media is held back, then delivered at once). */
  simulateStall(ms) {
    if (this.backend) this.backend.stall(ms);
  }

  // ---- engine events ----------------------------------------------------

  _engineEvent(ev) {
    if (this.stopped) return;
    if (ev.type !== 'appended' || !this.started) this._trace(ev.type, ev.message || ev.kind || '');
    switch (ev.type) {
      case 'open':
        if (this.state === 'connecting') this._setState('connecting', 'connected, waiting for the server');
        break;
      case 'waiting':
        this.sinceInit = false;
        this._setState('waiting', 'waiting for publisher');
        break;
      case 'init':
        this.inits++;
        this.initInfo = ev.info;
        this.sinceInit = true;
        this.hasAudio = !!(ev.info && Array.isArray(ev.info.tracks) && ev.info.tracks.some((t) => t && t.kind === 'audio'));
        this.dispatchEvent(new CustomEvent('init', { detail: ev.info }));
        if (this.state !== 'playing') this._setState('connecting', 'starting playback');
        break;
      case 'eos':
        this.sinceInit = false;
        this._setState('ended', 'stream ended: waiting for the publisher to return');
        break;
      case 'error':
        this.lastError = ev.message;
        this.sinceInit = false;
        this._setState('error', ev.message);
        break;
      case 'goaway':
        // The gateway is shutting down or draining (not our fault): the
        // socket reconnects at once, to the node it names if it names one.
        this.goaways = (this.goaways || 0) + 1;
        this.sinceInit = false;
        this._setState('connecting', `the gateway is going away${ev.reason ? ` (${ev.reason})` : ''}: reconnecting`);
        break;
      case 'close': {
        const why = ev.error ? `${ev.error}; ` : ev.opened ? 'connection lost; ' : 'cannot reach the gateway; ';
        const msg = `${why}reconnecting in ${ev.retryIn}s`;
        if (this.state === 'error' || this.state === 'ended') {
          this.message = this.state === 'error' ? msg : `stream ended; reconnecting in ${ev.retryIn}s`;
          this._emitState();
        } else {
          this.sinceInit = false;
          this._setState('connecting', msg);
        }
        break;
      }
      case 'pipeline':
      case 'rebuilt':
        this.started = false;
        this.attachedAt = performance.now();
        this.prerolled = false;
        this.edgePending = false;
        break;
      case 'appended':
        if (!this.started) this._maybeStart();
        break;
      case 'mse-error':
        console.warn('MSE:', ev.message);
        this.lastError = ev.message;
        if (ev.fatal) {
          this.sinceInit = false;
          this._setState('error', ev.message);
        }
        break;
      case 'streaming':
        // ManagedMediaSource: back from endstreaming, go to the live edge (the tick does).
        this.streaming = ev.on;
        if (ev.on) this.smoothLatency = NaN;
        break;
      case 'dropped':
        console.warn(`MSE: append queue overflow, dropped ${ev.count} segments`);
        break;
      case 'timeline':
        console.info(`MSE: new timeline mapped to ${Number(ev.to).toFixed(3)}s`);
        break;
      case 'recording':
        if (!this.timeshifted) break;
        this.tsParts.push({ wall: ev.wall, pos: ev.pos, end: ev.end });
        if (this.tsParts.length > 50) this.tsParts.shift();
        if (Number.isFinite(this.tsSeekTo)) {
          this._seek(ev.pos + Math.max(0, this.tsSeekTo - ev.wall) / 1000);
          this.tsSeekTo = NaN;
          this.lastT = NaN;
          if (!this.userPaused) this._play();
        }
        break;
      case 'recording-end':
        // Nothing more to fetch: the recording reaches now (or stops). Once the playhead
        // gets to the end of what is buffered, the live edge again (_tickTimeshift).
        if (!this.timeshifted) break;
        this.tsEnd = true;
        if (!this.tsParts.length) {
          this.lastError = 'nothing recorded at that time';
          this.goLive();
        }
        break;
      case 'recording-error':
        this.lastError = ev.message;
        console.warn('MSE:', ev.message);
        if (this.timeshifted) this.goLive();
        break;
      default:
    }
  }

  // ---- video element ------------------------------------------------------

  _videoEvent(ev) {
    const v = this.video;
    this._trace(`video:${ev.type}`, `muted=${v.muted} rate=${v.playbackRate} paused=${v.paused}`);
    if (v.readyState >= 2) this.prerolled = true;
    switch (ev.type) {
      case 'loadeddata':
      case 'canplay':
        // Data at the playhead at last: the seek to the live edge _maybeStart left.
        // Not while waiting for the viewer's click: the first tick after it goes to the edge.
        if (this.edgePending && this.started && !this.needsGesture && this._canSeek()) {
          this.edgePending = false;
          const b = v.buffered;
          if (b.length) this._seek(Math.max(b.start(b.length - 1), b.end(b.length - 1) - this.targetLatency));
        }
        break;
      case 'playing':
        this.underflowAt = 0;
        if (this.sinceInit && this.state !== 'playing') this._setState('playing', 'playing');
        break;
      case 'waiting':
      case 'stalled':
        this.underflows++; // a rate check spanning it proves nothing (_checkTrim)
        // Ran out of data while playing live (not a seek of ours settling): a stall when
        // the playhead is still stuck at the controller's next tick (a freeze one sees),
        // counted from 5 s after the start (the join settles first). Chromium's audio
        // renderer stops like this with ~0.1 s still buffered: only a higher target helps.
        if (ev.type === 'waiting' && this.started && this.sinceInit && !this.timeshifted && !v.paused && !v.seeking &&
          !this.userPaused && performance.now() - (this.lastSeekAt || 0) > 1000 && performance.now() - this.startedAt > 5000) {
          this.underflowAt = this.underflowAt || performance.now();
        }
        this._jumpGap();
        break;
      case 'volumechange':
        // WebKitGTK (GStreamer) unmutes the element when playbackRate changes; the
        // autoplay policy then pauses it. Only setMuted() may change muted here.
        if (v.muted !== this.wantMuted && performance.now() - this.lastRateAt < 1500) {
          v.muted = this.wantMuted;
          this._rateQuirk('a playbackRate change unmuted the element');
          if (!this.userPaused && this.sinceInit) this._play();
        }
        break;
      case 'pause':
        // Paused by the engine right after a rate change (WebKitGTK's autoplay policy after
        // the unwanted unmute, see volumechange), not by us or a refused autoplay.
        if (!this.userPaused && !this.needsGesture && this.sinceInit && this.started &&
          performance.now() - this.lastRateAt < 1500) setTimeout(() => this._play(), 0);
        break;
      case 'error': {
        if (!this.backend || this.stopped) break;
        const e = v.error;
        const msg = `media error ${e ? e.code : '?'}${e && e.message ? ': ' + e.message : ''}`;
        console.warn(msg);
        this.lastError = msg;
        // Rebuild from the last init (throttled); MSE drops frames until the next keyframe.
        const now = performance.now();
        if (now - this.lastRebuildAt > 2000 && this.sinceInit) {
          this.lastRebuildAt = now;
          this.rebuilds++;
          this.started = false;
          this.backend.rebuild();
          if (this.state !== 'playing') this._setState(this.state, `${msg}; restarting the decoder`);
        } else {
          // Not rebuilt now (too soon after the last one): say so, the next error retries.
          if (this.state !== 'playing') this._setState(this.state, msg);
          else this._emitState();
        }
        break;
      }
      default:
    }
  }

  _play() {
    const v = this.video;
    if (!v.paused) return;
    let p;
    try { p = v.play(); } catch (e) { p = Promise.reject(e); }
    if (p && typeof p.catch === 'function') {
      p.catch((e) => {
        if (e && e.name === 'NotAllowedError') {
          if (!this.needsGesture) {
            this.needsGesture = true;
            this.dispatchEvent(new Event('gesture'));
          }
        } // AbortError: a newer load/seek interrupted it; the next tick retries
      });
    }
  }

  /** A short ring of recent events (player.trace) for debugging and tests. */
  _trace(what, detail = '') {
    const v = this.video;
    const tr = this.trace || (this.trace = []);
    tr.push(`${Math.round(performance.now())} ${what}${detail ? ' ' + detail : ''} rs=${v.readyState} t=${v.currentTime.toFixed(3)}`);
    if (tr.length > 60) tr.shift();
  }

  _seek(t) {
    if (!Number.isFinite(t)) return;
    this._trace('seek', t.toFixed(3));
    this.smoothLatency = NaN;
    this.edgePending = false;
    try {
      this.video.currentTime = t;
      this.seeks++;
      this.lastSeekAt = performance.now();
    } catch (e) {
      console.warn('seek failed', e);
    }
  }

  _setRate(r) {
    const v = this.video;
    if (!this.rateTrim) r = 1;
    // In steps of 0.02 (1 exactly when asked): every playbackRate change resets the
    // engine's audio time-stretcher, which then needs data it may not have yet.
    if (r !== 1) r = Math.max(0.9, Math.round(r * 50) / 50);
    if (Math.abs(v.playbackRate - r) > 0.004) {
      this.lastRateAt = performance.now();
      try {
        // Catch up without chipmunk audio (the default, but say it).
        if ('preservesPitch' in v) v.preservesPitch = true;
        else if ('webkitPreservesPitch' in v) v.webkitPreservesPitch = true;
        v.playbackRate = r;
      } catch { /* ignore */ }
      if (v.muted !== this.wantMuted) { // WebKitGTK: see the volumechange handler
        v.muted = this.wantMuted;
        this._rateQuirk('a playbackRate change unmuted the element');
      }
    }
  }

  /**
   * This engine cannot trim latency by playbackRate (a rate change unmutes, or a rate
   * above 1 does not make the playhead go faster): keep 1.0 and catch up by seeking.
   * A feature check by behaviour, so Safari and the others keep rate trimming.
   */
  _rateQuirk(why) {
    if (!this.rateTrim) return;
    console.warn(`MSE: ${why}: catching up by seeking instead of playbackRate`);
    this._trace('rate-quirk', why);
    this.rateTrim = false;
    this.rateQuirk = why;
    this._setRate(1);
  }

  /**
   * Does a rate above 1 really move the playhead faster? Checked over windows of 3 s of
   * trimming, from 5 s after the start (the element settles first). A window proves
   * nothing when the element ran out of data in it ('waiting') or when the playhead
   * reached the live edge (it gains no more than the data lets it); two failed windows
   * in a row turn rate trimming off (one can be a scheduling hiccup on a busy machine).
   */
  _checkTrim(now, t) {
    const v = this.video;
    if (!this.rateTrim || v.paused || v.seeking || v.playbackRate < 1.05 || now - this.startedAt < 5000) {
      this.trimCheck = null;
      return;
    }
    const c = this.trimCheck;
    if (!c) {
      this.trimCheck = { wall: now, media: t, rate: v.playbackRate, underflows: this.underflows };
      return;
    }
    const wall = (now - c.wall) / 1000;
    if (wall < 3) return;
    const gained = (t - c.media) - wall; // media seconds gained on the wall clock
    const want = (c.rate - 1) * wall;
    this.trimCheck = null;
    const b = v.buffered;
    const ahead = b.length ? b.end(b.length - 1) - t : 0;
    if (this.underflows !== c.underflows || ahead <= this.targetLatency + 0.05) return; // inconclusive
    if (gained >= 0.25 * want) {
      this.trimFailures = 0;
      return;
    }
    if (++this.trimFailures >= 2) {
      this._rateQuirk(`playbackRate ${c.rate.toFixed(2)} gained ${(gained * 1000).toFixed(0)} ms in ${wall.toFixed(1)} s`);
    }
  }

  /**
   * May the player seek now? Not while the element is still prerolling the data at its
   * playhead (readyState < HAVE_CURRENT_DATA with the playhead at or just before the
   * buffered data): WebKit (GStreamer) fails such a seek with media error 4 "Failed to
   * push buffer". A playhead away from all data (joining a running stream) may seek.
   */
  _canSeek() {
    const v = this.video;
    if (v.readyState >= 2) return true;
    if (this._prerolling()) return false;
    const b = v.buffered;
    const t = v.currentTime;
    for (let i = 0; i < b.length; i++) if (t > b.start(i) - 1 && t <= b.end(i)) return false;
    return true;
  }

  /**
   * A MediaSource attached less than 3 s ago whose element has not had data at its
   * playhead yet (readyState < HAVE_CURRENT_DATA all along). WebKitGTK is then still
   * building its GStreamer pipeline (its readyState stays at HAVE_METADATA until that
   * pipeline prerolled), and a seek then can block the page's main thread for good
   * (the flush waits on a pad of the pipeline being built; see web/README.md). The
   * engine's data starts at the playhead (engine.js _anchorTimeline), so nothing needs
   * a seek then; other engines reach HAVE_CURRENT_DATA at once and are not held back.
   */
  _prerolling() {
    if (this.prerolled || this.video.readyState >= 2) {
      this.prerolled = true;
      return false;
    }
    return performance.now() - this.attachedAt < 3000;
  }

  _maybeStart() {
    if (this.started || !this.sinceInit) return;
    const b = this.video.buffered;
    if (!b.length) return;
    const i = b.length - 1;
    // A cold stream starts where the playhead is: play from there, the controller
    // trims the latency once the element has data (see _canSeek).
    const cs = this._canSeek();
    // Not while the element prerolls (see _canSeek): the seek waits for 'canplay'.
    if (cs) this._seek(Math.max(b.start(i), b.end(i) - this.targetLatency));
    this.edgePending = !cs;
    this.started = true;
    this.startedAt = performance.now();
    this.stallTicks = 0;
    this.inStall = false;
    if (!this.userPaused) this._play();
  }

  /** If stalled in front of a hole with data after it, skip to the next range. */
  _jumpGap() {
    // WebKitGTK prerolling a new pipeline fires waiting with the playhead just before
    // the first frame (a few ms of audio cut at 0): it starts by itself, a seek could hang it.
    if (this._prerolling()) return false;
    const v = this.video;
    const b = v.buffered;
    const t = v.currentTime;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.001 && t < b.end(i) - 0.1) return false; // data ahead: not a gap
      if (b.start(i) > t) {
        this.gapJumps++;
        this._seek(b.start(i) + 0.001);
        return true;
      }
    }
    return false;
  }

  /**
   * One stall episode (counted once): raise the target by 0.1 s, up to maxLatency, and
   * remember the target that did not hold: for the next minute the target creeps back
   * down no lower than just above it (see _adaptTarget), so a player does not probe the
   * same too-low target every 20 s. since: how long ago it began (ms).
   */
  _noteStall(now, since = 2 * this.controlIntervalMs) {
    this.lastStallAt = now;
    if (this.inStall) return;
    this.inStall = true;
    this.stallStartedAt = now - since; // the controller notices after two still ticks
    this.stalls++;
    this.failedLatency = this.targetLatency;
    this.stallLatency = Math.min(this.maxLatency, round(this.targetLatency + 0.1));
    this.targetLatency = this.stallLatency;
  }

  /**
   * The target in force: the stall-raised one (back down by 0.025 s every 2.5 s after
   * 10 s without a stall) or the base plus the measured arrival jitter, the larger.
   */
  _adaptTarget(now) {
    if (this.stallLatency > this.baseLatency && now - this.lastStallAt > 10000 && now - this.lastCreepAt > 2500) {
      this.lastCreepAt = now;
      const floor = now - this.lastStallAt < 60000 ? (this.failedLatency || 0) + 0.025 : 0;
      this.stallLatency = Math.max(this.baseLatency, Math.min(this.stallLatency, round(Math.max(floor, this.stallLatency - 0.025))));
    }
    const measured = this.backend ? this.backend.jitter() : 0;
    const j = Number.isFinite(measured) ? Math.max(0, measured) : 0;
    this.jitter = j;
    const base = this.hasAudio ? Math.max(this.baseLatency, this.audioLatency) : this.baseLatency;
    this.targetLatency = Math.min(this.maxLatency, Math.max(this.stallLatency, round(base + j)));
  }

  /** Seconds of media ahead of the playhead in the range that holds it. */
  _ahead(b, t) {
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.05 && t < b.end(i)) return b.end(i) - t;
    }
    return 0;
  }

  /**
   * Live-edge control (every ~250 ms):
   *  - a real stall (playing, readyState < HAVE_FUTURE_DATA or < 0.1 s ahead, time not
   *    moving for 0.5 s) raises the target by 0.1 s (up to maxLatency); after 10 s
   *    without a stall it comes back down by 0.025 s every 2.5 s to the base; the
   *    target is never below the base plus the measured arrival jitter (_adaptTarget);
   *  - latency > target + max(1 s, target) (target + 0.3 s in the first 3 s: the
   *    GOP-cache burst) jumps to end - target;
   *  - a smoothed latency over target + 15 ms plays faster: 1 + 0.5 x excess, at most 1.15x;
   *  - under half the target (or under 40 ms) plays at 0.97x so the buffer refills.
   */
  _tick() {
    if (this.stopped || !this.backend) return;
    const v = this.video;
    const t = v.currentTime;
    this.backend.setPlayhead(t);
    const b = v.buffered;
    if (!b.length) return;
    if (this.timeshifted) {
      this._tickTimeshift(performance.now(), t, b);
      return;
    }
    if (!this.started) {
      this._maybeStart();
      return;
    }
    const now = performance.now();
    const last = b.length - 1;
    const end = b.end(last);
    const latency = end - t;

    // Stall detection and adaptive target.
    const moving = Math.abs(t - this.lastT) > 0.001;
    // Chromium underflows (readyState HAVE_CURRENT_DATA) with up to ~0.1 s still buffered.
    const starved = v.readyState < 3 || this._ahead(b, t) < 0.1;
    if (!v.paused && !v.seeking && !moving && !this.userPaused && this.sinceInit && starved) {
      if (++this.stallTicks >= 2) this._noteStall(now);
      else if (this.underflowAt && now - this.underflowAt >= 200) this._noteStall(now, now - this.underflowAt);
    } else if (moving) {
      this.underflowAt = 0;
      this.stallTicks = 0;
      // Recovered: playing with future data (not "0.1 s ahead": a target below that holds less).
      if (this.inStall && v.readyState >= 3) {
        this.inStall = false;
        this.stallTime += Math.max(0, now - this.stallStartedAt) / 1000;
      }
    }
    this._adaptTarget(now);
    const target = this.targetLatency;
    this._checkTrim(now, t);

    if (this.needsGesture && v.paused) {
      // Waiting for the viewer's click (autoplay refused): leave the element alone;
      // the click plays and the next ticks go to the live edge.
    } else if (!this._canSeek()) {
      // Prerolling (see _canSeek): no seek, no rate change yet.
      if (v.paused && this.sinceInit && !this.userPaused && !this.needsGesture) this._play();
    } else if (t < b.start(0) - 0.05 || t > end + 0.5) {
      // Playhead outside the data (evicted under it, timeline jump): go to the live edge.
      this._seek(Math.max(b.start(last), end - target));
    } else if (!this.userPaused && !this.needsGesture) {
      // (Waiting for a click to start: no seeks; the first tick after it jumps to the edge.)
      const startup = now - this.startedAt < 3000;
      // Without rate trimming (see _rateQuirk) a seek is the only way back.
      const jumpAt = target + (startup ? 0.3 : this.rateTrim ? Math.max(1, target) : Math.max(0.25, target));
      // The buffered end moves in whole frames: steer on a smoothed latency.
      this.smoothLatency = Number.isFinite(this.smoothLatency) ? 0.7 * this.smoothLatency + 0.3 * latency : latency;
      const excess = this.smoothLatency - target;
      if (latency > jumpAt) {
        this.jumps++;
        this._seek(Math.max(b.start(last), end - target));
        this._setRate(1);
        this.smoothLatency = NaN;
      } else if (excess > 0.015) {
        // Gentle: +1 % per 20 ms over the target, at most +15 %.
        this._setRate(Math.min(1.15, 1 + 0.5 * excess));
      } else if (latency < Math.min(0.04, target / 2)) {
        this._setRate(0.97);
      } else {
        this._setRate(1);
      }
      if (v.paused && this.sinceInit) this._play();
    }

    // Stall with data buffered after a hole.
    if (!v.paused && !moving) {
      if (this.stallTicks >= 2) this._jumpGap();
    } else if (!v.paused && this.sinceInit && this.state !== 'playing' && t > this.lastT) {
      this._setState('playing', 'playing');
    }
    this.lastT = t;

    if (now - this.lastEvictAt > this.evictEveryMs) {
      this.lastEvictAt = now;
      this.backend.evict(t, this.evictKeep);
    }
  }

  _statsTick() {
    const v = this.video;
    const now = performance.now();
    const b = v.buffered;
    let latency = null;
    let ahead = null;
    let range = 0;
    if (b.length) {
      const t = v.currentTime;
      latency = Math.max(0, b.end(b.length - 1) - t);
      ahead = this._ahead(b, t);
      range = b.end(b.length - 1) - b.start(0);
    }
    let decoded = 0;
    let dropped = 0;
    if (typeof v.getVideoPlaybackQuality === 'function') {
      const q = v.getVideoPlaybackQuality();
      decoded = q.totalVideoFrames || 0;
      dropped = q.droppedVideoFrames || 0;
    } else if ('webkitDecodedFrameCount' in v) {
      decoded = v.webkitDecodedFrameCount || 0;
      dropped = v.webkitDroppedFrameCount || 0;
    }
    // Counters restart with each MediaSource: keep running totals.
    const fb = this._frameBase;
    if (decoded < fb.lastDecoded) { fb.decoded += fb.lastDecoded; fb.dropped += fb.lastDropped; }
    fb.lastDecoded = decoded;
    fb.lastDropped = dropped;
    const totalDecoded = fb.decoded + decoded;
    const totalDropped = fb.dropped + dropped;
    const st = this.backend ? this.backend.status() : {};
    const bytes = st.bytes || 0;

    let fps = null;
    let bitrate = null;
    const prev = this._statsPrev;
    if (prev) {
      const dt = (now - prev.at) / 1000;
      if (dt > 0) {
        fps = Math.max(0, totalDecoded - prev.decoded) / dt;
        bitrate = Math.max(0, bytes - prev.bytes) * 8 / dt;
      }
    }
    this._statsPrev = { at: now, decoded: totalDecoded, bytes };

    this.stats = {
      state: this.state,
      mode: this.mode,
      latency: round(latency),
      buffered: round(ahead),
      bufferedRange: round(range),
      decodedFrames: totalDecoded,
      droppedFrames: totalDropped,
      fps: round(fps, 1),
      bitrate: round(bitrate, 0),
      bytes,
      width: v.videoWidth || 0,
      height: v.videoHeight || 0,
      playbackRate: round(v.playbackRate, 3),
      currentTime: round(v.currentTime),
      targetLatency: this.targetLatency,
      baseLatency: this.baseLatency,
      jitter: round(this.jitter), // seconds of arrival jitter (95th percentile) the target covers
      audioLeftOut: !!st.audioLeftOut, // the stream's audio is not played (muted: dropAudioWhenMuted)
      segments: st.segments || 0,
      inits: this.inits,
      queue: st.queue || 0,
      seeks: this.seeks,
      jumps: this.jumps,
      stalls: this.stalls,
      stallTime: round(this.stallTime + (this.inStall ? Math.max(0, now - this.stallStartedAt) / 1000 : 0), 2),
      rateTrim: this.rateTrim,
      gapJumps: this.gapJumps,
      rebuilds: this.rebuilds,
      reconnects: st.reconnects || 0,
      failovers: st.failovers || 0, // moves to another cluster node after a drop
      timeshifted: !!this.timeshifted, // playing the recording (timeshift), not live
      speed: this.timeshifted ? this.speed || 1 : 1,
      // Wall-clock ms of the frame shown: in the recording from its parts' times, live
      // the time now less the latency.
      position: this.timeshifted ? round(this._wallAt(v.currentTime), 0) : (latency === null ? null : round(Date.now() - latency * 1000, 0)),
      mediaSources: st.pipelines || 0, // MediaSources made since start (time-shift keeps one)
      nodes: st.nodes || 0,         // cluster nodes known to move to (0: none)
      server: st.url || '',         // the viewer socket's URL (token elided)
      mime: this.initInfo ? this.initInfo.mime : null,
    };
    if (this.backend && latency !== null && this.sinceInit) {
      this.backend.send({
        type: 'stats',
        latency: this.stats.latency,
        buffered: this.stats.buffered,
        decodedFrames: totalDecoded,
        droppedFrames: totalDropped,
        stalls: this.stats.stalls,
        stallTime: this.stats.stallTime,
      });
    }
    this.dispatchEvent(new CustomEvent('stats', { detail: this.stats }));
  }

  // ---- state ----------------------------------------------------------------

  _fail(msg) {
    this.lastError = msg;
    this._setState('error', msg);
  }

  _setState(state, message) {
    const changed = state !== this.state || message !== this.message;
    this.state = state;
    this.message = message || state;
    if (changed) this._emitState();
  }

  _emitState() {
    this.dispatchEvent(new CustomEvent('state', { detail: { state: this.state, message: this.message } }));
  }
}
