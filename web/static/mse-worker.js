// Dedicated worker for the MSE player (player.js, mode "worker"): it owns the viewer
// WebSocket, the MediaSource and the SourceBuffer, so parsing and appending never
// wait for the page's main thread. The MediaSource's handle is transferred to the
// page, which sets it as video.srcObject. Needs MediaSource.canConstructInDedicatedWorker.
//
// page -> worker: {type:'start', url, maxQueue, audio}, {type:'stop'}, {type:'send', msg},
//                 {type:'audio', on} (keep or leave out the stream's audio: StreamEngine.setAudio),
//                 {type:'playhead', t}, {type:'evict', t, keep}, {type:'rebuild'},
//                 {type:'stall', ms}, {type:'timeshift', from} (wall-clock ms: play the
//                 recording from there), {type:'live'} (back to the live socket)
// worker -> page: {type:'handle', handle} (transferred), {type:'status', status},
//                 {type:'event', ev} (StreamEngine events), {type:'fatal', message}
import { StreamEngine } from './engine.js';

let engine = null;
let statusTimer = null;

function post(msg, transfer) {
  self.postMessage(msg, transfer || []);
}

function postStatus() {
  if (engine) post({ type: 'status', status: engine.status() });
}

self.onmessage = (e) => {
  const m = e.data || {};
  switch (m.type) {
    case 'start':
      if (engine) engine.stop();
      if (!(self.MediaSource && self.MediaSource.canConstructInDedicatedWorker)) {
        post({ type: 'fatal', message: 'MediaSource is not available in a dedicated worker here' });
        return;
      }
      engine = new StreamEngine({
        url: m.url,
        maxQueue: m.maxQueue || 200,
        audio: m.audio !== false,
        MSClass: self.MediaSource,
        attach: (ms) => post({ type: 'handle', handle: ms.handle }, [ms.handle]),
        onEvent: (ev) => {
          post({ type: 'event', ev });
          if (ev.type === 'init' || ev.type === 'close') postStatus();
        },
      });
      engine.start();
      clearInterval(statusTimer);
      statusTimer = setInterval(postStatus, 250);
      break;
    case 'stop':
      clearInterval(statusTimer);
      if (engine) engine.stop();
      engine = null;
      break;
    case 'send':
      if (engine) engine.send(m.msg);
      break;
    case 'playhead':
      if (engine) engine.setPlayhead(m.t);
      break;
    case 'evict':
      if (engine) engine.evict(m.t, m.keep);
      break;
    case 'rebuild':
      if (engine) engine.rebuild();
      break;
    case 'audio':
      if (engine) engine.setAudio(m.on);
      break;
    case 'stall':
      if (engine) engine.stall(m.ms);
      break;
    case 'timeshift':
      if (engine) engine.timeshift(m.from);
      break;
    case 'live':
      if (engine) engine.live();
      break;
    default:
  }
};
post({ type: 'ready' });
