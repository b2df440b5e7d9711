// MSEPlayer: plays a gateway stream (PROTOCOL.md "Watching: MSE over WebSocket") in a
// <video> element through MediaSource, on the main thread.
//
// Layout, so the transport and MSE work can later move into a dedicated worker:
//   engine.js  WatchSocket (WebSocket, reconnect, init pairing) and MSEPipeline
//              (MediaSource, SourceBuffer, ordered append queue, eviction): no DOM.
//   player.js  this file: owns the <video>, wires socket -> pipeline, keeps the
//              playhead at the live edge, handles stalls and media errors, and
//              reports stats. In a worker build only _createPipeline / the socket
//              wiring change (the pipeline becomes a postMessage proxy and the
//              MediaSource handle is set as video.srcObject).

import { WatchSocket, MSEPipeline, mediaSourceClass } from './engine.js';

export { WatchSocket, MSEPipeline } from './engine.js';

/** ws(s)://host/ws/watch/NAME[?token=T] for the page's origin. */
export function watchSocketURL(stream, token, loc = globalThis.location) {
  const proto = loc.protocol === 'https:' ? 'wss' : 'ws';
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${proto}://${loc.host}/ws/watch/${encodeURIComponent(stream)}${q}`;
}

const round = (x, d = 3) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

/**
 * Events (EventTarget): 'state' {detail: {state, message}}, 'stats' {detail: stats},
 * 'init' {detail: info}, 'gesture' (playback needs a click).
 * Public fields used by tests: state, stats, inits, lastError.
 */
export class MSEPlayer extends EventTarget {
  constructor(video, {
    stream,
    token = '',
    url = '',
    targetLatency = 0.2,
    statsIntervalMs = 1000,
    controlIntervalMs = 250,
    evictKeep = 10,
    maxQueue = 200,
  } = {}) {
    super();
    if (!video) throw new Error('MSEPlayer needs a <video> element');
    this.video = video;
    this.stream = stream;
    this.url = url || watchSocketURL(stream, token);
    this.targetLatency = targetLatency;
    this.statsIntervalMs = statsIntervalMs;
    this.controlIntervalMs = controlIntervalMs;
    this.evictKeep = evictKeep;
    this.maxQueue = maxQueue;

    this.state = 'connecting';
    this.message = 'connecting';
    this.inits = 0;
    this.lastError = null;
    this.initInfo = null;
    this.stats = {};
    this.segments = 0;
    this.seeks = 0;
    this.gapJumps = 0;
    this.rebuilds = 0;
    this.needsGesture = false;

    this.pipeline = null;
    this.socket = null;
    this.started = false; // playhead placed into the buffer and play() called
    this.sinceInit = false; // media of a live init is flowing (not after eos/error)
    this.needRebuild = false; // next init builds a fresh MediaSource (after reconnect)
    this.stopped = true;
    this.userPaused = false;
    this.objectURL = null;
    this.lastRebuildAt = 0;
    this.startedAt = 0;
    this.lastT = NaN;
    this.stallTicks = 0;
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
    for (const t of ['playing', 'waiting', 'error', 'stalled']) video.addEventListener(t, this._onVideo);
    this._onVisibility = () => { if (!document.hidden) this._tick(); };
  }

  // ---- public API -------------------------------------------------------

  start() {
    if (!this.stopped) return;
    if (!mediaSourceClass()) {
      this._fail('this browser has no MediaSource support');
      return;
    }
    this.stopped = false;
    this._setState('connecting', 'connecting');
    this.socket = new WatchSocket(this.url, {
      onOpen: () => this._onOpen(),
      onWaiting: () => this._onWaiting(),
      onInit: (info, data) => this._onInit(info, data),
      onSegment: (data) => this._onSegment(data),
      onEos: () => this._onEos(),
      onError: (msg) => this._onServerError(msg),
      onClose: (c) => this._onClose(c),
    });
    this.socket.start();
    this._timers.push(setInterval(() => this._tick(), this.controlIntervalMs));
    this._timers.push(setInterval(() => this._statsTick(), this.statsIntervalMs));
    document.addEventListener('visibilitychange', this._onVisibility);
  }

