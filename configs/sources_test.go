package configs

import (
	"testing"
	"time"
)

func TestDefaultTestPatternSource(t *testing.T) {
	s, ok := Default().Sources["testpattern"]
	if !ok || len(Default().Sources) != 1 {
		t.Fatalf("default sources = %+v", Default().Sources)
	}
	if s.Video != "videotest" || s.Audio != "audiotest" || s.VideoCodec != "h264" || !s.OnDemand || s.Width != 640 || s.Height != 360 || s.Linger != 10*time.Second {
		t.Fatalf("testpattern = %+v", s)
	}
}

func TestSourcesOverrides(t *testing.T) {
	// A file without a sources key keeps the default sources.
	c, err := Parse("x.yaml", []byte("listen: \":9000\"\n"))
	if err != nil || len(c.Sources) != 1 {
		t.Fatalf("%v %+v", err, c.Sources)
	}
	// A sources key replaces them; keys left out get DefaultSource's values.
	c, err = Parse("x.yaml", []byte("sources:\n  cam:\n    video: camera\n    audio: none\n    fps: 15\n"))
	if err != nil {
		t.Fatal(err)
	}
	cam, ok := c.Sources["cam"]
	if len(c.Sources) != 1 || !ok || cam.Video != "camera" || cam.Audio != "none" || cam.FPS != 15 ||
		cam.Width != DefaultSource.Width || cam.KeyframeInterval != DefaultSource.KeyframeInterval || cam.OnDemand {
		t.Fatalf("sources = %+v", c.Sources)
	}
	c, err = Parse("x.yaml", []byte("sources:\n  v:\n    video_codec: vp9\n"))
	if err != nil || c.Sources["v"].VideoCodec != "vp9" || c.Sources["v"].Video != DefaultSource.Video {
		t.Fatalf("video_codec: vp9 -> %v %+v", err, c.Sources)
	}
	c, err = Parse("x.yaml", []byte("sources: {}\n"))
	if err != nil || len(c.Sources) != 0 {
		t.Fatalf("sources: {} -> %v %+v", err, c.Sources)
	}
}

func TestSourcesErrors(t *testing.T) {
	cases := []badConfig{
		{"sources:\n  bad/name: {}", "sources.bad/name"},
		{"sources:\n  a:\n    vidoe: camera", "sources.a"},
		{"sources:\n  a:\n    video: none\n    audio: none", "sources.a: video and audio are both none"},
		{"sources:\n  a:\n    width: 33", "sources.a.width"},
		{"sources:\n  a:\n    height: 0", "sources.a.height"},
		{"sources:\n  a:\n    fps: 0", "sources.a.fps"},
		{"sources:\n  a:\n    video_bitrate: 1", "sources.a.video_bitrate"},
		{"sources:\n  a:\n    audio_bitrate: 1", "sources.a.audio_bitrate"},
		{"sources:\n  a:\n    keyframe_interval: -1s", "sources.a.keyframe_interval"},
		{"sources:\n  a:\n    linger: 0s", "sources.a.linger"},
		{"sources:\n  a:\n    video: \"\"", "sources.a.video"},
		{"sources:\n  a: {}\n  b: {}", "sources.b.video: device \"videotest\" is already used by sources.a"},
		{"sources:\n  a:\n    on_demand: true\nstreams:\n  a:\n    wait_for_publisher: false", "sources.a.on_demand"},
		{"sources: [1]", "sources"},
		{"sources:\n  a:\n    video_codec: vp8", "sources.a.video_codec: \"vp8\": VP8 is not supported"},
		{"sources:\n  a:\n    video_codec: av1", "sources.a.video_codec: \"av1\": want h264 or vp9"},
		{"sources:\n  a:\n    video_codec: \"\"", "sources.a.video_codec"},
	}
	checkErrors(t, cases)
}
