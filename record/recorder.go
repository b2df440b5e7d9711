package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/mseway/mseway/contain"
	"github.com/mseway/mseway/remux"
)

// Config configures the recorder (configs.Record).
type Config struct {
	// Path is the file pattern (DefaultPath when empty): see pattern.
	Path string
	// SegmentDuration: a file is cut at the first keyframe this long after
	// its start; 0 = 1 minute.
	SegmentDuration time.Duration
	// MaxAge deletes files that ended longer ago; 0 = no age limit.
	MaxAge time.Duration
	// MaxBytes deletes the oldest files while all recordings together take
	// more; 0 = no size limit.
	MaxBytes int64
	// SyncInterval is how often an open file is synced to disk; 0 = 1 s.
	SyncInterval time.Duration
	// QueueBytes bounds what waits for the disk per stream; past it the
	// stream's recording stops (the disk does not keep up). 0 = 64 MiB.
	QueueBytes int
	// CheckInterval is how often retention looks at the files; 0 = 10 s.
	CheckInterval time.Duration
	Logger        *slog.Logger
	// Now is the wall clock (tests); nil = time.Now.
	Now func() time.Time
}

// Output is what a recorder is to a stream hub (mseout.Output): called in
// order with the hub's lock held, it only queues.
type Output interface {
	WriteInit(*remux.Init)
	WriteSegment(*remux.Segment)
	WriteEnd()
}

// Attach connects out to a stream's hub and returns how to disconnect it
// (mseout.Registry.Attach).
type Attach func(out Output) (detach func(), err error)

// Recorder records streams. It is safe for concurrent use.
type Recorder struct {
	cfg  Config
	pat  pattern
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	streams map[string]*streamRecorder // recording now
	closed  bool

	listMu    sync.Mutex
	listCache map[string]cachedList // List's, by stream

	m metrics
}

// New checks cfg and starts the retention loop (when a limit is set).
func New(cfg Config) (*Recorder, error) {
	pat, err := parsePattern(cfg.Path)
	if err != nil {
		return nil, err
	}
	if cfg.SegmentDuration <= 0 {
		cfg.SegmentDuration = time.Minute
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = time.Second
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 64 << 20
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Recorder{cfg: cfg, pat: pat, log: cfg.Logger, streams: map[string]*streamRecorder{}, listCache: map[string]cachedList{}}
	r.ctx, r.stop = context.WithCancel(context.Background())
	if cfg.MaxAge > 0 || cfg.MaxBytes > 0 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer contain.Recover(r.log, "recording retention", nil)
			r.retentionLoop()
		}()
	}
	return r, nil
}

// Close stops every recording (their files are synced and closed) and the
// retention loop, and waits for them.
func (r *Recorder) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stop()
	r.wg.Wait()
}

// Recording reports whether stream is being recorded.
func (r *Recorder) Recording(stream string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams[stream] != nil
}

// Start records stream until its publisher leaves (the hub's WriteEnd),
// unless it is being recorded already. attach connects the recorder to the
// stream's hub; it is called on the recorder's goroutine.
func (r *Recorder) Start(stream string, attach Attach) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	// One that got its end (the last publisher left) may still be writing:
	// a new publisher gets a recorder of its own.
	if cur := r.streams[stream]; cur != nil && !cur.ending.Load() {
		return
	}
	s := &streamRecorder{r: r, stream: stream, log: r.log.With("stream", stream), wake: make(chan struct{}, 1), ended: make(chan struct{})}
	r.streams[stream] = s
	r.m.streams.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			if r.streams[stream] == s {
				delete(r.streams, stream)
			}
			r.mu.Unlock()
			r.m.streams.Add(-1)
			close(s.ended)
		}()
		defer contain.Recover(s.log, "recording", nil)
		s.run(attach)
	}()
}

