// <mse-player>: the gateway's live player as a custom element, for any site.
//
//   <script type="module" src="https://gateway.example.com/mse-player.js"></script>
//   <mse-player stream="demo" latency="0.05"></mse-player>
//
// Attributes (all optional but stream):
//   stream    stream name
//   server    gateway base URL (default: where this module was loaded from)
//   latency   base target latency in seconds (default 0.05; adapts to jitter and stalls)
//   token     viewer token, when the gateway needs one
//   mode      auto | worker | main | managed (MSE path; default auto)
//   keep      seconds of media kept behind the playhead (default 10)
//   unmuted   start with sound (browsers may require a click; a button is shown)
//   stats     show the statistics overlay
// Properties: player (the MSEPlayer: state, stats, ...), state, stats.
// Events: 'state' {detail: {state, message}}, 'stats' {detail: stats}, 'init' {detail: info}.
// Style it from outside with ::part(video), ::part(status), ::part(stats), ::part(unmute).
import { MSEPlayer, DEFAULT_TARGET_LATENCY } from './player.js';
import { validStreamName } from './common.js';

const SERVER = new URL('.', import.meta.url).href;

const CSS = `
:host { display: block; position: relative; background: #000; aspect-ratio: 16 / 9; overflow: hidden;
  font: 12px/1.4 system-ui, sans-serif; color: #e4e8ed; contain: content; }
:host([hidden]) { display: none; }
video { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; background: #000; }
.status { position: absolute; left: 8px; bottom: 8px; display: flex; gap: 6px; align-items: center;
  padding: 2px 8px; border-radius: 10px; background: rgba(10,13,17,.7); pointer-events: none; }
.dot { width: 7px; height: 7px; border-radius: 50%; background: #e3a22b; }
.playing .dot { background: #ef4444; }
.error .dot { background: #f0564a; }
.msg { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%); max-width: 80%; text-align: center;
  padding: 8px 12px; border-radius: 8px; background: rgba(10,13,17,.78); font-size: 14px; }
.stats { position: absolute; left: 8px; top: 8px; padding: 6px 8px; border-radius: 6px; background: rgba(8,10,13,.72);
  font: 11px/1.45 ui-monospace, monospace; white-space: pre; pointer-events: none; }
button { position: absolute; right: 8px; bottom: 8px; font: inherit; padding: 3px 10px; border-radius: 6px; cursor: pointer;
  border: 1px solid rgba(255,255,255,.2); background: rgba(20,25,31,.8); color: inherit; }
[hidden] { display: none !important; }
`;

const TEXT = { connecting: 'Connecting…', waiting: 'Waiting for the stream to start…', ended: 'Stream ended', error: 'Error' };

