package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mseway/mseway/configs"
)

// Event types (configs.WebhookEvents).
const (
	EventPublishStarted  = "publish.started"
	EventPublishEnded    = "publish.ended"
	EventPublishTakeover = "publish.takeover"
	EventViewersChanged  = "viewers.changed"
	EventAuthRefused     = "auth.refused"
)

// Defaults of Options.
var DefaultBackoff = []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}

const (
	DefaultTimeout           = 5 * time.Second
	DefaultQueueSize         = 1024
	DefaultAggregateInterval = time.Second

	// MaxRetryAfter caps a receiver's Retry-After.
	MaxRetryAfter = 60 * time.Second
	// maxResponseBody is how much of a response body is read (and discarded).
	maxResponseBody = 64 << 10
	// dropLogEvery rate-limits the log line about dropped messages.
	dropLogEvery = 10 * time.Second
)

// Event is one notification. Emit keeps Data (it is marshalled later, on the
// receivers' goroutines): the caller must not change the map after Emit.
type Event struct {
	Type   string         // one of configs.WebhookEvents
	Stream string         // put into data as "stream" when non-empty
	Data   map[string]any // more fields
}

// Options tune a Sender; the zero value is the production setting.
type Options struct {
	Logger      *slog.Logger
	HTTPClient  *http.Client    // nil = default with no redirects (a given client never follows redirects either)
	Backoff     []time.Duration // waits before each retry; nil = 1s,2s,4s,8s,16s (then give up)
	Timeout     time.Duration   // per attempt; 0 = 5s
	QueueSize   int             // messages queued per receiver; 0 = 1024
	ViewerCount func(stream string) int
	Now         func() time.Time // nil = time.Now
	// AggregateInterval is how long viewer joins and leaves are gathered
	// into one viewers.changed per stream, from the first change; 0 = 1s.
	AggregateInterval time.Duration
}

// Sender delivers events to the configured receivers. Build it with New; a
// nil *Sender is valid and does nothing.
type Sender struct {
	log         *slog.Logger
	client      *http.Client
	transport   *http.Transport // ours to close, when we built the client
	backoff     []time.Duration
	timeout     time.Duration
	now         func() time.Time
	viewerCount func(string) int
	aggInterval time.Duration

	receivers []*receiver
	closed    atomic.Bool
	closeOnce sync.Once
	closing   chan struct{} // closed by Close: drain the queues, then stop
	abortCtx  context.Context
	abort     context.CancelFunc // Close's ctx is done: stop at once
	wg        sync.WaitGroup     // the receivers' goroutines

	// Viewer aggregation (only when a receiver wants viewers.changed).
	wantViewers bool
	viewersMu   sync.Mutex
	viewers     map[string]*viewerDelta
	viewersKick chan struct{} // a first change opened a window
	aggStop     chan struct{}
	aggDone     chan struct{}
}

type viewerDelta struct{ joined, left int }

// receiver is one configured webhook: its queue, goroutine and counters.
type receiver struct {
	s      *Sender
	index  int
	label  string // metrics label: the index
	host   string // for logs (the URL may carry credentials)
	url    string
	key    []byte
	all    bool
	events []string

	mu      sync.Mutex
	buf     []queued // ring of cap QueueSize
	head, n int
	notify  chan struct{} // cap 1: the queue went non-empty

	droppedSinceLog int64
	lastDropLog     time.Time

	ok, failed, dropped, retried atomic.Int64
}

type queued struct {
	ev Event
	at time.Time
}

