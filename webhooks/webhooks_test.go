package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/promtext"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testWhsec = "whsec_dGVzdCBrZXkgb2YgdGhlIHdlYmhvb2tzIHBhY2thZ2U=" // "test key of the webhooks package"
	testPlain = "plain secret of the receiver"
)

// delivery is one request a testReceiver got.
type delivery struct {
	n         int // the receiver's request number, from 0
	path      string
	header    http.Header
	body      []byte
	at        time.Time
	verifyErr error
	env       struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
}

// testReceiver is an HTTP receiver that verifies and records every request;
// respond (nil = 204) answers request n.
type testReceiver struct {
	t       *testing.T
	srv     *httptest.Server
	secret  string
	respond func(n int, w http.ResponseWriter, r *http.Request)
	release chan struct{} // closed at cleanup: handlers that block return

	mu  sync.Mutex
	got []delivery
}

func newReceiver(t *testing.T, secret string, respond func(n int, w http.ResponseWriter, r *http.Request)) *testReceiver {
	t.Helper()
	tr := &testReceiver{t: t, secret: secret, respond: respond, release: make(chan struct{})}
	tr.srv = httptest.NewServer(http.HandlerFunc(tr.serve))
	t.Cleanup(tr.srv.Close)
	t.Cleanup(func() { tr.unblock() }) // runs before srv.Close
	return tr
}

func (tr *testReceiver) unblock() {
	select {
	case <-tr.release:
	default:
		close(tr.release)
	}
}

func (tr *testReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	d := delivery{path: r.URL.Path, header: r.Header.Clone(), body: body, at: time.Now()}
	d.verifyErr = Verify(tr.secret, r.Header, body, time.Minute, time.Now())
	if err := json.Unmarshal(body, &d.env); err != nil {
		tr.t.Errorf("body %q is not JSON: %v", body, err)
	}
	tr.mu.Lock()
	d.n = len(tr.got)
	tr.got = append(tr.got, d)
	tr.mu.Unlock()
	if tr.respond != nil {
		tr.respond(d.n, w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (tr *testReceiver) deliveries() []delivery {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]delivery(nil), tr.got...)
}

// hang blocks a handler until the request is cancelled or the test ends.
func (tr *testReceiver) hang(_ int, _ http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-tr.release:
	}
}

