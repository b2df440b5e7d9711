// Worker-safe parts of the MSE player: the viewer WebSocket (protocol v1, see
// PROTOCOL.md "Watching") and the MediaSource/SourceBuffer append pipeline.
//
// Nothing in this module touches the DOM (no window, document or <video>), so a
// dedicated worker can import it unchanged: there the MediaSource is created in the
// worker and its `handle` is posted to the page instead of a blob URL (see the
// `attach` option of MSEPipeline). Everything that needs the <video> element
// (live-edge control, stall handling, stats) lives in player.js.

const MS = globalThis.MediaSource || globalThis.ManagedMediaSource || globalThis.WebKitMediaSource;

/** The MediaSource constructor this browser has (MediaSource, or ManagedMediaSource on iOS Safari). */
export function mediaSourceClass() {
  return MS;
}

/**
 * Pick the SourceBuffer type to use for an init mime: as sent, or with `Opus`
 * capitalised (some Safari versions only accept that spelling). Returns null when
 * the browser supports neither.
 */
export function resolveMime(mime, MSClass = MS) {
  if (!MSClass || !mime) return null;
  if (MSClass.isTypeSupported(mime)) return mime;
  if (/opus/.test(mime)) {
    const alt = mime.replace(/opus/g, 'Opus');
    if (MSClass.isTypeSupported(alt)) return alt;
  }
  return null;
}

/**
 * The container and each codec's family (its RFC 6381 sample entry, without profile
 * and level) of a SourceBuffer type: 'video/mp4; codecs="avc1.42c01e,opus"' gives
 * 'video/mp4|avc1,opus'. Two types of one family differ only in parameters such as an
 * H.264 level (a resolution change): MSE takes a new init segment of the same family
 * on the same SourceBuffer without changeType.
 */
export function codecFamilies(type) {
  const m = /^([^;]+)(?:;\s*codecs\s*=\s*"?([^"]*)"?)?/i.exec(String(type || '').trim());
  if (!m) return '';
  const codecs = (m[2] || '').split(',').map((c) => c.trim().split('.')[0].toLowerCase()).filter(Boolean).sort();
  return `${m[1].trim().toLowerCase()}|${codecs.join(',')}`;
}

// Time-shift parts: PART_MS of recording per request, the next one asked for when less
// than AHEAD_S seconds are buffered ahead; nothing recorded after a time within
// NEAR_NOW_MS of now is the file being written, asked again a second later.
const PART_MS = 20000;
const AHEAD_S = 8;
const NEAR_NOW_MS = 15000;

