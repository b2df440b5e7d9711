package remux

import (
	"math/rand"
	"testing"
	"time"
)

type recHandler struct {
	ts   []uint32
	lost int
}

func (r *recHandler) handlePacket(ts uint32, _ bool, _ []byte, _ bool, _ time.Time, lost int) {
	r.ts = append(r.ts, ts)
	r.lost += lost
}

// shuffleBounded permutes 0..n-1 so that no element moves by more than k.
func shuffleBounded(rng *rand.Rand, n, k int) []int {
	key := make([]float64, n)
	idx := make([]int, n)
	for i := range key {
		key[i] = float64(i) + rng.Float64()*float64(k)
		idx[i] = i
	}
	// insertion sort by key (n is small)
	for i := 1; i < n; i++ {
		for j := i; j > 0 && key[idx[j]] < key[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	return idx
}

func TestReorderBuffer(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		name     string
		n, k     int
		spacing  time.Duration
		dropEach int
		wantLost int
	}{
		{"dense-window-200", 3000, 200, 0, 0, 0},
		{"paced-window-8", 3000, 8, 5 * time.Millisecond, 0, 0},
		{"drops", 3000, 4, time.Millisecond, 97, 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := newReorderBuffer(videoReorderSlots, videoReorderWait)
			h := &recHandler{}
			order := shuffleBounded(rng, tc.n, tc.k)
			order[0], order[indexOf(order, 0)] = 0, order[0]
			for pos, i := range order {
				if tc.dropEach > 0 && i%tc.dropEach == 50 {
					continue
				}
				seq := uint16(65000 + i)
				rb.push(h, seq, uint32(i), false, []byte{1}, false, t0.Add(time.Duration(pos)*tc.spacing))
			}
			// Flush with far-future packets.
			rb.push(h, uint16(65000+tc.n+300), 0, false, []byte{1}, false, t0.Add(time.Hour))
			if h.lost != tc.wantLost+300 {
				t.Fatalf("lost %d, want %d", h.lost, tc.wantLost+300)
			}
			prev := -1
			for _, ts := range h.ts[:len(h.ts)-1] {
				if int(ts) <= prev {
					t.Fatalf("out of order: %d after %d", ts, prev)
				}
				prev = int(ts)
			}
			if got := len(h.ts) - 1; got != tc.n-tc.wantLost {
				t.Fatalf("delivered %d", got)
			}
		})
	}
}

func indexOf(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