// New builds a Sender for hooks and starts its goroutines: one per receiver,
// and the viewer aggregator when a receiver wants viewers.changed. It refuses
// a URL that is not http(s), an empty secret, a "whsec_" secret that is not
// base64, and unknown event names. With no hooks it returns nil (a valid,
// inert Sender).
func New(hooks []configs.Webhook, opts Options) (*Sender, error) {
	if len(hooks) == 0 {
		return nil, nil
	}
	s := &Sender{
		log:         opts.Logger,
		backoff:     opts.Backoff,
		timeout:     opts.Timeout,
		now:         opts.Now,
		viewerCount: opts.ViewerCount,
		aggInterval: opts.AggregateInterval,
		closing:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.backoff == nil {
		s.backoff = DefaultBackoff
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.aggInterval <= 0 {
		s.aggInterval = DefaultAggregateInterval
	}
	queueSize := opts.QueueSize
	if queueSize <= 0 {
		queueSize = DefaultQueueSize
	}
	for i, h := range hooks {
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhooks[%d]: url: not an http(s) URL", i)
		}
		key, err := signingKey(h.Secret)
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d]: secret: %w", i, err)
		}
		r := &receiver{
			index: i, label: strconv.Itoa(i), host: u.Host, url: h.URL, key: key,
			all:    len(h.Events) == 0 || slices.Contains(h.Events, "*"),
			events: slices.Clone(h.Events),
			buf:    make([]queued, queueSize),
			notify: make(chan struct{}, 1),
		}
		for _, e := range h.Events {
			if e != "*" && !slices.Contains(configs.WebhookEvents, e) {
				return nil, fmt.Errorf("webhooks[%d]: events: unknown event %q", i, e)
			}
		}
		if r.wants(EventViewersChanged) {
			s.wantViewers = true
		}
		s.receivers = append(s.receivers, r)
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		c.CheckRedirect = noRedirect
		s.client = &c
	} else {
		s.transport = http.DefaultTransport.(*http.Transport).Clone()
		s.client = &http.Client{Transport: s.transport, CheckRedirect: noRedirect}
	}

	s.abortCtx, s.abort = context.WithCancel(context.Background())
	for _, r := range s.receivers {
		r.s = s
		s.wg.Add(1)
		go r.run()
	}
	if s.wantViewers {
		s.viewers = make(map[string]*viewerDelta)
		s.viewersKick = make(chan struct{}, 1)
		s.aggStop = make(chan struct{})
		s.aggDone = make(chan struct{})
		go s.aggregate()
	}
	return s, nil
}

// Emit queues ev for every receiver that wants its type. It never blocks:
// when a receiver's queue is full its oldest message is dropped. Emit after
// Close does nothing.
func (s *Sender) Emit(ev Event) {
	if s == nil || s.closed.Load() {
		return
	}
	s.enqueue(ev)
}

func (s *Sender) enqueue(ev Event) {
	at := s.now()
	for _, r := range s.receivers {
		if r.wants(ev.Type) {
			r.push(queued{ev: ev, at: at})
		}
	}
}

// ViewerJoined counts a viewer joining stream, for the next viewers.changed.
func (s *Sender) ViewerJoined(stream string) { s.viewerChange(stream, 1, 0) }

// ViewerLeft counts a viewer leaving stream, for the next viewers.changed.
func (s *Sender) ViewerLeft(stream string) { s.viewerChange(stream, 0, 1) }

func (s *Sender) viewerChange(stream string, joined, left int) {
	if s == nil || !s.wantViewers || s.closed.Load() {
		return
	}
	s.viewersMu.Lock()
	kick := len(s.viewers) == 0
	d := s.viewers[stream]
	if d == nil {
		d = &viewerDelta{}
		s.viewers[stream] = d
	}
	d.joined += joined
	d.left += left
	s.viewersMu.Unlock()
	if kick {
		select {
		case s.viewersKick <- struct{}{}:
		default:
		}
	}
}

// aggregate turns the counted joins and leaves into viewers.changed events:
// the first change opens a window of aggInterval, at its end one event per
// stream that changed. No timer runs while nothing changes.
func (s *Sender) aggregate() {
	defer close(s.aggDone)
	for {
		select {
		case <-s.viewersKick:
		case <-s.aggStop:
			s.flushViewers()
			return
		}
		t := time.NewTimer(s.aggInterval)
		select {
		case <-t.C:
			s.flushViewers()
		case <-s.aggStop:
			t.Stop()
			s.flushViewers()
			return
		}
	}
}