/** Bytes of the init segment (up to the end of moov) at the start of buf; 0 if none. */
export function initSegmentLength(buf) {
  const dv = new DataView(buf);
  let off = 0;
  while (off + 8 <= dv.byteLength) {
    let size = dv.getUint32(off);
    const type = String.fromCharCode(dv.getUint8(off + 4), dv.getUint8(off + 5), dv.getUint8(off + 6), dv.getUint8(off + 7));
    if (size === 1 && off + 16 <= dv.byteLength) size = Number(dv.getBigUint64(off + 8));
    if (size < 8 || off + size > dv.byteLength) return 0;
    off += size;
    if (type === 'moov') return off;
    if (type === 'moof') return 0;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Minimal ISO BMFF reading: timescales from an init segment and the earliest
// decode time of a media segment. Used to keep one continuous timeline when a new
// init (new SPS, new publisher) restarts the timestamps.

function* boxes(view, start, end) {
  let p = start;
  while (p + 8 <= end) {
    let size = view.getUint32(p);
    const type = String.fromCharCode(view.getUint8(p + 4), view.getUint8(p + 5), view.getUint8(p + 6), view.getUint8(p + 7));
    let hdr = 8;
    if (size === 1) {
      if (p + 16 > end) return;
      size = Number(view.getBigUint64(p + 8));
      hdr = 16;
    } else if (size === 0) {
      size = end - p;
    }
    if (size < hdr || p + size > end) return;
    yield { type, start: p, body: p + hdr, end: p + size };
    p += size;
  }
}

function child(view, box, type) {
  for (const b of boxes(view, box.body, box.end)) if (b.type === type) return b;
  return null;
}

/** track_ID of a tkhd box (after its creation and modification times: 64-bit in version 1). */
function tkhdTrackID(view, tkhd) {
  return view.getUint32(tkhd.body + (view.getUint8(tkhd.body) === 1 ? 20 : 12));
}

function toView(buf) {
  return buf instanceof DataView ? buf : ArrayBuffer.isView(buf)
    ? new DataView(buf.buffer, buf.byteOffset, buf.byteLength) : new DataView(buf);
}

/** Map of track_ID -> timescale from an init segment (ftyp+moov). Empty on parse failure. */
export function parseInitTimescales(buf) {
  const out = new Map();
  try {
    const v = toView(buf);
    for (const top of boxes(v, 0, v.byteLength)) {
      if (top.type !== 'moov') continue;
      for (const trak of boxes(v, top.body, top.end)) {
        if (trak.type !== 'trak') continue;
        const tkhd = child(v, trak, 'tkhd');
        const mdia = child(v, trak, 'mdia');
        const mdhd = mdia && child(v, mdia, 'mdhd');
        if (!tkhd || !mdhd) continue;
        const id = tkhdTrackID(v, tkhd);
        const mdv = v.getUint8(mdhd.body);
        const ts = v.getUint32(mdhd.body + (mdv === 1 ? 20 : 12));
        if (ts > 0) out.set(id, ts);
      }
    }
  } catch {
    /* truncated or odd box: no timescales */
  }
  return out;
}

/** Earliest baseMediaDecodeTime of a media segment, in seconds; NaN if unknown. */
export function segmentStartTime(buf, timescales) {
  let best = NaN;
  try {
    const v = toView(buf);
    for (const top of boxes(v, 0, v.byteLength)) {
      if (top.type !== 'moof') continue;
      for (const traf of boxes(v, top.body, top.end)) {
        if (traf.type !== 'traf') continue;
        const tfhd = child(v, traf, 'tfhd');
        const tfdt = child(v, traf, 'tfdt');
        if (!tfhd || !tfdt) continue;
        const id = v.getUint32(tfhd.body + 4);
        const ts = timescales.get(id);
        if (!ts) continue;
        const t = v.getUint8(tfdt.body) === 1 ? Number(v.getBigUint64(tfdt.body + 4)) : v.getUint32(tfdt.body + 4);
        const s = t / ts;
        if (Number.isNaN(best) || s < best) best = s;
      }
    }
  } catch {
    /* ignore */
  }
  return best;
}

/** Earliest baseMediaDecodeTime of one track (track_ID) in a media segment, in seconds; NaN if absent. */
export function trackStartTime(buf, timescales, id) {
  const ts = timescales.get(id);
  return ts ? segmentStartTime(buf, new Map([[id, ts]])) : NaN;
}

// ---------------------------------------------------------------------------
// Keeping only some tracks of an fMP4 stream (the player drops audio while muted: see
// player.js, audioLatency). Boxes are copied byte for byte; only the traks/trex of an
// init and the trafs and mdat bytes of a media segment that belong to dropped tracks go,
// and the kept truns' data offsets are rewritten. A layout not understood is returned as
// null: the caller keeps the original.

function concatBytes(parts) {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.byteLength; }
  return out;
}

function boxBytes(type, parts) {
  const body = concatBytes(parts);
  const out = new Uint8Array(8 + body.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, out.byteLength);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  return out;
}

/** The init segment with only the tracks in keep (a Set of track_IDs); null if unreadable. */
export function filterInitTracks(buf, keep) {
  try {
    const v = toView(buf);
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const slice = (b) => bytes.subarray(b.start, b.end);
    const parts = [];
    let sawMoov = false;
    for (const top of boxes(v, 0, v.byteLength)) {
      if (top.type !== 'moov') { parts.push(slice(top)); continue; }
      sawMoov = true;
      const kids = [];
      for (const b of boxes(v, top.body, top.end)) {
        if (b.type === 'trak') {
          const tkhd = child(v, b, 'tkhd');
          if (!tkhd) return null;
          const id = tkhdTrackID(v, tkhd);
          if (keep.has(id)) kids.push(slice(b));
        } else if (b.type === 'mvex') {
          const ex = [];
          for (const e of boxes(v, b.body, b.end)) {
            if (e.type === 'trex' && !keep.has(v.getUint32(e.body + 4))) continue;
            ex.push(slice(e));
          }
          kids.push(boxBytes('mvex', ex));
        } else {
          kids.push(slice(b));
        }
      }
      parts.push(boxBytes('moov', kids));
    }
    return sawMoov ? concatBytes(parts).buffer : null;
  } catch {
    return null;
  }
}

/**
 * A media segment with only the tracks in keep; an empty ArrayBuffer when none of its
 * tracks is kept (nothing to append); null if its layout is not understood.
 */
export function filterSegmentTracks(buf, keep) {
  try {
    const v = toView(buf);
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const whole = (b) => bytes.subarray(b.start, b.end);
    const out = [];
    let plan = null; // the moof before the next mdat: {mfhd, trafs: [{bytes, runs: [{at, start, len}]}]}
    let any = false;
    for (const top of boxes(v, 0, v.byteLength)) {
      if (top.type === 'moof') {
        plan = { moofStart: top.start, head: [], trafs: [] };
        for (const b of boxes(v, top.body, top.end)) {
          if (b.type !== 'traf') { plan.head.push(whole(b)); continue; }
          const tfhd = child(v, b, 'tfhd');
          if (!tfhd) return null;
          const tf = v.getUint32(tfhd.body) & 0xffffff;
          const id = v.getUint32(tfhd.body + 4);
          if (!keep.has(id)) continue;
          if (tf & 0x1) return null; // base_data_offset: not the default-base-is-moof layout
          let p = tfhd.body + 8;
          if (tf & 0x2) p += 4; // sample_description_index
          if (tf & 0x8) p += 4; // default_sample_duration
          const defSize = tf & 0x10 ? v.getUint32(p) : -1;
          const copy = whole(b).slice(); // patched below: the truns' data offsets
          const trafStart = b.start;
          const runs = [];
          for (const r of boxes(v, b.body, b.end)) {
            if (r.type !== 'trun') continue;
            const fl = v.getUint32(r.body) & 0xffffff;
            const count = v.getUint32(r.body + 4);
            if (!(fl & 0x1)) return null; // no data_offset: not ours
            const off = v.getInt32(r.body + 8);
            let q = r.body + 12 + (fl & 0x4 ? 4 : 0);
            const per = (fl & 0x100 ? 4 : 0) + (fl & 0x200 ? 4 : 0) + (fl & 0x400 ? 4 : 0) + (fl & 0x800 ? 4 : 0);
            let len = 0;
            for (let i = 0; i < count; i++) {
              if (fl & 0x200) len += v.getUint32(q + (fl & 0x100 ? 4 : 0));
              else if (defSize >= 0) len += defSize;
              else return null;
              q += per;
            }
            runs.push({ at: r.body + 8 - trafStart, start: plan.moofStart + off, len });
          }
          plan.trafs.push({ bytes: copy, runs });
        }
        continue;
      }
      if (top.type === 'mdat' && plan) {
        const p = plan;
        plan = null;
        if (!p.trafs.length) continue; // nothing of this fragment is kept
        any = true;
        const moofSize = 8 + p.head.reduce((n, h) => n + h.byteLength, 0) + p.trafs.reduce((n, t) => n + t.bytes.byteLength, 0);
        const data = [];
        let pos = moofSize + 8; // the new mdat's payload, from the new moof's start
        for (const t of p.trafs) {
          const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
          for (const r of t.runs) {
            if (r.start < top.body || r.start + r.len > top.end) return null;
            dv.setInt32(r.at, pos);
            data.push(bytes.subarray(r.start, r.start + r.len));
            pos += r.len;
          }
        }
        out.push(boxBytes('moof', [...p.head, ...p.trafs.map((t) => t.bytes)]));
        out.push(boxBytes('mdat', data));
        continue;
      }
      if (plan) return null; // a moof not followed by its mdat
      out.push(whole(top));
    }
    if (plan) return null;
    return any ? concatBytes(out).buffer : new ArrayBuffer(0);
  } catch {
    return null;
  }
}

/**
 * ArrivalJitter: how late media arrives against its own clock, the margin a live
 * player needs above one frame so its buffer never runs dry (the idea of a WebRTC
 * jitter buffer's target delay). For each media segment, transit = arrival time -
 * decode time of its first sample (of the video track when there is one). The least
 * transit over the window is the path's base; a segment's lateness is its transit
 * above that base; the estimate is the 95th percentile of lateness over the last
 * WINDOW_S seconds. A new init starts a new window (its timeline may restart), and
 * the segments of the first SETTLE_S after it are left out: the server sends the
 * cached GOP right after the init, media from before the join arriving at once.
 * Until a window has MIN_SAMPLES, the previous window's estimate stands.
 */
export class ArrivalJitter {
  static WINDOW_S = 10;
  static SETTLE_S = 1;
  static MIN_SAMPLES = 30;

  constructor() {
    this.samples = []; // {at, transit}, arrival order
    this.timescales = new Map();
    this.trackId = undefined;
    this.initAt = -Infinity;
    this.last = 0; // seconds: the estimate of the previous window (see estimate)
    this.dirty = false; // samples changed since the estimate was last computed
  }

  /** A new init at time now (seconds): its timescales, and the track to follow. */
  reset(initData, tracks, now) {
    this.timescales = parseInitTimescales(initData);
    const video = Array.isArray(tracks) && tracks.find((t) => t && t.kind === 'video' && this.timescales.has(t.id));
    this.trackId = video ? video.id : undefined;
    this.samples = [];
    this.initAt = now;
  }

  /** A media segment that arrived at time now (seconds). */
  add(data, now) {
    if (now - this.initAt < ArrivalJitter.SETTLE_S) return;
    const t = this.trackId !== undefined ? trackStartTime(data, this.timescales, this.trackId) : segmentStartTime(data, this.timescales);
    if (!Number.isFinite(t)) return; // another track's segment, or none parsed
    const s = this.samples;
    s.push({ at: now, transit: now - t });
    let drop = 0;
    while (drop < s.length && now - s[drop].at > ArrivalJitter.WINDOW_S) drop++;
    if (drop) s.splice(0, drop);
    this.dirty = true;
  }

  /** Seconds; computed when asked (a few times a second), not per segment. */
  get estimate() {
    if (this.dirty && this.samples.length >= ArrivalJitter.MIN_SAMPLES) this.last = this._p95();
    this.dirty = false;
    return this.last;
  }

  _p95() {
    let base = Infinity;
    for (const x of this.samples) base = Math.min(base, x.transit);
    const late = this.samples.map((x) => x.transit - base).sort((a, b) => a - b);
    return late[Math.min(late.length - 1, Math.floor(0.95 * late.length))];
  }
}

function trackSignature(tracks) {
  if (!Array.isArray(tracks)) return '';
  const n = { video: 0, audio: 0, other: 0 };
  for (const t of tracks) n[t && (t.kind === 'video' || t.kind === 'audio') ? t.kind : 'other']++;
  return `v${n.video}a${n.audio}o${n.other}`;
}

// ---------------------------------------------------------------------------

/**
 * The viewer WebSocket with reconnect. Calls handlers:
 *   onOpen(), onWaiting(), onInit(info, initSegment:ArrayBuffer), onSegment(ArrayBuffer),
 *   onEos(), onError(message), onGoaway(msg), onClose({code, reason, retryIn}), onMessage(obj)
 *   for unknown text.
 * Reconnects with exponential backoff (0.5 s .. 8 s) after every close, unless stop()ped. After
 * a goaway (PROTOCOL.md "Drain": the server is shutting down or draining) it reconnects soon,
 * with jitter so a whole audience does not come back at once, to the goaway's url when it names
 * a ws:/wss: one.
 *
 * In a cluster, once connected it reads the other live nodes from GET /api/nodes?stream= (every
 * node serves every stream), again at a later connection or init at most every 30 s. When the connection drops without a
 * goaway or an error message (the node crashed, or its network went), it moves on to the next
 * node of that list within a second instead of backing off on a dead one.
 */
export class WatchSocket {
  constructor(url, handlers = {}, { minBackoff = 500, maxBackoff = 8000 } = {}) {
    this.url = url;
    this.h = handlers;
    this.minBackoff = minBackoff;
    this.maxBackoff = maxBackoff;
    this.backoff = minBackoff;
    this.ws = null;
    this.stopped = true;
    this.timer = null;
    this.pendingInit = null;
    this.connects = 0;
    this.bytes = 0;
    this.messages = 0;
    this.lastErrorMessage = null;
    this.rotation = [];     // ws URLs of the stream on every node, this.url's first
    this.nodesAt = 0;       // when the node list was last asked for (ms), 0: never
    this.nodesAbort = null;
    this.failovers = 0;
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  /** The node list of the gateway this.url points at: GET /api/nodes?stream= (cluster only). */
  async _refreshNodes() {
    const now = Date.now();
    if (this.nodesAbort || (this.nodesAt && now - this.nodesAt < 30000)) return;
    this.nodesAt = now;
    let api, token = '';
    try {
      const u = new URL(this.url);
      const m = /^\/ws\/watch\/([^/]+)$/.exec(u.pathname);
      if (!m) return;
      token = u.searchParams.get('token') || '';
      api = new URL(`/api/nodes?stream=${m[1]}`, u.href.replace(/^ws/, 'http'));
    } catch { return; }
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    this.nodesAbort = ctl || true;
    const timer = setTimeout(() => ctl && ctl.abort(), 5000);
    try {
      const res = await fetch(api, { headers: token ? { Authorization: `Bearer ${token}` } : {}, signal: ctl ? ctl.signal : undefined, credentials: 'omit' });
      if (!res.ok) return;
      const nodes = await res.json();
      if (!Array.isArray(nodes)) return;
      const others = [];
      for (const n of nodes) {
        if (!n || n.self || typeof n.watch !== 'string' || !/^wss?:\/\//.test(n.watch)) continue;
        try {
          const next = new URL(n.watch);
          if (token && !next.searchParams.has('token')) next.searchParams.set('token', token);
          others.push(next.toString());
        } catch { /* skip */ }
      }
      this.rotation = others.length ? [this.url, ...others.filter((x) => x !== this.url)] : [];
    } catch { /* no cluster, or the node is going: keep the old list */ } finally {
      clearTimeout(timer);
      this.nodesAbort = null;
    }
  }

  /** The next node of the rotation after this.url (null: none known). */
  _nextNode() {
    if (this.rotation.length < 2) return null;
    const i = this.rotation.indexOf(this.url);
    return this.rotation[(i + 1) % this.rotation.length];
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, 'viewer stopped'); } catch { /* already closed */ }
    }
  }

  get open() {
    return !!this.ws && this.ws.readyState === 1;
  }

  send(obj) {
    if (!this.open) return false;
    try {
      this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  _call(name, ...args) {
    const f = this.h[name];
    if (typeof f === 'function') {
      try { f(...args); } catch (e) { console.error(`WatchSocket ${name} handler`, e); }
    }
  }

  _connect() {
    if (this.stopped) return;
    this.pendingInit = null;
    this.lastErrorMessage = null;
    this.goaway = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._call('onError', `cannot open WebSocket: ${e.message || e}`);
      this._scheduleReconnect(0, String(e));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.connects++;
    this.opened = false;
    ws.onopen = () => { this.opened = true; this._call('onOpen'); };
    ws.onmessage = (ev) => this._onMessage(ev);
    ws.onerror = () => { /* a close event always follows */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._scheduleReconnect(ev.code, ev.reason);
    };
  }

  _scheduleReconnect(code, reason) {
    if (this.stopped) return;
    // After a server error (auth, stream unknown, too far behind) do not hammer it.
    let delay = this.lastErrorMessage ? Math.max(this.backoff, 2000) : this.backoff;
    const next = !this.goaway && !this.lastErrorMessage ? this._nextNode() : null;
    if (this.goaway) {
      // Not our fault: come back soon (to the named node), spread over a second.
      delay = 250 + Math.random() * 1000;
      this.goaway = null;
    } else if (next) {
      // Dropped without a word: this node may be gone. Another one serves the
      // same stream; go there soon (spread over half a second).
      this.url = next;
      this.failovers++;
      this.nodesAt = 0; // ask the new node for the list (the old one may be gone)
      delay = 100 + Math.random() * 400;
    } else {
      this.backoff = Math.min(this.maxBackoff, this.backoff * 2);
    }
    this._call('onClose', { code, reason, retryIn: delay / 1000, error: this.lastErrorMessage, opened: !!this.opened });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { this.timer = null; this._connect(); }, delay);
  }

  _onMessage(ev) {
    this.messages++;
    const d = ev.data;
    if (typeof d !== 'string') {
      this.bytes += d.byteLength;
      if (this.pendingInit) {
        const info = this.pendingInit;
        this.pendingInit = null;
        this._call('onInit', info, d);
      } else {
        this._call('onSegment', d);
      }
      return;
    }
    this.bytes += d.length;
    let msg;
    try {
      msg = JSON.parse(d);
    } catch {
      console.warn('WatchSocket: ignoring non-JSON text message', d.slice(0, 200));
      return;
    }
    switch (msg && msg.type) {
      case 'waiting':
        this.backoff = this.minBackoff;
        this._refreshNodes();
        this._call('onWaiting', msg);
        break;
      case 'init':
        this.backoff = this.minBackoff;
        this._refreshNodes();
        this.pendingInit = msg; // the next binary message is its init segment
        break;
      case 'eos':
        this.pendingInit = null;
        this._call('onEos', msg);
        break;
      case 'error':
        this.lastErrorMessage = String(msg.message || 'server error');
        this._call('onError', this.lastErrorMessage);
        break;
      case 'goaway':
        this.goaway = msg;
        if (typeof msg.url === 'string' && /^wss?:\/\//.test(msg.url)) {
          try {
            // The named node gets the viewer's token when the url has none.
            const next = new URL(msg.url), cur = new URL(this.url);
            if (!next.searchParams.has('token') && cur.searchParams.has('token')) next.searchParams.set('token', cur.searchParams.get('token'));
            this.url = next.toString();
          } catch { /* a url that does not parse: stay */ }
        }
        this._call('onGoaway', msg);
        break;
      default:
        this._call('onMessage', msg);
    }
  }
}

// ---------------------------------------------------------------------------

/**
 * MediaSource + one SourceBuffer fed from init/media segments, in order, one append
 * at a time. Options:
 *   attach(ms)   required: connect the MediaSource to a media element
 *                (main thread: video.src = URL.createObjectURL(ms); worker: post ms.handle)
 *   onEvent(ev)  {type: 'open'|'appended'|'rebuilt'|'error'|'dropped'|'timeline', ...}
 *   maxQueue     pending media segments before the queue is dropped (default 200)
 * The owner keeps `playhead` up to date (the element's currentTime) for eviction.
 */
export class MSEPipeline {
  constructor({ attach, onEvent, maxQueue = 200, MSClass = MS } = {}) {
    if (!MSClass) throw new Error('this browser has no MediaSource support');
    this.MS = MSClass;
    this.attachFn = attach;
    this.onEvent = onEvent || (() => {});
    this.maxQueue = maxQueue;
    this.ms = null;
    this.sb = null;
    this.type = null; // SourceBuffer type actually used
    this.mime = null; // mime as received
    this.sig = ''; // track-kind signature of the current SourceBuffer
    this.queue = [];
    this.mediaPending = 0;
    this.timescales = new Map();
    this.lastInit = null; // {info, data} for rebuilds
    this.playhead = NaN;
    this.appends = 0;
    this.bytesAppended = 0;
    this.dropped = 0;
    this.destroyed = false;
    this._appendedKind = null;
    this._onUpdateEnd = () => {
      const kind = this._appendedKind;
      this._appendedKind = null;
      if (kind) this._emit('appended', { kind });
      this._pump();
    };
  }

  _emit(type, extra) {
    try { this.onEvent(Object.assign({ type }, extra)); } catch (e) { console.error('MSEPipeline event handler', e); }
  }

  /** Handle an init message + its init segment. Builds the MediaSource on first use. */
  handleInit(info, data, { forceRebuild = false } = {}) {
    const mime = info && info.mime;
    const type = resolveMime(mime, this.MS);
    if (!type) {
      this._emit('error', { fatal: true, message: `this browser cannot play ${mime || '(no mime)'}` });
      return false;
    }
    const sig = trackSignature(info.tracks);
    const timescales = parseInitTimescales(data);
    this.lastInit = { info, data };
    // Without changeType (WebKitGTK 2.50 has none) a new init of the same codec
    // families (another SPS: a resolution change) still goes on the same SourceBuffer:
    // a new MediaSource would cost a new media pipeline and a seek to reach its data.
    const canReuse = this.sb && this.ms && this.ms.readyState === 'open' && !forceRebuild &&
      (sig === this.sig || !info.tracks) && (type === this.type || typeof this.sb.changeType === 'function' ||
        codecFamilies(type) === codecFamilies(this.type));
    if (!canReuse) {
      this._build(type, sig);
      this.mime = mime;
      this.timescales = timescales;
      this.queue.push({ op: 'append', kind: 'init', data });
      // The first media segment is put at 0, where a newly attached element's playhead is.
      const video = Array.isArray(info.tracks) && info.tracks.find((t) => t && t.kind === 'video');
      this.queue.push({ op: 'timeline', timescales, anchor: true, videoId: video ? video.id : undefined });
      this._pump();
      return true;
    }
    // Same SourceBuffer: changeType (also resets the need-random-access-point flag),
    // then the new init segment; the next media segment is checked for a timeline jump.
    if (typeof this.sb.changeType === 'function') this.queue.push({ op: 'changeType', type });
    this.queue.push({ op: 'append', kind: 'init', data });
    this.queue.push({ op: 'timeline', timescales });
    this.mime = mime;
    this.type = type;
    this.timescales = timescales;
    this._pump();
    return true;
  }

  /** Rebuild a fresh MediaSource from the last init (after a media error). */
  rebuild() {
    if (!this.lastInit) return false;
    const { info, data } = this.lastInit;
    const media = this.queue.filter((o) => o.kind === 'media');
    this.handleInit(info, data, { forceRebuild: true });
    // Media still queued goes after the new init; frames before the next keyframe are
    // dropped by MSE itself (need-random-access-point flag of a new SourceBuffer).
    for (const op of media) this.queue.push(op);
    this.mediaPending = media.length;
    this._emit('rebuilt', {});
    this._pump();
    return true;
  }

  /** Queue a media segment (one or more moof+mdat). */
  appendSegment(data) {
    if (!this.ms) return false; // no init yet: nothing can use it
    if (this.mediaPending >= this.maxQueue) this._dropQueue();
    this.queue.push({ op: 'append', kind: 'media', data });
    this.mediaPending++;
    this._pump();
    return true;
  }

  /** Remove media older than playhead - keep seconds (no-op while busy or nothing to do). */
  evict(playhead, keep = 10) {
    const sb = this.sb;
    if (!sb || !Number.isFinite(playhead) || this.queue.some((o) => o.op === 'remove')) return;
    let buf;
    try { buf = sb.buffered; } catch { return; }
    if (!buf.length) return;
    const start = buf.start(0);
    const cut = playhead - keep;
    if (cut - start > 0.5) {
      this.queue.unshift({ op: 'remove', start: 0, end: cut });
      this._pump();
    }
  }

  /**
   * Drop what is queued and everything buffered: the next init and media start afresh
   * on the same SourceBuffer (time-shift into a recording, and back to live).
   */
  clear(anchorAt = NaN) {
    this.queue = [{ op: 'abort' }, { op: 'remove', start: 0, end: Infinity }];
    this.mediaPending = 0;
    // The next init's first media segment goes to anchorAt (seconds, >= 0): its own times
    // may be anywhere (a recording file starts at 0, the live stream where it is).
    this.anchorAt = anchorAt;
    this._pump();
  }

  /** Buffered ranges of the SourceBuffer as [[start, end], ...]. */
  bufferedRanges() {
    const out = [];
    try {
      const b = this.sb && this.sb.buffered;
      if (b) for (let i = 0; i < b.length; i++) out.push([b.start(i), b.end(i)]);
    } catch { /* SourceBuffer removed */ }
    return out;
  }

  get pending() {
    return this.queue.length;
  }

  destroy() {
    this.destroyed = true;
    this._teardown();
  }

  _dropQueue() {
    // Drop media up to the next queued init; if there is none, drop all queued media and
    // reset the parser so MSE waits for the next keyframe instead of decoding garbage.
    const firstInit = this.queue.findIndex((o) => o.kind === 'init');
    let dropped = 0;
    const kept = [];
    this.queue.forEach((o, i) => {
      if (o.kind === 'media' && (firstInit < 0 || i < firstInit)) dropped++;
      else kept.push(o);
    });
    if (firstInit < 0) kept.unshift({ op: 'abort' });
    this.queue = kept;
    this.mediaPending = kept.filter((o) => o.kind === 'media').length;
    this.dropped += dropped;
    this._emit('dropped', { count: dropped });
  }

  _teardown() {
    const ms = this.ms;
    const sb = this.sb;
    this.ms = null;
    this.sb = null;
    this.queue = [];
    this.mediaPending = 0;
    if (sb) sb.removeEventListener('updateend', this._onUpdateEnd);
    if (ms && ms.readyState === 'open') {
      try { if (sb && sb.updating) sb.abort(); } catch { /* ignore */ }
    }
  }

  _build(type, sig) {
    this._teardown();
    const ms = new this.MS();
    this.ms = ms;
    this.type = type;
    this.sig = sig;
    // ManagedMediaSource (Safari, WebKitGTK) says when the system wants appends to stop
    // (endstreaming) and to start again (startstreaming). A live stream cannot pause its
    // socket, so media keeps being appended (the UA still accepts it); the state is
    // reported, and the player goes back to the live edge when streaming starts again.
    if ('onstartstreaming' in ms || typeof ms.streaming === 'boolean') {
      this.streaming = true;
      ms.addEventListener('startstreaming', () => { this.streaming = true; this._emit('streaming', { on: true }); });
      ms.addEventListener('endstreaming', () => { this.streaming = false; this._emit('streaming', { on: false }); });
    }
    ms.addEventListener('sourceopen', () => {
      if (this.ms !== ms || this.destroyed) return;
      try {
        const sb = ms.addSourceBuffer(type);
        try { sb.mode = 'segments'; } catch { /* default is segments for mp4 */ }
        sb.addEventListener('updateend', this._onUpdateEnd);
        sb.addEventListener('error', () => this._emit('error', { fatal: false, message: 'SourceBuffer append error' }));
        this.sb = sb;
      } catch (e) {
        this._emit('error', { fatal: true, message: `addSourceBuffer(${type}) failed: ${e.message || e}` });
        return;
      }
      this._emit('open', { type });
      this._pump();
    }, { once: true });
    this.attachFn(ms);
  }

  _pump() {
    const sb = this.sb;
    const ms = this.ms;
    if (!sb || !ms || this.destroyed || sb.updating) return;
    if (ms.readyState !== 'open') return;
    while (this.queue.length) {
      const op = this.queue[0];
      try {
        if (op.op === 'changeType') {
          this.queue.shift();
          sb.changeType(op.type);
          continue;
        }
        if (op.op === 'abort') {
          this.queue.shift();
          sb.abort();
          continue;
        }
        if (op.op === 'timeline') {
          // Applies to the next media segment: wait until it is queued.
          const next = this.queue.find((o) => o.kind === 'media');
          if (!next) return;
          this.queue.shift();
          if (op.anchor) this._anchorTimeline(next.data, op.timescales, op.videoId);
          else this._fixTimeline(next.data, op.timescales);
          continue;
        }
        if (op.op === 'remove') {
          this.queue.shift();
          const b = sb.buffered;
          if (!b.length) continue;
          const start = Math.max(op.start, b.start(0));
          const end = Math.min(op.end, b.end(b.length - 1));
          if (end - start > 0.01 && !Number.isNaN(ms.duration)) {
            sb.remove(start, end);
            return; // updateend continues the queue
          }
          continue;
        }
        // append
        sb.appendBuffer(op.data);
        this.queue.shift();
        if (op.kind === 'media') this.mediaPending = Math.max(0, this.mediaPending - 1);
        this.appends++;
        this.bytesAppended += op.data.byteLength;
        this._appendedKind = op.kind;
        return; // updateend continues the queue
      } catch (e) {
        if (e && e.name === 'QuotaExceededError' && op.op === 'append' && !op.retried) {
          // Evict hard (keep 2 s behind the playhead, or the newest 2 s), then retry once.
          op.retried = true;
          const b = sb.buffered;
          if (b.length) {
            const end = b.end(b.length - 1);
            let cut = Number.isFinite(this.playhead) ? this.playhead - 2 : end - 2;
            if (cut <= b.start(0) + 0.1) cut = end - 2;
            this.queue.unshift({ op: 'remove', start: 0, end: cut });
            this._emit('error', { fatal: false, message: 'buffer full: evicting' });
            continue;
          }
        }
        if (this.queue[0] === op) this.queue.shift();
        if (op.kind === 'media') {
          this.mediaPending = Math.max(0, this.mediaPending - 1);
          // A lost segment breaks the references of the frames after it: reset the
          // parser so MSE skips to the next keyframe.
          this.queue.unshift({ op: 'abort' });
        }
        this._emit('error', { fatal: false, message: `${op.op} failed: ${(e && e.name) || ''} ${(e && e.message) || e}`.trim() });
        if (ms.readyState !== 'open') return;
      }
    }
  }

  _anchorTimeline(data, timescales, videoId) {
    // A new SourceBuffer: its first media segment goes to 0, the playhead of a newly
    // attached element, video keyframe first (audio that starts a little earlier is cut
    // at appendWindowStart). The element then finds data at its playhead and needs no
    // seek to start: WebKitGTK can block its main thread for good on a seek issued while
    // it is still building its GStreamer pipeline (see web/README.md).
    let t = videoId !== undefined ? trackStartTime(data, timescales, videoId) : NaN;
    if (!Number.isFinite(t)) t = segmentStartTime(data, timescales);
    if (!Number.isFinite(t) || Math.abs(t + this.sb.timestampOffset) < 0.0005) return;
    this.sb.timestampOffset = -t;
    this._emit('timeline', { from: t, to: 0, offset: -t });
  }

  _fixTimeline(data, timescales) {
    // A new init may restart the decode timeline (new publisher) or jump it. Map the
    // new segments right after what is buffered so playback continues seamlessly.
    const sb = this.sb;
    const t = segmentStartTime(data, timescales);
    if (!Number.isFinite(t)) return;
    const b = sb.buffered;
    if (!b.length) {
      if (Number.isFinite(this.anchorAt)) { // after clear()
        sb.timestampOffset = this.anchorAt - t;
        this._emit('timeline', { from: t, to: this.anchorAt, offset: sb.timestampOffset });
      }
      this.anchorAt = NaN;
      return;
    }
    this.anchorAt = NaN;
    const lastEnd = b.end(b.length - 1);
    const at = t + sb.timestampOffset;
    if (at < lastEnd - 0.5 || at > lastEnd + 1.0) {
      sb.timestampOffset = lastEnd - t;
      this._emit('timeline', { from: at, to: lastEnd, offset: sb.timestampOffset });
    }
  }
}

// ---------------------------------------------------------------------------

/**
 * StreamEngine: one viewer socket feeding one MSEPipeline. This is the part that runs
 * in the dedicated worker (mse-worker.js) or, as a fallback, on the main thread. It
 * knows nothing about the <video> element: the page tells it the playhead (for
 * eviction and quota handling) and asks it to rebuild after a media error.
 *
 * Options: url, attach(ms) (see MSEPipeline), onEvent(ev), maxQueue, MSClass.
 * Events (ev.type): 'open', 'waiting', 'init' {info}, 'eos', 'error' {message} (server),
 * 'close' {retryIn, error, opened}, 'pipeline' (a new MediaSource is being attached),
 * 'mse-open', 'appended' {kind}, 'rebuilt', 'mse-error' {fatal, message},
 * 'dropped' {count}, 'timeline' {from, to, offset}.
 */
export class StreamEngine {
  constructor({ url, attach, onEvent, maxQueue = 200, MSClass = MS, minBackoff = 500, maxBackoff = 8000, audio = true } = {}) {
    this.url = url;
    // false: a stream's audio is left out (the player while muted): video alone plays
    // nearer the live edge (see player.js, audioLatency). keep: the track_IDs kept of the
    // current init, null when everything is kept.
    this.audio = audio;
    this.keep = null;
    this.attach = attach;
    this.onEvent = onEvent || (() => {});
    this.maxQueue = maxQueue;
    this.MSClass = MSClass;
    this.pipeline = null;
    this.socket = new WatchSocket(url, {
      onOpen: () => this._emit('open'),
      onWaiting: () => { this.sinceInit = false; this._emit('waiting'); },
      onInit: (info, data) => this._onInit(info, data),
      onSegment: (data) => this._onSegment(data),
      onEos: () => { this.sinceInit = false; this._emit('eos'); },
      onError: (message) => { this.sinceInit = false; this._emit('error', { message }); },
      onGoaway: (msg) => { this.sinceInit = false; this._emit('goaway', { reason: String(msg.reason || ''), url: msg.url || '' }); },
      onClose: (c) => {
        this.needRebuild = true; // the server sends a fresh init on the next connection
        this.sinceInit = false;
        this._emit('close', c);
      },
    }, { minBackoff, maxBackoff });
    this.sinceInit = false;
    this.needRebuild = false;
    this.inits = 0;
    this.segments = 0;
    this.held = null; // segments held back by stall() (test hook)
    this.heldTimer = null;
    this.playhead = NaN;
    this.jitter = new ArrivalJitter();
  }

  _emit(type, extra) {
    try { this.onEvent(Object.assign({ type }, extra)); } catch (e) { console.error('StreamEngine event handler', e); }
  }

  start() { this.socket.start(); }

  stop() {
    if (this.shift && this.shift.abort) this.shift.abort.abort();
    this.shift = null;
    this.socket.stop();
    clearTimeout(this.heldTimer);
    this.held = null;
    this._destroyPipeline();
    this.sinceInit = false;
  }

  send(obj) { return this.socket.send(obj); }

  setPlayhead(t) {
    this.playhead = t;
    if (this.pipeline) this.pipeline.playhead = t;
    if (this.shift) this._maybeFetchPart();
  }

  evict(playhead, keep) {
    this.setPlayhead(playhead);
    if (this.pipeline) this.pipeline.evict(playhead, keep);
  }

  /** Fresh MediaSource from the last init (after a media element error). */
  rebuild() {
    const last = this.pipeline && this.pipeline.lastInit;
    if (!last || !this.sinceInit) {
      this.needRebuild = true;
      return false;
    }
    this._createPipeline();
    this.pipeline.handleInit(last.info, last.data);
    this._emit('rebuilt');
    return true;
  }

  /**
   * Test hook: hold incoming media for ms, then hand it all over at once, as a
   * network that stalls and then delivers its backlog in a burst would.
   */
  stall(ms) {
    if (this.held) return;
    this.held = [];
    this.heldTimer = setTimeout(() => {
      const held = this.held || [];
      this.held = null;
      for (const d of held) this._append(d);
    }, ms);
  }

  status() {
    const p = this.pipeline;
    const s = this.socket;
    return {
      bytes: s.bytes,
      messages: s.messages,
      reconnects: Math.max(0, s.connects - 1),
      failovers: s.failovers,
      nodes: s.rotation.length,
      url: s.url.replace(/([?&]token=)[^&]*/, '$1…'),
      open: s.open,
      inits: this.inits,
      segments: this.segments,
      queue: p ? p.pending : 0,
      appends: p ? p.appends : 0,
      droppedSegments: p ? p.dropped : 0,
      sinceInit: this.sinceInit,
      streaming: p && typeof p.streaming === 'boolean' ? p.streaming : null, // ManagedMediaSource only
      buffered: p ? p.bufferedRanges() : [],
      pipelines: this.pipelines || 0, // MediaSources made since start
      timeshifted: !!this.shift,
      jitter: this.jitter.estimate, // seconds: see ArrivalJitter
      audioLeftOut: !!this.keep, // the stream's audio is not played (muted: see setAudio)
    };
  }

  /** Keep or leave out the audio of live streams; a change takes effect at a new connection. */
  setAudio(on) {
    on = !!on;
    if (on === this.audio) return;
    this.audio = on;
    if (this.shift) return; // at live(): the recording parts go on as they are
    if (this.socket.open || this.sinceInit) this._reconnect();
  }

  /** A fresh connection and MediaSource: the server sends the init and the GOP again. */
  _reconnect() {
    this.needRebuild = true;
    this.sinceInit = false;
    this.socket.stop();
    this.socket.start();
  }

  /** info and data of an init as they go to MSE: without audio when it is left out. */
  _filterInit(info, data) {
    this.keep = null;
    const tracks = info && Array.isArray(info.tracks) ? info.tracks : [];
    const video = tracks.filter((t) => t && t.kind === 'video');
    if (this.audio || !video.length || video.length === tracks.length) return { info, data };
    const keep = new Set(video.map((t) => t.id));
    const filtered = filterInitTracks(data, keep);
    if (!filtered) return { info, data }; // not understood: play it all
    this.keep = keep;
    const codecs = video.map((t) => t.codec).filter(Boolean).join(',');
    return {
      info: Object.assign({}, info, { tracks: video, mime: `video/mp4; codecs="${codecs}"`, audioLeftOut: true }),
      data: filtered,
    };
  }

  /** A media segment as it goes to MSE (see _filterInit); null: nothing to append. */
  _filterSegment(data) {
    if (!this.keep) return data;
    const f = filterSegmentTracks(data, this.keep);
    if (f === null) {
      // A layout the filter does not know: play the stream as it is (audio included)
      // rather than drop every segment.
      this._emit('mse-error', { fatal: false, message: 'a segment could not be read to leave its audio out: playing it with audio' });
      this.audio = true;
      this._reconnect();
      return null;
    }
    return f.byteLength ? f : null;
  }

  _onInit(info, data) {
    this.inits++;
    this.sinceInit = true;
    ({ info, data } = this._filterInit(info, data));
    this.jitter.reset(data, info && info.tracks, performance.now() / 1000);
    if (this.needRebuild || !this.pipeline) {
      this.needRebuild = false;
      this._createPipeline();
    }
    if (this.held) { // an init ends a simulated stall: keep the order
      const held = this.held;
      this.held = null;
      clearTimeout(this.heldTimer);
      for (const d of held) this._append(d);
    }
    if (!this.pipeline.handleInit(info, data)) return;
    this._emit('init', { info });
  }

  _onSegment(data) {
    this.segments++;
    this.jitter.add(data, performance.now() / 1000);
    if (this.held) this.held.push(data);
    else this._append(data);
  }

  _append(data) {
    if (!this.pipeline || !this.sinceInit) return;
    const d = this._filterSegment(data);
    if (d) this.pipeline.appendSegment(d);
  }

  _createPipeline() {
    this._destroyPipeline();
    this.pipelines = (this.pipelines || 0) + 1;
    this.pipeline = new MSEPipeline({
      maxQueue: this.maxQueue,
      MSClass: this.MSClass,
      attach: (ms) => {
        this._emit('pipeline');
        this.attach(ms);
      },
      onEvent: ({ type, ...rest }) => {
        const map = { open: 'mse-open', error: 'mse-error' };
        this._emit(map[type] || type, rest);
        if (type === 'appended' && rest.kind === 'media' && this.shift) this._partAppended();
      },
    });
    this.pipeline.playhead = this.playhead;
  }

  _destroyPipeline() {
    if (this.pipeline) this.pipeline.destroy();
    this.pipeline = null;
  }

  // ---- time-shift: the stream's recording through the same MediaSource -------------
  //
  // timeshift(fromMs) leaves the live socket and plays the recording (GET
  // /recordings/{stream}?from=&to=, README "Recording") from wall-clock time fromMs, in
  // parts of PART_MS fetched while less than AHEAD_S are buffered ahead of the playhead;
  // each part carries its init and goes on the same SourceBuffer (its timeline mapped right
  // after what is buffered when it starts over: MSEPipeline._fixTimeline). live() clears
  // it and reconnects the socket: the server's init and GOP start the live edge again.
  // Events: 'recording' {wall, end, pos} once a part is appended (wall-clock ms wall plays
  // at media time pos), 'recording-end' {caughtUp: false} (nothing recorded after that),
  // 'recording-error' {message}. The player goes live when its playhead nears now.

  timeshift(fromMs) {
    if (!this.pipeline || !this.pipeline.lastInit || !Number.isFinite(fromMs)) {
      this._emit('recording-error', { message: 'no stream played yet to go back in' });
      return;
    }
    this.shift = { next: fromMs, busy: false, done: false, pending: [], abort: null, parts: 0 };
    this.socket.stop();
    this.sinceInit = false;
    clearTimeout(this.heldTimer);
    this.held = null;
    this.pipeline.clear(this._anchor());
    this._fetchPart();
  }

  /** Where new media goes after a clear: just after the playhead, so it is never below 0. */
  _anchor() {
    return Number.isFinite(this.playhead) ? Math.max(0, this.playhead) + 0.5 : 0;
  }

  live() {
    const sh = this.shift;
    if (!sh) return;
    this.shift = null;
    if (sh.abort) sh.abort.abort();
    if (this.pipeline) this.pipeline.clear(this._anchor());
    // Same MediaSource: the server's init goes on the same SourceBuffer, unless the audio
    // was switched meanwhile (another set of tracks).
    const last = this.pipeline && this.pipeline.lastInit;
    const info = (last && last.info) || {};
    const leftOut = !!info.audioLeftOut;
    const hadAudio = Array.isArray(info.tracks) && info.tracks.some((t) => t && t.kind === 'audio');
    this.needRebuild = !!last && ((leftOut && this.audio) || (!leftOut && !this.audio && hadAudio));
    this.socket.start();
  }

  _maybeFetchPart() {
    const sh = this.shift;
    if (!sh || sh.busy || sh.done || !this.pipeline || Date.now() < (sh.retryAt || 0)) return;
    const ranges = this.pipeline.bufferedRanges();
    const end = ranges.length ? ranges[ranges.length - 1][1] : 0;
    if (!ranges.length || end - this.playhead < AHEAD_S) this._fetchPart();
  }

  /** The recordings URL of this stream on the socket's node, and the token. */
  _recordingRequest(fromMs, toMs, after) {
    try {
      const u = new URL(this.socket.url);
      const m = /^\/ws\/watch\/([^/]+)$/.exec(u.pathname);
      if (!m) return null;
      const r = new URL(`/recordings/${m[1]}`, u.href.replace(/^ws/, 'http'));
      r.searchParams.set('from', new Date(fromMs).toISOString());
      r.searchParams.set('to', new Date(toMs).toISOString());
      if (after) r.searchParams.set('after', '1'); // go on from the part before: no overlap
      return { url: r.href, token: u.searchParams.get('token') || '' };
    } catch {
      return null;
    }
  }

  async _fetchPart() {
    const sh = this.shift;
    if (!sh || sh.busy || sh.done) return;
    const req = this._recordingRequest(sh.next, sh.next + PART_MS, sh.parts > 0);
    if (!req) {
      this._emit('recording-error', { message: 'no recordings URL for this socket' });
      return;
    }
    sh.busy = true;
    sh.abort = typeof AbortController === 'function' ? new AbortController() : null;
    try {
      const res = await fetch(req.url, {
        headers: req.token ? { Authorization: `Bearer ${req.token}` } : {},
        credentials: 'omit',
        signal: sh.abort ? sh.abort.signal : undefined,
      });
      if (this.shift !== sh) return;
      if (res.status === 404) {
        // Nothing after sh.next yet: near now the file being written grows (ask again in a
        // second); long ago the recording stopped there.
        if (Date.now() - sh.next < NEAR_NOW_MS) {
          sh.retryAt = Date.now() + 1000;
        } else {
          sh.done = true;
          this._emit('recording-end', { caughtUp: false });
        }
        return;
      }
      if (!res.ok) throw new Error(`GET recording: HTTP ${res.status}`);
      const wall = Date.parse(res.headers.get('X-Recording-Start'));
      const end = Date.parse(res.headers.get('X-Recording-End'));
      const mediaStart = parseFloat(res.headers.get('X-Recording-Media-Start'));
      const buf = await res.arrayBuffer();
      if (this.shift !== sh) return;
      const split = initSegmentLength(buf);
      if (!split || !Number.isFinite(wall) || !Number.isFinite(end) || !Number.isFinite(mediaStart)) {
        throw new Error('the recording part is not an fMP4 with its times');
      }
      // The recording has what the live stream has: leave out what the live init left out.
      const init = this.keep ? filterInitTracks(buf.slice(0, split), this.keep) : buf.slice(0, split);
      const media = this.keep ? filterSegmentTracks(buf.slice(split), this.keep) : buf.slice(split);
      if (!init || !media) throw new Error('the recording part could not be read to leave its audio out');
      this.pipeline.handleInit(this.pipeline.lastInit.info, init);
      sh.pending.push({ wall, end, mediaStart });
      if (media.byteLength) this.pipeline.appendSegment(media);
      // The next part starts where this one ends (after=1: no overlap).
      sh.parts++;
      sh.next = end > sh.next ? end : sh.next + 1000;
    } catch (e) {
      if (this.shift === sh && !(e && e.name === 'AbortError')) {
        this._emit('recording-error', { message: `recording: ${e.message || e}` });
        sh.done = true;
      }
    } finally {
      sh.busy = false;
      sh.abort = null;
    }
  }

  /** A part's media is in: tell where its start plays (the timeline op ran before it). */
  _partAppended() {
    const sh = this.shift;
    const p = sh.pending.shift();
    if (!p || !this.pipeline || !this.pipeline.sb) return;
    this._emit('recording', { wall: p.wall, end: p.end, pos: p.mediaStart + this.pipeline.sb.timestampOffset });
  }
}
