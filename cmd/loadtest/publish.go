package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/mseway/mseway/internal/mediafile"
)

// publisher is a WHIP publisher like internal/whipclient (H.264 + Opus from
// memory at real-time pace, looping, a PLI jumps to the next keyframe), but it
// stamps every video frame with its send time (stamp.go) just before handing
// it to Pion, which whipclient has no hook for.
type publisher struct {
	pc       *webrtc.PeerConnection
	udp      *net.UDPConn
	location string
	client   *http.Client
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once

	video     []mediafile.AccessUnit
	audio     [][]byte
	fps       int
	jumpToKey atomic.Bool
	plis      atomic.Int64
	frames    atomic.Int64
	late      atomic.Int64 // ticks the sender missed (machine too busy)
}

func publish(ctx context.Context, whipURL string, video []mediafile.AccessUnit, audio [][]byte, fps int, loopback bool) (*publisher, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	// Sender reports only (the gateway syncs audio and video with them). No
	// NACK responder, TWCC or stats: loopback loses nothing, and with many
	// streams the publishers must stay cheap next to the gateway they load.
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	bind := net.IPv4zero
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
		loop := func(ip net.IP) bool { return ip.IsLoopback() }
		se.SetIPFilter(loop)
		se.SetRemoteIPFilter(loop)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		bind = net.IPv4(127, 0, 0, 1)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: bind})
	if err != nil {
		return nil, err
	}
	se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, udp))
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		udp.Close()
		return nil, err
	}
	p := &publisher{pc: pc, udp: udp, client: &http.Client{Timeout: 15 * time.Second}, video: video, audio: audio, fps: fps}
	fail := func(err error) (*publisher, error) {
		_ = pc.Close()
		udp.Close()
		return nil, err
	}
	vt, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}, "video", "loadtest")
	if err != nil {
		return fail(err)
	}
	tr, err := pc.AddTransceiverFromTrack(vt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fail(err)
	}
	var at *webrtc.TrackLocalStaticSample
	if len(audio) > 0 {
		at, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "loadtest")
		if err != nil {
			return fail(err)
		}
		if _, err := pc.AddTransceiverFromTrack(at, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			return fail(err)
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			pkts, _, err := tr.Sender().ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				switch pkt.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.plis.Add(1)
					p.jumpToKey.Store(true)
				}
			}
		}
	}()
	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			connOnce.Do(func() { close(connected) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	answer, err := p.post(ctx, whipURL, pc.LocalDescription().SDP)
	if err != nil {
		return fail(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		p.delete()
		return fail(fmt.Errorf("bad WHIP answer: %w", err))
	}
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case <-connected:
	case <-t.C:
		p.delete()
		return fail(errors.New("publisher: WebRTC connection not established"))
	case <-ctx.Done():
		p.delete()
		return fail(ctx.Err())
	}
	sendCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.sendVideo(sendCtx, vt)
	}()
	if at != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sendAudio(sendCtx, at)
		}()
	}
	return p, nil
}

func (p *publisher) post(ctx context.Context, whipURL, offer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, whipURL, strings.NewReader(offer))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("WHIP POST %s: %d %s", whipURL, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return "", errors.New("WHIP POST: 201 without a Location")
	}
	base, _ := url.Parse(whipURL)
	p.location = base.ResolveReference(loc).String()
	return string(body), nil
}

func (p *publisher) delete() {
	if p.location == "" {
		return
	}
	req, err := http.NewRequest(http.MethodDelete, p.location, nil)
	if err != nil {
		return
	}
	if resp, err := p.client.Do(req); err == nil {
		resp.Body.Close()
	}
}

// sendVideo sends one frame per tick; each frame's stamp is taken right
// before Pion packetizes and sends it.
func (p *publisher) sendVideo(ctx context.Context, track *webrtc.TrackLocalStaticSample) {
	interval := time.Second / time.Duration(p.fps)
	start := time.Now()
	aus := p.video
	i := 0
	for n := int64(1); ; n++ {
		if p.jumpToKey.Swap(false) && !aus[i].Keyframe {
			for j := 1; j < len(aus); j++ {
				if k := (i + j) % len(aus); aus[k].Keyframe {
					i = k
					break
				}
			}
		}
		data := stampFrame(aus[i].Data, time.Now())
		if err := track.WriteSample(media.Sample{Data: data, Duration: interval}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return
		}
		p.frames.Add(1)
		i = (i + 1) % len(aus)
		// Absolute schedule: media time and wall time stay together.
		next := start.Add(time.Duration(n) * interval)
		d := time.Until(next)
		if d < -interval {
			p.late.Add(1)
		}
		t := time.NewTimer(max(d, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (p *publisher) sendAudio(ctx context.Context, track *webrtc.TrackLocalStaticSample) {
	const interval = 20 * time.Millisecond
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(p.audio) {
		if err := track.WriteSample(media.Sample{Data: p.audio[i], Duration: interval}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *publisher) Close() {
	p.once.Do(func() {
		if p.cancel != nil {
			p.cancel()
		}
		p.delete()
		_ = p.pc.Close()
		p.udp.Close()
		p.wg.Wait()
	})
}