// streamRecorder records one stream: the hub queues into it, run writes.
type streamRecorder struct {
	r      *Recorder
	stream string
	log    *slog.Logger
	ended  chan struct{}
	ending atomic.Bool // WriteEnd came: what follows is not this recorder's

	mu       sync.Mutex
	queue    []item
	queued   int  // bytes in queue
	overflow bool // the queue went over its bound: recording stops
	wake     chan struct{}
	current  string // the file being written ("": none), for List

	// owned by run
	init       *remux.Init // the current init
	timescales map[uint32]uint32
	bases      map[uint32]uint64 // what the open file's decode times are lowered by
	buf        []byte
	f          *os.File
	path       string
	fileStart  time.Time // wall clock of the file's first fragment
	lastTime   time.Duration
	lastSync   time.Time
	fileBytes  int64
}

type item struct {
	init *remux.Init
	seg  *remux.Segment
	end  bool
	at   time.Time // when the hub handed it over
}

func (s *streamRecorder) WriteInit(init *remux.Init) { s.push(item{init: init, at: s.r.cfg.Now()}, 0) }
func (s *streamRecorder) WriteSegment(seg *remux.Segment) {
	s.push(item{seg: seg, at: s.r.cfg.Now()}, len(seg.Data))
}
func (s *streamRecorder) WriteEnd() { s.push(item{end: true, at: s.r.cfg.Now()}, 0) }

