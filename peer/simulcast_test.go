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

// TestLayersToSize: a flowing layer whose size is not known is asked for a
// keyframe at each check, layerSizeAsks times at most; a layer of known
// size, one not flowing, or one whose codec gives no size is not.
func TestLayersToSize(t *testing.T) {
	unknown := &simulcastLayer{rid: "f", rate: 1000, sizeReadable: true}
	known := &simulcastLayer{rid: "q", rate: 1000, sizeReadable: true}
	known.pixels.Store(320 * 180)
	stopped := &simulcastLayer{rid: "h", rate: 0, sizeReadable: true}
	vp8 := &simulcastLayer{rid: "v", rate: 1000}
	layers := []*simulcastLayer{unknown, known, stopped, vp8}
	for i := range layerSizeAsks + 2 {
		ask := layersToSize(layers)
		want := 0
		if i < layerSizeAsks {
			want = 1
		}
		if len(ask) != want || (want == 1 && ask[0] != unknown) {
			t.Fatalf("check %d: asked %d layers, want %d (the one of unknown size)", i+1, len(ask), want)
		}
	}
	if unknown.sizeAsks != layerSizeAsks {
		t.Errorf("asked %d times, want %d", unknown.sizeAsks, layerSizeAsks)
	}
	fresh := &simulcastLayer{rid: "f", rate: 1000, sizeReadable: true}
	fresh.pixels.Store(1280 * 720)
	if ask := layersToSize([]*simulcastLayer{fresh}); len(ask) != 0 {
		t.Errorf("a layer of known size was asked for a keyframe")
	}
}