export class MSEPlayerElement extends HTMLElement {
  static get observedAttributes() {
    return ['stream', 'server', 'latency', 'token', 'mode', 'keep', 'stats'];
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${CSS}</style>
      <video part="video" muted autoplay playsinline disableremoteplayback></video>
      <div class="msg" part="message"></div>
      <div class="stats" part="stats" hidden></div>
      <div class="status" part="status"><span class="dot"></span><span class="label">connecting</span></div>
      <button type="button" part="unmute">Unmute</button>`;
    this.video = root.querySelector('video');
    this._msg = root.querySelector('.msg');
    this._stats = root.querySelector('.stats');
    this._status = root.querySelector('.status');
    this._label = root.querySelector('.label');
    this._btn = root.querySelector('button');
    this._btn.addEventListener('click', () => {
      if (!this.player) return;
      // Autoplay was refused: play as configured (with sound when `unmuted`), inside the click.
      if (this.player.needsGesture) this.player.play();
      else this.player.setMuted(!this.video.muted);
      this._syncButton();
    });
    this.video.addEventListener('volumechange', () => this._syncButton());
    this.player = null;
    this._restartQueued = false;
  }

  get state() { return this.player ? this.player.state : 'idle'; }
  get stats() { return this.player ? this.player.stats : {}; }
  get stream() { return this.getAttribute('stream') || ''; }
  set stream(v) { this.setAttribute('stream', v); }

  connectedCallback() { this._restart(); }

  disconnectedCallback() {
    if (this.player) this.player.destroy();
    this.player = null;
  }

  attributeChangedCallback(name, oldV, newV) {
    if (oldV === newV || !this.isConnected) return;
    if (name === 'latency' && this.player) {
      this.player.setTargetLatency(parseFloat(newV) || DEFAULT_TARGET_LATENCY);
      return;
    }
    if (name === 'stats') {
      this._stats.hidden = !this.hasAttribute('stats');
      return;
    }
    // Several attributes often change together: restart once. On upgrade (the module
    // loaded after the parser created the element) these callbacks come before
    // connectedCallback, whose _restart() already uses every attribute: skip then.
    if (this._restartQueued) return;
    this._restartQueued = true;
    queueMicrotask(() => {
      if (!this._restartQueued || !this.isConnected) return;
      this._restart();
    });
  }

  _syncButton() {
    this._btn.textContent = this.player && this.player.needsGesture ? 'Play' : this.video.muted ? 'Unmute' : 'Mute';
  }

  _restart() {
    this._restartQueued = false;
    if (this.player) this.player.destroy();
    this.player = null;
    this._stats.hidden = !this.hasAttribute('stats');
    const stream = this.stream;
    if (!validStreamName(stream)) {
      this._show('error', stream ? `invalid stream name "${stream}"` : 'no stream attribute');
      return;
    }
    const num = (a, d) => { const v = parseFloat(this.getAttribute(a)); return Number.isFinite(v) && v > 0 ? v : d; };
    const p = new MSEPlayer(this.video, {
      stream,
      server: this.getAttribute('server') || SERVER,
      token: this.getAttribute('token') || '',
      mode: this.getAttribute('mode') || 'auto',
      targetLatency: num('latency', DEFAULT_TARGET_LATENCY),
      evictKeep: num('keep', 10),
    });
    this.player = p;
    p.addEventListener('state', (e) => {
      this._show(e.detail.state, e.detail.message);
      this.dispatchEvent(new CustomEvent('state', { detail: e.detail }));
    });
    p.addEventListener('stats', (e) => {
      const s = e.detail;
      this._label.textContent = s.state === 'playing' && s.latency !== null ? `LIVE · ${Math.round(s.latency * 1000)} ms` : s.state;
      if (!this._stats.hidden) {
        const f = (x, u = 'ms') => (x === null || x === undefined ? '—' : u === 'ms' ? `${Math.round(x * 1000)} ms` : x);
        this._stats.textContent = [
          `latency  ${f(s.latency)} (target ${f(s.targetLatency)})`,
          `buffer   ${f(s.buffered)}`,
          `video    ${s.width}×${s.height} ${s.fps === null ? '' : s.fps.toFixed(0) + ' fps'}`,
          `bitrate  ${s.bitrate === null ? '—' : Math.round(s.bitrate / 1000) + ' kb/s'}`,
          `dropped  ${s.droppedFrames} / ${s.decodedFrames}`,
          `mse      ${s.mode}`,
        ].join('\n');
      }
      this.dispatchEvent(new CustomEvent('stats', { detail: s }));
    });
    p.addEventListener('init', (e) => this.dispatchEvent(new CustomEvent('init', { detail: e.detail })));
    p.addEventListener('gesture', () => this._syncButton());
    this._show('connecting', 'connecting');
    if (this.hasAttribute('unmuted')) p.setMuted(false); // before start: the first connection has audio
    p.start();
    this._syncButton();
  }

  _show(state, message) {
    this._status.className = `status ${state}`;
    if (state !== 'playing') this._label.textContent = state;
    const text = state === 'playing' ? '' : state === 'error' ? `Error: ${message}` : TEXT[state] || message;
    this._msg.textContent = text;
    this._msg.hidden = !text;
  }
}

if (!customElements.get('mse-player')) customElements.define('mse-player', MSEPlayerElement);