// push queues it without blocking (the hub's lock is held).
func (s *streamRecorder) push(it item, size int) {
	s.mu.Lock()
	if s.overflow || s.ending.Load() {
		s.mu.Unlock()
		return
	}
	if it.end {
		s.ending.Store(true)
	}
	if s.queued+size > s.r.cfg.QueueBytes {
		s.overflow, s.queue, s.queued = true, nil, 0
	} else {
		s.queue = append(s.queue, it)
		s.queued += size
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// errStop ends a recording: the publisher left, the gateway stops.
var errStop = errors.New("recording ended")

func (s *streamRecorder) run(attach Attach) {
	detach, err := attach(s)
	if err != nil {
		s.r.m.failure("attach")
		s.log.Error("recording not started", "err", err)
		return
	}
	defer detach()
	s.log.Info("recording started", "path", s.r.pat.glob(s.stream))
	sync := time.NewTicker(s.r.cfg.SyncInterval)
	defer sync.Stop()
	err = nil
	for err == nil {
		select {
		case <-s.r.ctx.Done():
			if err = s.drain(); err == nil {
				err = errStop
			}
		case <-s.wake:
			err = s.drain()
		case <-sync.C:
			err = s.syncFile(false)
		}
	}
	cerr := s.closeFile()
	switch {
	case errors.Is(err, errStop) && cerr == nil:
		s.log.Info("recording ended")
	case errors.Is(err, errStop):
		s.r.m.failure("write")
		s.log.Error("recording ended with an error", "err", cerr)
	default:
		s.log.Error("recording of this stream stopped (live viewers are not affected); it starts again with the next publish", "err", err)
	}
}

var errQueueFull = errors.New("the disk does not keep up: queue over record.queue_bytes")

// drain writes what is queued.
func (s *streamRecorder) drain() error {
	for {
		s.mu.Lock()
		if s.overflow {
			s.mu.Unlock()
			s.r.m.failure("queue_full")
			return fmt.Errorf("%w (%d bytes)", errQueueFull, s.r.cfg.QueueBytes)
		}
		q := s.queue
		s.queue, s.queued = nil, 0
		s.mu.Unlock()
		if len(q) == 0 {
			return nil
		}
		for _, it := range q {
			if err := s.write(it); err != nil {
				return err
			}
		}
	}
}

func (s *streamRecorder) write(it item) error {
	switch {
	case it.end:
		return errStop
	case it.init != nil:
		// A new init (codec or size change, a new publisher) starts a new
		// file at its first keyframe; the same init again changes nothing.
		if s.init == nil || !bytes.Equal(s.init.Data, it.init.Data) {
			if err := s.closeFile(); err != nil {
				return err
			}
			ts, err := initTimescales(it.init.Data)
			if err != nil {
				s.r.m.failure("format")
				return err
			}
			s.init, s.timescales = it.init, ts
		}
		return nil
	}
	seg := it.seg
	if s.init == nil {
		return nil
	}
	if s.f != nil && seg.Keyframe && (it.at.Sub(s.fileStart) >= s.r.cfg.SegmentDuration || seg.Time < s.lastTime) {
		if err := s.closeFile(); err != nil {
			return err
		}
	}
	if s.f == nil {
		if !seg.Keyframe {
			return nil // a file starts at a keyframe
		}
		bases, err := fileBases(seg.Data, s.timescales)
		if err != nil {
			s.r.m.failure("format")
			return fmt.Errorf("first fragment of a file: %w", err)
		}
		if err := s.openFile(it.at); err != nil {
			return err
		}
		s.bases = bases
	}
	var err error
	if s.buf, err = rebase(s.buf[:0], seg.Data, s.bases); err != nil {
		s.r.m.failure("format")
		return err
	}
	// One write per fragment: a killed process leaves whole fragments.
	if _, err := s.f.Write(s.buf); err != nil {
		s.r.m.failure("write")
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	s.lastTime = seg.Time
	s.fileBytes += int64(len(seg.Data))
	s.r.m.bytes.Add(int64(len(seg.Data)))
	return nil
}

func (s *streamRecorder) openFile(at time.Time) error {
	// A name is unique to the microsecond; a clash (a clock step back) takes
	// the next free microsecond.
	for range 1000 {
		path := s.r.pat.name(s.stream, at)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			s.r.m.failure("open")
			return fmt.Errorf("recording directory: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			at = at.Add(time.Microsecond)
			continue
		}
		if err != nil {
			s.r.m.failure("open")
			return fmt.Errorf("recording file: %w", err)
		}
		if _, err := f.Write(s.init.Data); err != nil {
			_ = f.Close()
			s.r.m.failure("write")
			return fmt.Errorf("write %s: %w", path, err)
		}
		s.f, s.path, s.fileStart, s.lastSync, s.fileBytes = f, path, at, time.Now(), int64(len(s.init.Data))
		s.mu.Lock()
		s.current = path
		s.mu.Unlock()
		s.r.forget(s.stream)
		s.r.m.files.Add(1)
		s.r.m.bytes.Add(int64(len(s.init.Data)))
		s.log.Debug("recording file opened", "path", path)
		return nil
	}
	s.r.m.failure("open")
	return errors.New("recording file: no free name")
}

// syncFile syncs the open file when the interval passed (or now, with
// force).
func (s *streamRecorder) syncFile(force bool) error {
	if s.f == nil || (!force && time.Since(s.lastSync) < s.r.cfg.SyncInterval) {
		return nil
	}
	s.lastSync = time.Now()
	if err := s.f.Sync(); err != nil {
		s.r.m.failure("write")
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	return nil
}

func (s *streamRecorder) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := s.syncFile(true)
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", s.path, cerr)
	}
	s.log.Info("recording file done", "path", s.path, "bytes", s.fileBytes, "seconds", s.r.cfg.Now().Sub(s.fileStart).Round(time.Millisecond).Seconds())
	s.f, s.path = nil, ""
	s.mu.Lock()
	s.current = ""
	s.mu.Unlock()
	s.r.forget(s.stream)
	return err
}

// initTimescales returns the timescale of each track of an init segment.
func initTimescales(init []byte) (map[uint32]uint32, error) {
	f, err := mp4.DecodeFile(bytes.NewReader(init))
	if err != nil || f.Init == nil || f.Init.Moov == nil {
		return nil, fmt.Errorf("record: init segment: %v", err)
	}
	ts := map[uint32]uint32{}
	for _, t := range f.Init.Moov.Traks {
		if t.Tkhd == nil || t.Mdia == nil || t.Mdia.Mdhd == nil || t.Mdia.Mdhd.Timescale == 0 {
			return nil, errors.New("record: init segment: a track without a timescale")
		}
		ts[t.Tkhd.TrackID] = t.Mdia.Mdhd.Timescale
	}
	if len(ts) == 0 {
		return nil, errors.New("record: init segment without a track")
	}
	return ts, nil
}

// metrics are the recorder's counters (Collector).
type metrics struct {
	streams  atomic.Int64
	files    atomic.Int64
	bytes    atomic.Int64
	failures sync.Map // reason -> *atomic.Int64
	deleted  [2]atomic.Int64
}

func (m *metrics) failure(reason string) {
	v, _ := m.failures.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (m *metrics) failureCount(reason string) int64 {
	v, ok := m.failures.Load(reason)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}