func newSender(t *testing.T, hooks []configs.Webhook, opts Options) *Sender {
	t.Helper()
	s, err := New(hooks, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fast are options for tests: short backoffs.
func fast() Options {
	return Options{Backoff: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}, Timeout: 2 * time.Second}
}

func TestDeliveriesSignedAndShaped(t *testing.T) {
	rw := newReceiver(t, testWhsec, nil)
	rp := newReceiver(t, testPlain, nil)
	s := newSender(t, []configs.Webhook{{URL: rw.srv.URL + "/w", Secret: testWhsec}, {URL: rp.srv.URL + "/p", Secret: testPlain, Events: []string{"*"}}}, fast())

	before := time.Now()
	s.Emit(Event{Type: EventPublishStarted, Stream: "cam1", Data: map[string]any{"remote": "192.0.2.1", "stream": "overridden"}})
	s.Emit(Event{Type: EventAuthRefused})
	for _, tr := range []*testReceiver{rw, rp} {
		waitFor(t, "two deliveries", func() bool { return len(tr.deliveries()) == 2 })
		got := tr.deliveries()
		ids := map[string]bool{}
		for i, d := range got {
			if d.verifyErr != nil {
				t.Errorf("%s delivery %d: Verify: %v", tr.secret, i, d.verifyErr)
			}
			if ct := d.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			id := d.header.Get(HeaderID)
			if !strings.HasPrefix(id, "msg_") || len(id) < 20 || ids[id] {
				t.Errorf("webhook-id %q: want msg_ + random, unique", id)
			}
			ids[id] = true
			ts, err := time.Parse(time.RFC3339Nano, d.env.Timestamp)
			if err != nil || !strings.HasSuffix(d.env.Timestamp, "Z") || ts.Before(before.Add(-time.Second)) || ts.After(time.Now()) {
				t.Errorf("timestamp %q: want RFC 3339 UTC of the Emit (%v)", d.env.Timestamp, err)
			}
			// A receiver with the other secret, or a tampered body, fails.
			other := testPlain
			if tr.secret == testPlain {
				other = testWhsec
			}
			if err := Verify(other, d.header, d.body, time.Minute, time.Now()); !errors.Is(err, ErrNoMatchSignature) {
				t.Errorf("Verify with the wrong secret = %v", err)
			}
			tampered := bytes.Replace(d.body, []byte(`"type"`), []byte(`"tipe"`), 1)
			if err := Verify(tr.secret, d.header, tampered, time.Minute, time.Now()); !errors.Is(err, ErrNoMatchSignature) {
				t.Errorf("Verify of a tampered body = %v", err)
			}
			if err := Verify(tr.secret, d.header, d.body, time.Minute, time.Now().Add(2*time.Minute)); !errors.Is(err, ErrTimestamp) {
				t.Errorf("Verify 2 minutes later with 1 minute tolerance = %v", err)
			}
		}
		if d := got[0]; d.env.Type != EventPublishStarted || len(d.env.Data) != 2 || d.env.Data["stream"] != "cam1" || d.env.Data["remote"] != "192.0.2.1" {
			t.Errorf("first delivery = %s", d.body)
		}
		if d := got[1]; d.env.Type != EventAuthRefused || d.env.Data == nil || len(d.env.Data) != 0 || !strings.Contains(string(d.body), `"data":{}`) {
			t.Errorf("second delivery = %s, want empty data object", d.body)
		}
	}
	if p := rw.deliveries()[0].path; p != "/w" {
		t.Errorf("path %q", p)
	}

	// The plain secret's signature, recomputed here with crypto/hmac.
	d := rp.deliveries()[0]
	m := hmac.New(sha256.New, []byte(testPlain))
	m.Write([]byte(d.header.Get(HeaderID) + "." + d.header.Get(HeaderTimestamp) + "." + string(d.body)))
	if want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); d.header.Get(HeaderSignature) != want {
		t.Errorf("plain secret signature %s, want %s", d.header.Get(HeaderSignature), want)
	}
	// And the whsec_ one with the decoded key.
	d = rw.deliveries()[0]
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testWhsec, "whsec_"))
	m = hmac.New(sha256.New, key)
	m.Write([]byte(d.header.Get(HeaderID) + "." + d.header.Get(HeaderTimestamp) + "." + string(d.body)))
	if want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); d.header.Get(HeaderSignature) != want {
		t.Errorf("whsec_ secret signature %s, want %s", d.header.Get(HeaderSignature), want)
	}
}

func TestEventsFilter(t *testing.T) {
	only := newReceiver(t, testPlain, nil)
	all := newReceiver(t, testPlain, nil)
	opts := fast()
	opts.AggregateInterval = 20 * time.Millisecond
	s := newSender(t, []configs.Webhook{
		{URL: only.srv.URL, Secret: testPlain, Events: []string{EventPublishStarted}},
		{URL: all.srv.URL, Secret: testPlain},
	}, opts)
	for _, typ := range []string{EventPublishEnded, EventPublishTakeover, EventAuthRefused} {
		s.Emit(Event{Type: typ, Stream: "x"})
	}
	s.ViewerJoined("x")
	waitFor(t, "viewers.changed at the all-events receiver", func() bool { return len(all.deliveries()) == 4 })
	s.Emit(Event{Type: EventPublishStarted, Stream: "x"})
	waitFor(t, "publish.started everywhere", func() bool { return len(all.deliveries()) == 5 && len(only.deliveries()) >= 1 })
	// Deliveries are in order: anything else for "only" would be there by now.
	got := only.deliveries()
	if len(got) != 1 || got[0].env.Type != EventPublishStarted {
		var types []string
		for _, d := range got {
			types = append(types, d.env.Type)
		}
		t.Fatalf("publish.started-only receiver got %v", types)
	}
	var types []string
	for _, d := range all.deliveries() {
		types = append(types, d.env.Type)
	}
	if want := "publish.ended publish.takeover auth.refused viewers.changed publish.started"; strings.Join(types, " ") != want {
		t.Fatalf("all-events receiver got %v, want %s", types, want)
	}
}