  /** User stop: close the socket (no reconnect) and release the MediaSource. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this._timers.forEach(clearInterval);
    this._timers = [];
    document.removeEventListener('visibilitychange', this._onVisibility);
    if (this.socket) this.socket.stop();
    this._destroyPipeline();
    this.video.removeAttribute('src');
    try { this.video.load(); } catch { /* ignore */ }
    this.sinceInit = false;
    this._setState('ended', 'stopped');
  }

  destroy() {
    this.stop();
    for (const t of ['playing', 'waiting', 'error', 'stalled']) this.video.removeEventListener(t, this._onVideo);
  }

  setMuted(muted) {
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

  // ---- socket events ----------------------------------------------------

  _onOpen() {
    if (this.state === 'connecting') this._setState('connecting', 'connected, waiting for the server');
  }

  _onWaiting() {
    this.sinceInit = false;
    this._setState('waiting', 'waiting for publisher');
  }

  _onInit(info, data) {
    this.inits++;
    this.initInfo = info;
    this.sinceInit = true;
    if (this.needRebuild || !this.pipeline) {
      this.needRebuild = false;
      this._createPipeline();
    }
    if (!this.pipeline.handleInit(info, data)) return;
    this.dispatchEvent(new CustomEvent('init', { detail: info }));
    if (this.state !== 'playing') this._setState('connecting', 'starting playback');
  }

  _onSegment(data) {
    this.segments++;
    if (this.pipeline && this.sinceInit) this.pipeline.appendSegment(data);
  }

  _onEos() {
    this.sinceInit = false;
    this._setState('ended', 'stream ended: waiting for the publisher to return');
  }

  _onServerError(msg) {
    this.lastError = msg;
    this.sinceInit = false;
    this._setState('error', msg);
  }

  _onClose({ retryIn, error, opened }) {
    this.needRebuild = true; // the server sends a fresh init on the next connection
    const why = error ? `${error}; ` : opened ? 'connection lost; ' : 'cannot reach the gateway; ';
    const msg = `${why}reconnecting in ${retryIn}s`;
    if (this.state === 'error' || this.state === 'ended') {
      this.message = this.state === 'error' ? msg : `stream ended; reconnecting in ${retryIn}s`;
      this._emitState();
    } else {
      this.sinceInit = false;
      this._setState('connecting', msg);
    }
  }

  // ---- pipeline ---------------------------------------------------------

  _createPipeline() {
    this._destroyPipeline();
    this.started = false;
    this.pipeline = new MSEPipeline({
      maxQueue: this.maxQueue,
      attach: (ms) => {
        if (this.objectURL) URL.revokeObjectURL(this.objectURL);
        this.objectURL = URL.createObjectURL(ms);
        this.video.src = this.objectURL;
      },
      onEvent: (ev) => this._pipelineEvent(ev),
    });
  }

  _destroyPipeline() {
    if (this.pipeline) this.pipeline.destroy();
    this.pipeline = null;
    this.started = false;
    if (this.objectURL) {
      URL.revokeObjectURL(this.objectURL);
      this.objectURL = null;
    }
  }

  _pipelineEvent(ev) {
    switch (ev.type) {
      case 'open':
        if (this.objectURL) {
          URL.revokeObjectURL(this.objectURL);
          this.objectURL = null;
        }
        break;
      case 'appended':
        if (!this.started) this._maybeStart();
        break;
      case 'error':
        console.warn('MSE:', ev.message);
        this.lastError = ev.message;
        if (ev.fatal) {
          this.sinceInit = false;
          this._setState('error', ev.message);
        }
        break;
      case 'rebuilt':
        this.started = false;
        break;
      case 'dropped':
        console.warn(`MSE: append queue overflow, dropped ${ev.count} segments`);
        break;
      case 'timeline':
        console.info(`MSE: new timeline mapped to ${ev.to.toFixed(3)}s`);
        break;
      default:
    }
  }

  // ---- video element ------------------------------------------------------

  _videoEvent(ev) {
    const v = this.video;
    switch (ev.type) {
      case 'playing':
        if (this.sinceInit && this.state !== 'playing') this._setState('playing', 'playing');
        break;
      case 'waiting':
      case 'stalled':
        this._jumpGap();
        break;
      case 'error': {
        if (!this.pipeline || this.stopped) break;
        const e = v.error;
        const msg = `media error ${e ? e.code : '?'}${e && e.message ? ': ' + e.message : ''}`;
        console.warn(msg);
        this.lastError = msg;
        // Rebuild from the last init; MSE drops frames until the next keyframe. Throttled,
        // and otherwise the next init rebuilds.
        const now = performance.now();
        if (now - this.lastRebuildAt > 2000 && this.sinceInit) {
          this.lastRebuildAt = now;
          this.rebuilds++;
          const last = this.pipeline.lastInit;
          this._createPipeline();
          if (last) this.pipeline.handleInit(last.info, last.data);
        } else {
          this.needRebuild = true;
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

  _seek(t) {
    if (!Number.isFinite(t)) return;
    try {
      this.video.currentTime = t;
      this.seeks++;
    } catch (e) {
      console.warn('seek failed', e);
    }
  }

  _setRate(r) {
    const v = this.video;
    if (Math.abs(v.playbackRate - r) > 0.004) {
      try { v.playbackRate = r; } catch { /* ignore */ }
    }
  }

  _maybeStart() {
    if (this.started || !this.sinceInit) return;
    const b = this.video.buffered;
    if (!b.length) return;
    const i = b.length - 1;
    this._seek(Math.max(b.start(i), b.end(i) - this.targetLatency));
    this.started = true;
    this.startedAt = performance.now();
    this.stallTicks = 0;
    if (!this.userPaused) this._play();
  }

  /** If stalled in front of a hole with data after it, skip to the next range. */
  _jumpGap() {
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

  /** Live-edge control, stall recovery and eviction (every ~250 ms). */
  _tick() {
    if (this.stopped) return;
    const v = this.video;
    if (this.pipeline) this.pipeline.playhead = v.currentTime;
    const b = v.buffered;
    if (!b.length) return;
    if (!this.started) {
      this._maybeStart();
      return;
    }
    const target = this.targetLatency;
    const last = b.length - 1;
    const end = b.end(last);
    const t = v.currentTime;
    const latency = end - t;

    if (t < b.start(0) - 0.05 || t > end + 0.5) {
      // Playhead outside the data (evicted under it, timeline jump): go to the live edge.
      this._seek(Math.max(b.start(last), end - target));
    } else if (!this.userPaused) {
      const startup = performance.now() - this.startedAt < 3000;
      const jumpAt = target + (startup ? 0.3 : 1.5); // GOP-cache burst right after start
      if (latency > jumpAt) {
        this._seek(end - target);
        this._setRate(1);
      } else if (latency > target + 0.1) {
        this._setRate(Math.min(1.15, 1.05 + 0.1 * (latency - target - 0.1) / 1.4));
      } else if (latency < target) {
        this._setRate(latency < 0.05 ? 0.97 : 1);
      }
      if (v.paused && this.sinceInit) this._play();
    }

    // Stall with data buffered after a hole.
    if (!v.paused && Math.abs(t - this.lastT) < 0.001) {
      if (++this.stallTicks >= 2) {
        this.stallTicks = 0;
        this._jumpGap();
      }
    } else {
      this.stallTicks = 0;
      if (!v.paused && this.sinceInit && this.state !== 'playing' && t > this.lastT) {
        this._setState('playing', 'playing');
      }
    }
    this.lastT = t;

    const now = performance.now();
    if (this.pipeline && now - this.lastEvictAt > 3000) {
      this.lastEvictAt = now;
      this.pipeline.evict(t, this.evictKeep);
    }
  }

  _statsTick() {
    const v = this.video;
    const now = performance.now();
    const b = v.buffered;
    let latency = null;
    let ahead = null;
    if (b.length) {
      const t = v.currentTime;
      latency = Math.max(0, b.end(b.length - 1) - t);
      ahead = 0;
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) <= t + 0.05 && t < b.end(i)) ahead = b.end(i) - t;
      }
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
    const bytes = this.socket ? this.socket.bytes : 0;

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
      latency: round(latency),
      buffered: round(ahead),
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
      segments: this.segments,
      inits: this.inits,
      queue: this.pipeline ? this.pipeline.pending : 0,
      seeks: this.seeks,
      gapJumps: this.gapJumps,
      rebuilds: this.rebuilds,
      reconnects: this.socket ? Math.max(0, this.socket.connects - 1) : 0,
      mime: this.initInfo ? this.initInfo.mime : null,
    };
    if (this.socket && latency !== null && this.sinceInit) {
      this.socket.send({
        type: 'stats',
        latency: this.stats.latency,
        buffered: this.stats.buffered,
        decodedFrames: totalDecoded,
        droppedFrames: totalDropped,
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
