package peer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatchConnReads sends datagrams from two senders (more than one batch)
// and checks each is read whole, in order per sender, with its sender's
// address; a short buffer cuts the datagram as a UDP socket does; Close
// ends a blocked read.
func TestBatchConnReads(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			ip := net.IPv4(127, 0, 0, 1)
			if network == "udp6" {
				ip = net.IPv6loopback
			}
			c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			bc, err := NewBatchConn(c)
			if err != nil {
				t.Fatal(err)
			}
			defer bc.Close()
			var senders []*net.UDPConn
			for range 2 {
				s, err := net.DialUDP(network, nil, c.LocalAddr().(*net.UDPAddr))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				senders = append(senders, s)
			}
			const per = readBatch + 7
			for i := range per {
				for j, s := range senders {
					msg := bytes.Repeat([]byte{byte(i)}, 100+i*30+j)
					if _, err := s.Write(msg); err != nil {
						t.Fatal(err)
					}
				}
			}
			next := map[netip.AddrPort]int{}
			buf := make([]byte, 2000)
			_ = bc.SetReadDeadline(time.Now().Add(5 * time.Second))
			for range per * len(senders) {
				n, from, err := bc.ReadFromAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				j := -1
				for k, s := range senders {
					if s.LocalAddr().(*net.UDPAddr).AddrPort() == from {
						j = k
					}
				}
				if j < 0 {
					t.Fatalf("datagram from %s, not a sender", from)
				}
				i := next[from]
				next[from]++
				if want := bytes.Repeat([]byte{byte(i)}, 100+i*30+j); !bytes.Equal(buf[:n], want) {
					t.Fatalf("sender %d datagram %d: %d bytes, want %d", j, i, n, len(want))
				}
			}
			datagrams, reads := bc.Stats()
			t.Logf("%d datagrams in %d reads", datagrams, reads)

			// A short buffer gets the datagram cut; ReadFrom gives a *net.UDPAddr.
			if _, err := senders[0].Write(bytes.Repeat([]byte{9}, 500)); err != nil {
				t.Fatal(err)
			}
			short := make([]byte, 10)
			n, addr, err := bc.ReadFrom(short)
			if err != nil || n != 10 || addr.(*net.UDPAddr).AddrPort() != senders[0].LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("short read: %d %v %v", n, addr, err)
			}

			// Writes go out.
			if _, err := bc.WriteToAddrPort([]byte("pong"), senders[1].LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
				t.Fatal(err)
			}
			_ = senders[1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := senders[1].Read(buf); err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("write: %q %v", buf[:n], err)
			}

			// Close ends a blocked read.
			_ = bc.SetReadDeadline(time.Time{})
			done := make(chan error, 1)
			go func() {
				_, _, err := bc.ReadFromAddrPort(buf)
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			bc.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read after Close: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not end a blocked read")
			}
		})
	}
}

// TestBatchConnNoAllocs: reading a datagram allocates nothing, whether it
// comes from the batch in memory or from a new read of the socket.
func TestBatchConnNoAllocs(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := NewBatchConn(c)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, 1200)
	buf := make([]byte, 1500)
	read := func() {
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := bc.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	read() // warm up
	if a := testing.AllocsPerRun(200, read); a != 0 {
		t.Errorf("%v allocations per datagram, want 0", a)
	}
}

// BenchmarkBatchConn: one datagram sent and read per op, through the batch
// reader and through a plain socket read.
func BenchmarkBatchConn(b *testing.B) {
	for _, batched := range []bool{true, false} {
		b.Run(fmt.Sprintf("batched=%v", batched), func(b *testing.B) {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadBuffer(8 << 20)
			bc, err := NewBatchConn(c)
			if err != nil {
				b.Fatal(err)
			}
			defer bc.Close()
			s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			msg := make([]byte, 1200)
			buf := make([]byte, 1500)
			const burst = 16 // as packets of a video frame arrive
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				for range burst {
					_, _ = s.Write(msg)
				}
				for range burst {
					if batched {
						_, _, err = bc.ReadFromAddrPort(buf)
					} else {
						_, _, err = c.ReadFromUDPAddrPort(buf)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
