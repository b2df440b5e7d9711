package gateway_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/gateway"
)

// A test can run a gateway in another process, to kill it as a crash would
// (SIGKILL: no goaway, no withdrawal from the directory, sockets reset by
// the kernel): the test binary re-executes itself with these variables set,
// and TestMain runs runChildGateway instead of the tests.
const (
	childNATSEnv = "MSEWAY_TEST_CHILD_NATS" // the NATS URL the child joins
	childNodeEnv = "MSEWAY_TEST_CHILD_NODE" // its node id
	// childRecordEnv, when set, is a directory the child records every
	// stream into, in 2 s files synced every 100 ms.
	childRecordEnv = "MSEWAY_TEST_CHILD_RECORD"
)

// childLine starts the line the child prints with its base URL.
const childLine = "child gateway listening on "

// runChildGateway serves a cluster node on loopback until the process is
// killed. Its public_url is its own address.
func runChildGateway() int {
	cfg := loopbackConfig()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	if nats := os.Getenv(childNATSEnv); nats != "" {
		cfg.Cluster.NATSURLs = []string{nats}
		cfg.Cluster.NodeID = os.Getenv(childNodeEnv)
		cfg.Cluster.PublicURL = base
		cfg.Cluster.Heartbeat, cfg.Cluster.TTL = 200*time.Millisecond, 2*time.Second
	}
	if dir := os.Getenv(childRecordEnv); dir != "" {
		cfg.StreamDefaults.Record = true
		cfg.Record.Path = filepath.Join(dir, "%stream", "%Y-%m-%d_%H-%M-%S-%f.mp4")
		cfg.Record.SegmentDuration, cfg.Record.SyncInterval = 2*time.Second, 100*time.Millisecond
	}
	level := slog.LevelError
	if os.Getenv("GATEWAY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	g, err := gateway.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), gateway.Options{LoopbackOnly: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(childLine + base)
	if err := g.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childGateway is a gateway in a child process.
type childGateway struct {
	base string
	cmd  *exec.Cmd
	done chan struct{}
}

// startChildGateway runs a cluster node of natsURL named id in a child
// process (no cluster when natsURL is empty; env adds settings, as
// childRecordEnv=DIR); it is killed at the end of the test if it still
// runs.
func startChildGateway(t *testing.T, natsURL, id string, env ...string) *childGateway {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childNATSEnv+"="+natsURL, childNodeEnv+"="+id), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childGateway{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), childLine); ok {
				found <- rest
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(c.kill)
	select {
	case c.base = <-found:
	case <-c.done:
		t.Fatalf("child gateway %s exited before listening", id)
	case <-time.After(30 * time.Second):
		t.Fatalf("child gateway %s did not start", id)
	}
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *childGateway) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}
