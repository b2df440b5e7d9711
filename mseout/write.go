package mseout

import (
	"errors"
	"net"
	"time"

	"github.com/mseway/mseway/contain"
)

func (v *viewer) count(bytes, msgs int64, first bool) {
	m := &v.h.r.metrics
	m.writes.Add(1)
	m.messagesSent.Add(msgs)
	m.bytesSent.Add(bytes)
	if first { // once per viewer
		m.ttff.Observe(time.Since(v.joined).Seconds())
	}
}

// flushDirect writes the viewer's queue from the fan-out goroutine with one
// non-blocking writev: no goroutine is woken when the socket has room, which
// is the common case for a viewer that keeps up. A viewer whose socket is
// full gets the rest from its writer goroutine (which may block, with a
// deadline). Called without h.mu.
func (v *viewer) flushDirect() {
	defer contain.Recover(v.h.r.log, "viewer direct write", v.abandon)
	v.mu.Lock()
	if !v.out.direct() || v.writing || v.stopped || v.closing || len(v.pending) > 0 || len(v.queue) == 0 ||
		v.pingDue || v.pong != nil || v.echo != nil || v.out.backlog() {
		// The writer goroutine has been (or will be) woken for it.
		v.mu.Unlock()
		return
	}
	_, bytes, msgs, first := v.takeLocked(false)
	v.mu.Unlock()
	n, err := v.out.tryWrite(v.bufs)
	if err != nil {
		v.mu.Lock()
		v.setLeave(leaveWriteError)
		v.mu.Unlock()
		v.conn.Close() // the read loop ends and cleans up
		v.doneWriting(nil)
		return
	}
	v.count(bytes, msgs, first)
	v.h.r.metrics.directWrites.Add(1)
	v.doneWriting(consume(v.bufs, n))
}

// consume returns what is left of bufs after n bytes were written.
func consume(bufs net.Buffers, n int) net.Buffers {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}

// writeLoop writes what the fan-out could not write directly: the join burst
// (init + GOP cache), control messages, keep-alives, and everything for a
// viewer whose socket is full or that cannot take direct writes. Each round
// takes all that is waiting and writes it with one writev, so a viewer that
// falls behind costs fewer syscalls, not more. It returns when nothing is
// left (notify starts it again). No lock is held while writing.
func (v *viewer) writeLoop() {
	defer v.wwg.Done()
	defer contain.Recover(v.h.r.log, "viewer writer", v.abandon)
	nc := v.conn.NetConn()
	wt := v.h.r.opts.WriteTimeout
	for {
		v.mu.Lock()
		// A direct write in progress wakes a writer again when it is done.
		if v.stopped || v.writing || !v.hasWorkLocked() {
			v.writerOn = false
			v.mu.Unlock()
			return
		}
		final, bytes, msgs, first := v.takeLocked(true)
		v.mu.Unlock()

		// The deadline bounds each write to between 3/4 and all of wt; it is
		// refreshed only when needed (setting it has a cost per write). With
		// direct writes it is cleared after the write: a deadline left
		// behind would fail the next direct write once it passed.
		direct := v.out.direct()
		if now := time.Now(); direct || v.deadlineAt.Sub(now) < wt*3/4 {
			v.deadlineAt = now.Add(wt)
			_ = nc.SetWriteDeadline(v.deadlineAt)
		}
		err := v.out.write(v.bufs)
		if direct && err == nil {
			err = nc.SetWriteDeadline(time.Time{})
		}
		if err == nil && len(v.bufs) > 0 {
			v.count(bytes, msgs, first)
		}
		if err != nil || final {
			v.conn.Close() // the read loop ends and cleans up
			v.mu.Lock()
			if err != nil {
				if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
					v.setLeave(leaveWriteTimeout)
				} else {
					v.setLeave(leaveWriteError)
				}
			}
			v.stopped = true
			if v.echoed != nil {
				close(v.echoed)
				v.echoed = nil
			}
			v.mu.Unlock()
			v.doneWriting(nil)
			v.mu.Lock()
			v.writerOn = false
			v.mu.Unlock()
			return
		}
		v.doneWriting(nil)
	}
}

// abandon closes a viewer whose write path panicked (contained): the
// connection is closed, so the read loop ends and cleans up, and nothing
// more is written to it.
func (v *viewer) abandon() {
	v.conn.Close()
	v.mu.Lock()
	v.setLeave(leavePanic)
	v.stopped = true
	v.writing = false
	v.writerOn = false
	v.mu.Unlock()
}
