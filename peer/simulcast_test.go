package peer

import "testing"

func TestBetterLayer(t *testing.T) {
	layer := func(rate float64, pixels int64) *simulcastLayer {
		l := &simulcastLayer{rate: rate}
		l.pixels.Store(pixels)
		return l
	}
	for _, c := range []struct {
		name   string
		l, cur *simulcastLayer
		want   bool
	}{
		{"current stopped", layer(100, 0), layer(0, 1280*720), true},
		{"larger picture", layer(100, 1280*720), layer(500, 320*180), true},
		{"smaller picture", layer(900, 320*180), layer(100, 1280*720), false},
		{"same picture", layer(900, 640*360), layer(100, 640*360), false},
		{"sizes unknown, clearly more bits", layer(200, 0), layer(100, 0), true},
		{"sizes unknown, a little more", layer(140, 0), layer(100, 0), false},
	} {
		if got := betterLayer(c.l, c.cur); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