func (s *Sender) flushViewers() {
	s.viewersMu.Lock()
	changed := s.viewers
	if len(changed) == 0 {
		s.viewersMu.Unlock()
		return
	}
	s.viewers = make(map[string]*viewerDelta, len(changed))
	s.viewersMu.Unlock()
	streams := make([]string, 0, len(changed))
	for st := range changed {
		streams = append(streams, st)
	}
	slices.Sort(streams)
	for _, st := range streams {
		d := changed[st]
		data := map[string]any{"joined": d.joined, "left": d.left}
		if s.viewerCount != nil {
			data["viewers"] = s.viewerCount(st)
		}
		s.enqueue(Event{Type: EventViewersChanged, Stream: st, Data: data})
	}
}

// Close stops accepting events, sends the viewer counts still gathered, then
// delivers what is queued until ctx is done (no attempt or retry starts after
// that; what is left is counted as dropped) and stops every goroutine. It
// returns by ctx's deadline (the goroutines stop at once when ctx is done).
func (s *Sender) Close(ctx context.Context) {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() { s.close(ctx) })
}

func (s *Sender) close(ctx context.Context) {
	s.closed.Store(true)
	if s.wantViewers {
		close(s.aggStop)
		select {
		case <-s.aggDone:
		case <-ctx.Done():
		}
	}
	close(s.closing)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.abort()
		<-done // every wait of the goroutines also watches abortCtx
	}
	s.abort()
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
}

var (
	descDeliveries = prometheus.NewDesc("gateway_webhook_deliveries_total",
		"Webhook messages by receiver (index in the config) and result: ok (2xx), failed (given up), retried (retries made), dropped (discarded unsent: queue full or closing).",
		[]string{"receiver", "result"}, nil)
	descQueueLength = prometheus.NewDesc("gateway_webhook_queue_length", "Webhook messages waiting to be sent, by receiver.", []string{"receiver"}, nil)
)

// Collector returns the Prometheus collector of the delivery counters:
// gateway_webhook_deliveries_total{receiver="<index>",result=...} where ok
// counts messages delivered (2xx), failed those given up (a refusing status,
// or retries exhausted), retried the retries made, dropped those discarded
// unsent (queue full, or still queued when Close's ctx ended); and
// gateway_webhook_queue_length{receiver="<index>"}. A nil Sender (no
// webhooks) collects nothing.
func (s *Sender) Collector() prometheus.Collector { return senderCollector{s} }

type senderCollector struct{ s *Sender }

func (c senderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDeliveries
	ch <- descQueueLength
}

func (c senderCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s == nil {
		return
	}
	for _, r := range c.s.receivers {
		for _, x := range []struct {
			result string
			v      *atomic.Int64
		}{{"ok", &r.ok}, {"failed", &r.failed}, {"dropped", &r.dropped}, {"retried", &r.retried}} {
			ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.CounterValue, float64(x.v.Load()), r.label, x.result)
		}
		ch <- prometheus.MustNewConstMetric(descQueueLength, prometheus.GaugeValue, float64(r.queueLen()), r.label)
	}
}

func (r *receiver) wants(typ string) bool {
	return r.all || slices.Contains(r.events, typ)
}

