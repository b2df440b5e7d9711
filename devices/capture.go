package devices

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/driver"
	"github.com/pion/mediadevices/pkg/prop"

	"github.com/mseway/mseway/bitstream"
)

// Frame is one encoded frame.
type Frame struct {
	// Data is an H.264 access unit in Annex-B form, a VP9 frame, or one
	// Opus packet.
	Data []byte
	// Time is the capture time since the Capture started: video on the
	// nominal frame grid (multiples of 1/fps), audio by sample count (its
	// packets are exactly Duration apart).
	Time     time.Duration
	Duration time.Duration
	Keyframe bool
}

// Sink receives encoded frames on the capture goroutines. It must not block
// for long: capture does not wait for a slow network.
type Sink interface {
	WriteVideo(Frame)
	WriteAudio(Frame)
}

// Stats are a Capture's counters.
type Stats struct {
	VideoFrames      int64 // encoded video frames (skipped frames not counted)
	Keyframes        int64
	KeyframeRequests int64 // calls to RequestKeyframe
	AudioPackets     int64
}

// Capture is a running capture of one video and/or one audio device. Its
// goroutines run from Open to Close.
type Capture struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	video, audio *track

	sink     atomic.Pointer[sinkBox]
	forceKey atomic.Bool

	stop      chan struct{}
	done      chan struct{} // closed when a track ended by itself (device error)
	doneOnce  sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup
	err       atomic.Pointer[error]

	videoFrames, keyframes, keyRequests, audioPackets atomic.Int64
}

type sinkBox struct{ s Sink }

// track is one device and its encoder.
type track struct {
	kind string
	drv  driver.Driver
	enc  codec.ReadCloser
	prop prop.Media
}

func (t *track) close() {
	if t.enc != nil {
		_ = t.enc.Close()
	}
	_ = t.drv.Close()
}