func TestRetry5xxSameIDInOrder(t *testing.T) {
	tr := newReceiver(t, testPlain, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, fast())
	s.Emit(Event{Type: EventPublishStarted, Stream: "a"})
	s.Emit(Event{Type: EventPublishEnded, Stream: "a"})
	r := s.receivers[0]
	waitFor(t, "two delivered", func() bool { return r.ok.Load() == 2 })
	got := tr.deliveries()
	if len(got) != 4 {
		t.Fatalf("%d requests, want 4 (3 attempts, then the next message)", len(got))
	}
	id := got[0].header.Get(HeaderID)
	for i, d := range got {
		if d.verifyErr != nil {
			t.Errorf("attempt %d: %v", i, d.verifyErr)
		}
		want := EventPublishStarted
		if i == 3 {
			want = EventPublishEnded
		}
		if d.env.Type != want {
			t.Errorf("request %d is %s, want %s", i, d.env.Type, want)
		}
		if sameID := d.header.Get(HeaderID) == id; sameID != (i < 3) {
			t.Errorf("request %d webhook-id %s (first %s): want the same id on the retries only", i, d.header.Get(HeaderID), id)
		}
		if i < 3 && !bytes.Equal(d.body, got[0].body) {
			t.Errorf("retry %d body differs: %s", i, d.body)
		}
	}
	if r.retried.Load() != 2 || r.failed.Load() != 0 || r.dropped.Load() != 0 {
		t.Errorf("retried %d failed %d dropped %d, want 2 0 0", r.retried.Load(), r.failed.Load(), r.dropped.Load())
	}
}

func TestRetryTransportError(t *testing.T) {
	tr := newReceiver(t, testPlain, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			panic(http.ErrAbortHandler) // the connection is cut: no response
		}
		w.WriteHeader(http.StatusOK)
	})
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, fast())
	s.Emit(Event{Type: EventPublishStarted})
	r := s.receivers[0]
	waitFor(t, "delivered", func() bool { return r.ok.Load() == 1 })
	if n := len(tr.deliveries()); n != 2 || r.retried.Load() != 1 {
		t.Fatalf("%d requests, %d retried; want 2, 1", n, r.retried.Load())
	}
}

func TestRetryGivesUp(t *testing.T) {
	tr := newReceiver(t, testPlain, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	opts := fast()
	opts.Backoff = []time.Duration{5 * time.Millisecond, 5 * time.Millisecond}
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, opts)
	s.Emit(Event{Type: EventPublishStarted})
	r := s.receivers[0]
	waitFor(t, "given up", func() bool { return r.failed.Load() == 1 })
	if n := len(tr.deliveries()); n != 3 || r.retried.Load() != 2 || r.ok.Load() != 0 {
		t.Fatalf("%d requests, %d retried, %d ok; want 3, 2, 0", n, r.retried.Load(), r.ok.Load())
	}
}