// push appends q to the ring, dropping the oldest message when it is full.
func (r *receiver) push(q queued) {
	var logDropped int64
	r.mu.Lock()
	if r.n == len(r.buf) {
		r.buf[r.head] = queued{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		r.dropped.Add(1)
		r.droppedSinceLog++
		if q.at.Sub(r.lastDropLog) >= dropLogEvery || r.lastDropLog.IsZero() {
			logDropped, r.droppedSinceLog, r.lastDropLog = r.droppedSinceLog, 0, q.at
		}
	}
	r.buf[(r.head+r.n)%len(r.buf)] = q
	r.n++
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	if logDropped > 0 {
		r.s.log.Warn("webhook queue full: dropped the oldest messages", "receiver", r.index, "host", r.host,
			"dropped", logDropped, "queue", len(r.buf))
	}
}

func (r *receiver) pop() (queued, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		return queued{}, false
	}
	q := r.buf[r.head]
	r.buf[r.head] = queued{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return q, true
}

func (r *receiver) queueLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// run delivers the queue in order until Close: when closing it drains the
// queue; when aborted it counts what is left as dropped.
func (r *receiver) run() {
	defer r.s.wg.Done()
	for {
		if r.s.abortCtx.Err() != nil {
			r.dropRest()
			return
		}
		q, ok := r.pop()
		if !ok {
			select {
			case <-r.notify:
				continue
			case <-r.s.closing:
				if r.queueLen() > 0 {
					continue
				}
				return
			case <-r.s.abortCtx.Done():
				r.dropRest()
				return
			}
		}
		r.deliver(q)
	}
}

func (r *receiver) dropRest() {
	r.mu.Lock()
	r.dropped.Add(int64(r.n))
	clear(r.buf)
	r.head, r.n = 0, 0
	r.mu.Unlock()
}

type envelope struct {
	Type      string         `json:"type"`
	Timestamp string         `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

// body marshals the message: {"type", "timestamp", "data"}, with Stream as
// data.stream.
func (q *queued) body() ([]byte, error) {
	data := q.ev.Data
	if q.ev.Stream != "" {
		data = make(map[string]any, len(q.ev.Data)+1)
		for k, v := range q.ev.Data {
			data[k] = v
		}
		data["stream"] = q.ev.Stream
	} else if data == nil {
		data = map[string]any{}
	}
	return json.Marshal(envelope{Type: q.ev.Type, Timestamp: q.at.UTC().Format(time.RFC3339Nano), Data: data})
}

// deliver sends one message, retrying as the rules say, with the same
// webhook-id on every attempt.
func (r *receiver) deliver(q queued) {
	body, err := q.body()
	if err != nil {
		r.failed.Add(1)
		r.s.log.Error("webhook event not encodable", "receiver", r.index, "type", q.ev.Type, "err", err)
		return
	}
	id := "msg_" + rand.Text()
	for attempt := 0; ; attempt++ {
		if r.s.abortCtx.Err() != nil {
			r.dropped.Add(1)
			return
		}
		status, retryAfter, err := r.attempt(id, body)
		if r.s.abortCtx.Err() != nil && (err != nil || status == 0) {
			r.dropped.Add(1)
			return
		}
		if err == nil && status >= 200 && status < 300 {
			r.ok.Add(1)
			return
		}
		if err == nil && !retryable(status) {
			r.failed.Add(1)
			r.s.log.Warn("webhook refused, not retried", "receiver", r.index, "host", r.host,
				"type", q.ev.Type, "id", id, "status", status)
			return
		}
		if attempt >= len(r.s.backoff) {
			r.failed.Add(1)
			r.s.log.Warn("webhook given up", "receiver", r.index, "host", r.host, "type", q.ev.Type,
				"id", id, "attempts", attempt+1, "status", status, "err", err)
			return
		}
		wait := max(r.s.backoff[attempt], retryAfter)
		r.s.log.Debug("webhook attempt failed, retrying", "receiver", r.index, "host", r.host,
			"id", id, "status", status, "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.s.abortCtx.Done():
			t.Stop()
			r.dropped.Add(1)
			return
		}
		r.retried.Add(1)
	}
}

// retryable reports whether a status is worth another attempt.
func retryable(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

// attempt makes one POST. It returns the status (0 on a transport error),
// the Retry-After of a 429 or 503 (0 when absent), and the transport error.
func (r *receiver) attempt(id string, body []byte) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(r.s.abortCtx, r.s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	ts := strconv.FormatInt(r.s.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mseway-webhooks/1")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sign(r.key, id, ts, body))
	resp, err := r.s.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which may carry credentials
		}
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), r.s.now())
	}
	return resp.StatusCode, retryAfter, nil
}

// parseRetryAfter reads Retry-After as seconds (or an HTTP date), capped at
// MaxRetryAfter; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}