// Open opens the devices and encoders of cfg and starts capturing. Frames
// are dropped until SetSink is given a sink.
func Open(cfg Config) (*Capture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.CheckBuild(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Capture{cfg: cfg, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Video != None {
		t, err := c.openVideo()
		if err != nil {
			return nil, err
		}
		c.video = t
	}
	if cfg.Audio != None {
		t, err := c.openAudio()
		if err != nil {
			if c.video != nil {
				c.video.close()
			}
			return nil, err
		}
		c.audio = t
	}
	c.start = time.Now()
	c.forceKey.Store(true)
	if c.video != nil {
		c.wg.Add(1)
		go c.runVideo()
	}
	if c.audio != nil {
		c.wg.Add(1)
		go c.runAudio()
	}
	return c, nil
}

func (c *Capture) openVideo() (*track, error) {
	d, err := findDriver("video", c.cfg.Video)
	if err != nil {
		return nil, err
	}
	if err := d.Open(); err != nil {
		return nil, fmt.Errorf("open video device %q: %w", d.Info().Label, err)
	}
	t := &track{kind: "video", drv: d}
	fail := func(err error) (*track, error) {
		t.close()
		return nil, err
	}
	want := prop.MediaConstraints{VideoConstraints: prop.VideoConstraints{
		Width: prop.Int(c.cfg.Width), Height: prop.Int(c.cfg.Height), FrameRate: prop.Float(float32(c.cfg.FPS)),
	}}
	p, err := bestProp(d, want)
	if err != nil {
		return fail(err)
	}
	switch {
	case d.Info().Label == "VideoTest":
		// The test pattern renders at any size and rate.
		p.Width, p.Height, p.FrameRate = c.cfg.Width, c.cfg.Height, float32(c.cfg.FPS)
	case d.Info().DeviceType == driver.Screen:
		// Screens deliver their own size, at any rate.
		p.FrameRate = float32(c.cfg.FPS)
	}
	if p.FrameRate <= 0 {
		p.FrameRate = float32(c.cfg.FPS)
	}
	rec, ok := d.(driver.VideoRecorder)
	if !ok {
		return fail(fmt.Errorf("device %q is not a video device", d.Info().Label))
	}
	r, err := rec.VideoRecord(p)
	if err != nil {
		return fail(fmt.Errorf("start video device %q: %w", d.Info().Label, err))
	}
	keyint := 0
	if c.cfg.KeyframeInterval > 0 {
		keyint = max(1, int(c.cfg.KeyframeInterval.Seconds()*float64(p.FrameRate)+0.5))
	}
	encoder := H264Encoder
	if c.cfg.VideoCodec == VP9 {
		encoder = VP9Encoder
		t.enc, err = newVP9Encoder(r, p, c.cfg.VideoBitrate, keyint)
	} else {
		t.enc, err = newVideoEncoder(r, p, c.cfg.VideoBitrate, keyint)
	}
	if err != nil {
		return fail(fmt.Errorf("%s encoder: %w", encoder, err))
	}
	t.prop = p
	c.log.Info("video device opened", "device", d.Info().Label, "width", p.Width, "height", p.Height, "fps", p.FrameRate,
		"codec", c.cfg.VideoCodec, "encoder", encoder, "bitrate", c.cfg.VideoBitrate, "keyframe_interval", c.cfg.KeyframeInterval)
	return t, nil
}

func (c *Capture) openAudio() (*track, error) {
	d, err := findDriver("audio", c.cfg.Audio)
	if err != nil {
		return nil, err
	}
	if err := d.Open(); err != nil {
		return nil, fmt.Errorf("open audio device %q: %w", d.Info().Label, err)
	}
	t := &track{kind: "audio", drv: d}
	fail := func(err error) (*track, error) {
		t.close()
		return nil, err
	}
	want := prop.MediaConstraints{AudioConstraints: prop.AudioConstraints{
		SampleRate: prop.Int(48000), ChannelCount: prop.Int(2), Latency: prop.Duration(20 * time.Millisecond),
	}}
	p, err := bestProp(d, want)
	if err != nil {
		return fail(err)
	}
	if p.SampleRate == 0 {
		p.SampleRate = 48000
	}
	if p.ChannelCount == 0 {
		p.ChannelCount = 2
	}
	rec, ok := d.(driver.AudioRecorder)
	if !ok {
		return fail(fmt.Errorf("device %q is not an audio device", d.Info().Label))
	}
	r, err := rec.AudioRecord(p)
	if err != nil {
		return fail(fmt.Errorf("start audio device %q: %w", d.Info().Label, err))
	}
	t.enc, err = newAudioEncoder(r, p, c.cfg.AudioBitrate)
	if err != nil {
		return fail(fmt.Errorf("opus encoder: %w", err))
	}
	t.prop = p
	c.log.Info("audio device opened", "device", d.Info().Label, "sample_rate", p.SampleRate, "channels", p.ChannelCount,
		"encoder", "opus", "bitrate", c.cfg.AudioBitrate)
	return t, nil
}

// VideoSize returns the captured video size (0, 0 without video).
func (c *Capture) VideoSize() (int, int) {
	if c.video == nil {
		return 0, 0
	}
	return c.video.prop.Width, c.video.prop.Height
}

// VideoCodec returns the video codec, H264 or VP9.
func (c *Capture) VideoCodec() string { return c.cfg.VideoCodec }

// HasVideo and HasAudio report which tracks the capture has.
func (c *Capture) HasVideo() bool { return c.video != nil }

// HasAudio reports whether the capture has an audio track.
func (c *Capture) HasAudio() bool { return c.audio != nil }

// SetSink makes s receive the frames from now on; nil drops them.
func (c *Capture) SetSink(s Sink) {
	if s == nil {
		c.sink.Store(nil)
		return
	}
	c.sink.Store(&sinkBox{s})
}

// RequestKeyframe makes the next video frame a keyframe. It never blocks;
// requests before the next frame coalesce.
func (c *Capture) RequestKeyframe() {
	c.keyRequests.Add(1)
	c.forceKey.Store(true)
}

// Stats returns the capture's counters.
func (c *Capture) Stats() Stats {
	return Stats{
		VideoFrames:      c.videoFrames.Load(),
		Keyframes:        c.keyframes.Load(),
		KeyframeRequests: c.keyRequests.Load(),
		AudioPackets:     c.audioPackets.Load(),
	}
}

// Done is closed when a device stopped delivering (unplugged, failed); Err
// then tells why. It is not closed by Close.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Err returns why the capture ended by itself, or nil.
func (c *Capture) Err() error {
	if e := c.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (c *Capture) fail(err error) {
	c.err.CompareAndSwap(nil, &err)
	c.doneOnce.Do(func() { close(c.done) })
}

func (c *Capture) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// runVideo reads, encodes and delivers video frames. The device and encoder
// are closed here, after the last read returned: some drivers (videotest)
// block a read forever when closed under it.
func (c *Capture) runVideo() {
	defer c.wg.Done()
	t := c.video
	defer t.close()
	kfc, _ := t.enc.Controller().(codec.KeyFrameController)
	frameDur := time.Second / time.Duration(max(1, int(t.prop.FrameRate)))
	vp9 := c.cfg.VideoCodec == VP9
	var ids bitstream.H264IDNormalizer
	var last time.Duration = -1
	for !c.stopped() {
		asked := c.forceKey.Swap(false)
		if asked && kfc != nil {
			// Called here, on the goroutine that encodes, so the encoder's
			// state is never touched concurrently.
			_ = kfc.ForceKeyFrame()
		}
		data, release, err := t.enc.Read()
		if err != nil {
			if !c.stopped() {
				c.log.Error("video capture ended", "err", err)
				c.fail(fmt.Errorf("video: %w", err))
			}
			return
		}
		now := time.Since(c.start)
		if len(data) == 0 { // the encoder skipped this frame (rate control)
			release()
			if asked && vp9 {
				c.forceKey.Store(true) // libvpx forgets the request with the frame
			}
			continue
		}
		var f Frame
		if vp9 {
			// libvpx (lag 0) encodes each frame as it comes: the frame
			// asked to be a keyframe is one, or the request is repeated.
			f = Frame{Data: append([]byte(nil), data...), Time: now, Duration: frameDur, Keyframe: vp9Keyframe(data)}
			if asked && !f.Keyframe {
				c.forceKey.Store(true)
			}
		} else {
			au := ids.Normalize(data)
			if len(au) > 0 && &au[0] == &data[0] {
				au = append([]byte(nil), data...) // the encoder may reuse its buffer
			}
			f = Frame{Data: au, Time: now, Duration: frameDur, Keyframe: bitstream.H264IsKeyframe(au)}
		}
		release()
		// Timestamps on the nominal frame grid: a steady source gets exact
		// frame durations, a skipped frame a gap of whole frames (players
		// and muxers dislike jittery or colliding timestamps).
		q := (now + frameDur/2) / frameDur * frameDur
		if last >= 0 && q <= last {
			q = last + frameDur
		}
		f.Time = q
		if last >= 0 {
			f.Duration = q - last
		}
		last = q
		c.videoFrames.Add(1)
		if f.Keyframe {
			c.keyframes.Add(1)
		}
		if b := c.sink.Load(); b != nil {
			b.s.WriteVideo(f)
		}
	}
}

// runAudio reads, encodes and delivers 20 ms Opus packets.
func (c *Capture) runAudio() {
	defer c.wg.Done()
	t := c.audio
	defer t.close()
	const packet = 20 * time.Millisecond
	var n int64
	for !c.stopped() {
		data, release, err := t.enc.Read()
		if err != nil {
			if !c.stopped() {
				c.log.Error("audio capture ended", "err", err)
				c.fail(fmt.Errorf("audio: %w", err))
			}
			return
		}
		if len(data) == 0 {
			release()
			continue
		}
		f := Frame{Data: append([]byte(nil), data...), Time: time.Duration(n) * packet, Duration: packet}
		release()
		n++
		c.audioPackets.Add(1)
		if b := c.sink.Load(); b != nil {
			b.s.WriteAudio(f)
		}
	}
}

// Close stops capturing and closes the devices and encoders. It waits for
// the capture goroutines, which finish their current frame first.
func (c *Capture) Close() {
	c.closeOnce.Do(func() {
		c.SetSink(nil)
		close(c.stop)
		finished := make(chan struct{})
		go func() { c.wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(3 * time.Second):
			// A device read that never returns (a stalled camera): closing
			// the device under it makes it return.
			c.log.Warn("capture device did not stop; closing it under the reader")
			for _, t := range []*track{c.video, c.audio} {
				if t != nil {
					_ = t.drv.Close()
				}
			}
			<-finished
		}
	})
}

// vp9Keyframe reports whether a VP9 frame from the encoder is a keyframe.
func vp9Keyframe(f []byte) bool {
	key, _ := bitstream.VP9IsKeyframe(f)
	return key
}