func TestNotRetried(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		client *http.Client
	}{
		{"400", http.StatusBadRequest, nil},
		{"404", http.StatusNotFound, nil},
		{"redirect not followed", http.StatusTemporaryRedirect, nil},
		{"redirect not followed with a given client", http.StatusFound, &http.Client{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newReceiver(t, testPlain, func(_ int, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					w.WriteHeader(http.StatusOK)
					return
				}
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(c.status)
			})
			opts := fast()
			opts.HTTPClient = c.client
			opts.Backoff = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
			s := newSender(t, []configs.Webhook{{URL: tr.srv.URL + "/hook", Secret: testPlain}}, opts)
			s.Emit(Event{Type: EventPublishStarted})
			r := s.receivers[0]
			waitFor(t, "failed", func() bool { return r.failed.Load() == 1 })
			time.Sleep(100 * time.Millisecond) // a retry would come after 1 ms
			got := tr.deliveries()
			if len(got) != 1 || got[0].path != "/hook" || r.retried.Load() != 0 || r.ok.Load() != 0 {
				t.Fatalf("%d requests (first to %s), retried %d, ok %d; want 1 to /hook, 0, 0", len(got), got[0].path, r.retried.Load(), r.ok.Load())
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	tr := newReceiver(t, testPlain, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, fast()) // backoff 10 ms
	s.Emit(Event{Type: EventPublishStarted})
	r := s.receivers[0]
	waitFor(t, "delivered", func() bool { return r.ok.Load() == 1 })
	got := tr.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	// Only a lower bound: the retry waited the second the receiver asked for.
	if gap := got[1].at.Sub(got[0].at); gap < 950*time.Millisecond {
		t.Fatalf("retry %v after a 429 with Retry-After: 1", gap)
	}
	if got[0].header.Get(HeaderID) != got[1].header.Get(HeaderID) {
		t.Fatal("retry has another webhook-id")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{"30", 30 * time.Second},
		{"120", MaxRetryAfter},
		{"99999999999999999", MaxRetryAfter},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(20 * time.Second).Format(http.TimeFormat), 20 * time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(c.v, now); got != c.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestBoundedQueueDropsOldest(t *testing.T) {
	tr := newReceiver(t, testPlain, nil)
	tr.respond = tr.hang
	var logs syncBuffer
	var clock atomic.Int64 // unix nanoseconds of the fake clock
	clock.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	const size = 16
	opts := fast()
	opts.QueueSize = size
	opts.Timeout = time.Minute
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	opts.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, opts)
	r := s.receivers[0]

	s.Emit(Event{Type: EventPublishStarted, Data: map[string]any{"i": -1}})
	waitFor(t, "the first message in flight", func() bool { return len(tr.deliveries()) == 1 })

	start := time.Now()
	for i := range 10 * size {
		s.Emit(Event{Type: EventPublishStarted, Data: map[string]any{"i": i}})
		if n := r.queueLen(); n > size {
			t.Fatalf("queue length %d after %d emits, above QueueSize %d", n, i+1, size)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%d Emits took %v with a hanging receiver", 10*size, d)
	}
	if len(r.buf) != size || cap(r.buf) != size {
		t.Fatalf("queue grew to %d", cap(r.buf))
	}
	if got, want := r.dropped.Load(), int64(9*size); got != want {
		t.Fatalf("dropped %d, want %d", got, want)
	}
	// The oldest were dropped: the queue holds the newest.
	if q, _ := r.pop(); q.ev.Data["i"] != 9*size {
		t.Fatalf("oldest queued message is %v, want %d", q.ev.Data["i"], 9*size)
	}
	if n := strings.Count(logs.String(), "webhook queue full"); n != 1 {
		t.Fatalf("%d drop log lines in the same 10 s, want 1:\n%s", n, logs.String())
	}
	// 10 s later the next drop logs again, with how many since.
	clock.Add(int64(10 * time.Second))
	s.Emit(Event{Type: EventPublishStarted})
	s.Emit(Event{Type: EventPublishStarted})
	out := logs.String()
	if n := strings.Count(out, "webhook queue full"); n != 2 {
		t.Fatalf("%d drop log lines after 10 s, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "dropped=1 ") || !strings.Contains(out, "dropped=144 ") {
		t.Fatalf("drop log lines do not count the drops since the last (1, then 144):\n%s", out)
	}
}

func TestEmitDoesNotAllocate(t *testing.T) {
	tr := newReceiver(t, testPlain, nil)
	tr.respond = tr.hang
	opts := fast()
	opts.Timeout = time.Minute
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, opts)
	s.Emit(Event{Type: EventPublishStarted})
	waitFor(t, "the first message in flight", func() bool { return len(tr.deliveries()) == 1 })
	ev := Event{Type: EventPublishStarted, Stream: "s", Data: map[string]any{"k": "v"}}
	if n := testing.AllocsPerRun(200, func() { s.Emit(ev); s.ViewerJoined("s") }); n > 0 {
		t.Fatalf("Emit + ViewerJoined allocate %v times", n)
	}
}

func TestViewersAggregated(t *testing.T) {
	tr := newReceiver(t, testPlain, nil)
	opts := fast()
	opts.AggregateInterval = 300 * time.Millisecond
	opts.ViewerCount = func(stream string) int {
		if stream == "a" {
			return 30
		}
		return 7
	}
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain, Events: []string{EventViewersChanged}}}, opts)
	for range 50 {
		s.ViewerJoined("a")
	}
	for range 20 {
		s.ViewerLeft("a")
	}
	s.ViewerJoined("b")
	waitFor(t, "viewers.changed for a and b", func() bool { return len(tr.deliveries()) >= 2 })
	time.Sleep(3 * opts.AggregateInterval) // a second event would come in this time
	got := tr.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2 (one per stream)", len(got))
	}
	want := map[string]map[string]any{
		"a": {"stream": "a", "joined": 50.0, "left": 20.0, "viewers": 30.0},
		"b": {"stream": "b", "joined": 1.0, "left": 0.0, "viewers": 7.0},
	}
	for _, d := range got {
		st, _ := d.env.Data["stream"].(string)
		if d.env.Type != EventViewersChanged || !equalData(d.env.Data, want[st]) {
			t.Errorf("delivery %s, want data %v", d.body, want[st])
		}
		delete(want, st)
	}
	// A later change opens a new window.
	s.ViewerLeft("a")
	waitFor(t, "a second viewers.changed", func() bool { return len(tr.deliveries()) == 3 })
	if d := tr.deliveries()[2]; !equalData(d.env.Data, map[string]any{"stream": "a", "joined": 0.0, "left": 1.0, "viewers": 30.0}) {
		t.Errorf("second window: %s", d.body)
	}
}

func equalData(got, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestViewersWithoutCountAndFlushedAtClose(t *testing.T) {
	tr := newReceiver(t, testPlain, nil)
	opts := fast()
	opts.AggregateInterval = time.Hour // only Close sends it
	s, err := New([]configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.ViewerJoined("x")
	s.ViewerJoined("x")
	s.ViewerLeft("x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Close(ctx)
	got := tr.deliveries()
	if len(got) != 1 || !equalData(got[0].env.Data, map[string]any{"stream": "x", "joined": 2.0, "left": 1.0}) {
		t.Fatalf("deliveries at Close: %v", got)
	}
}

func TestViewersNotWanted(t *testing.T) {
	tr := newReceiver(t, testPlain, nil)
	s := newSender(t, []configs.Webhook{{URL: tr.srv.URL, Secret: testPlain, Events: []string{EventPublishStarted, EventPublishEnded}}}, fast())
	if s.aggDone != nil || s.wantViewers {
		t.Fatal("the aggregator runs with no receiver wanting viewers.changed")
	}
	s.ViewerJoined("a") // no-op, no panic
	s.ViewerLeft("a")
}

func TestCloseDrainsQueue(t *testing.T) {
	tr := newReceiver(t, testPlain, func(n int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond)
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable) // retried while draining
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	s, err := New([]configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, fast())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		s.Emit(Event{Type: EventPublishStarted})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close(ctx)
	r := s.receivers[0]
	if r.ok.Load() != 5 || r.dropped.Load() != 0 || len(tr.deliveries()) != 6 {
		t.Fatalf("after Close: ok %d dropped %d requests %d; want 5 0 6", r.ok.Load(), r.dropped.Load(), len(tr.deliveries()))
	}
	s.Emit(Event{Type: EventPublishStarted}) // after Close: nothing
	s.Close(ctx)                             // twice: fine
	if r.queueLen() != 0 {
		t.Fatal("Emit after Close queued")
	}
}

func TestCloseHangingReceiver(t *testing.T) {
	tr := newReceiver(t, testPlain, nil)
	tr.respond = tr.hang
	opts := fast()
	opts.Timeout = time.Minute
	s, err := New([]configs.Webhook{{URL: tr.srv.URL, Secret: testPlain}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s.Emit(Event{Type: EventPublishStarted})
	}
	waitFor(t, "the first message in flight", func() bool { return len(tr.deliveries()) == 1 })
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		s.Close(ctx)
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(deadline + 2*time.Second):
		tr.unblock() // let the test end
		t.Fatalf("Close still running %v after its %v deadline", time.Since(start), deadline)
	}
	r := s.receivers[0]
	if r.dropped.Load() != 3 || r.ok.Load() != 0 || r.queueLen() != 0 {
		t.Fatalf("dropped %d ok %d queued %d; want 3 0 0", r.dropped.Load(), r.ok.Load(), r.queueLen())
	}
	s.Emit(Event{Type: EventPublishStarted})
	if r.queueLen() != 0 {
		t.Fatal("Emit after Close queued")
	}
	tr.unblock()
	tr.srv.Close()
	goleak.VerifyNone(t) // the Sender's goroutines (and its connections') ended
}

func TestCollector(t *testing.T) {
	ok := newReceiver(t, testPlain, nil)
	bad := newReceiver(t, testPlain, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	s := newSender(t, []configs.Webhook{{URL: ok.srv.URL, Secret: testPlain}, {URL: bad.srv.URL, Secret: testPlain}}, fast())
	s.Emit(Event{Type: EventPublishStarted})
	s.Emit(Event{Type: EventPublishEnded})
	waitFor(t, "outcomes", func() bool { return s.receivers[0].ok.Load() == 2 && s.receivers[1].failed.Load() == 2 })
	out := promtext.Text(t, s.Collector())
	for _, want := range []string{
		"# TYPE gateway_webhook_deliveries_total counter\n",
		`gateway_webhook_deliveries_total{receiver="0",result="ok"} 2` + "\n",
		`gateway_webhook_deliveries_total{receiver="0",result="failed"} 0` + "\n",
		`gateway_webhook_deliveries_total{receiver="1",result="failed"} 2` + "\n",
		`gateway_webhook_deliveries_total{receiver="1",result="dropped"} 0` + "\n",
		`gateway_webhook_deliveries_total{receiver="1",result="retried"} 0` + "\n",
		"# TYPE gateway_webhook_queue_length gauge\n",
		`gateway_webhook_queue_length{receiver="1"} 0` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, testPlain) || strings.Contains(out, ok.srv.URL) {
		t.Errorf("metrics show a secret or URL:\n%s", out)
	}
}

func TestNilSender(t *testing.T) {
	s, err := New(nil, Options{})
	if s != nil || err != nil {
		t.Fatalf("New(nil) = %v, %v; want nil, nil", s, err)
	}
	s.Emit(Event{Type: EventPublishStarted})
	s.ViewerJoined("a")
	s.ViewerLeft("a")
	out := promtext.Text(t, s.Collector())
	s.Close(context.Background())
	if out != "" {
		t.Fatalf("nil Sender wrote metrics %q", out)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, h := range []configs.Webhook{
		{URL: "http://example.org/h", Secret: "whsec_not*base64"},
		{URL: "http://example.org/h", Secret: "whsec_"},
		{URL: "http://example.org/h", Secret: ""},
		{URL: "ftp://example.org/h", Secret: testPlain},
		{URL: "/relative", Secret: testPlain},
		{URL: "http://example.org/h", Secret: testPlain, Events: []string{"publish.stopped"}},
	} {
		if s, err := New([]configs.Webhook{h}, Options{}); err == nil || s != nil {
			t.Errorf("New(%+v) = %v, nil; want an error", h, s)
			s.Close(context.Background())
		}
	}
}

func TestEventNamesMatchConfig(t *testing.T) {
	ours := []string{EventPublishStarted, EventPublishEnded, EventPublishTakeover, EventViewersChanged, EventAuthRefused}
	if strings.Join(ours, ",") != strings.Join(configs.WebhookEvents, ",") {
		t.Fatalf("event constants %v differ from configs.WebhookEvents %v", ours, configs.WebhookEvents)
	}
}
