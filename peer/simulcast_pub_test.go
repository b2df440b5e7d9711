package peer_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/remux"
)

// initWidths passes on the width of each init the session makes.
type initWidths chan int

func (c initWidths) WriteInit(in *remux.Init) {
	if len(in.Tracks) > 0 {
		select {
		case c <- in.Tracks[0].Width:
		default:
		}
	}
}
func (initWidths) WriteSegment(*remux.Segment) {}

// TestSimulcastLayerOfUnknownSize: a Pion publisher sends two simulcast
// layers. The 640x360 one ("q") starts with its keyframe; the 1280x720 one
// ("f") sends tiny slices and no SPS until it is asked for a keyframe, as a
// layer whose first keyframe was lost would. Carrying fewer bits than q and
// of unknown size, f is only told apart once the gateway asks it for a
// keyframe; then viewers move to it.
func TestSimulcastLayerOfUnknownSize(t *testing.T) {
	widths := make(initWidths, 8)
	url, sessions := serveWHIP(t, widths)
	small, err := mediafile.ReadH264(filepath.Join("..", "testdata", "media", "h264_640x360_30fps_2slices.h264"))
	if err != nil {
		t.Fatal(err)
	}
	large, err := mediafile.ReadH264(filepath.Join("..", "testdata", "media", "h264_1280x720_30fps_2500k.h264"))
	if err != nil {
		t.Fatal(err)
	}

	me := &webrtc.MediaEngine{}
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: h264, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	loop := func(ip net.IP) bool { return ip.IsLoopback() }
	se.SetIPFilter(loop)
	se.SetRemoteIPFilter(loop)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	q, err := webrtc.NewTrackLocalStaticRTP(h264, "video", "pub", webrtc.WithRTPStreamID("q"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := webrtc.NewTrackLocalStaticRTP(h264, "video", "pub", webrtc.WithRTPStreamID("f"))
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(q)
	if err != nil {
		t.Fatal(err)
	}
	if err := sender.AddEncoding(f); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	res, err := http.Post(url+"/whip/x", "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP %d: %s", res.StatusCode, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	sess := <-sessions
	defer sess.Close()

	var midID, ridID uint8
	for _, e := range sender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	mid := pc.GetTransceivers()[0].Mid()
	if midID == 0 || ridID == 0 || mid == "" {
		t.Fatalf("simulcast not negotiated: mid ext %d, rid ext %d, mid %q", midID, ridID, mid)
	}

	// Each layer's keyframe requests; a request to f makes it send its
	// keyframe (with the SPS) next.
	var pliQ, pliF atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); _ = pc.Close(); wg.Wait() }()
	for rid, n := range map[string]*atomic.Int64{"q": &pliQ, "f": &pliF} {
		wg.Go(func() {
			for {
				pkts, _, err := sender.ReadSimulcastRTCP(rid)
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						n.Add(1)
					}
				}
			}
		})
	}
	send := func(track *webrtc.TrackLocalStaticRTP, rid string, frame func(i int) []byte) {
		var seq uint16
		pay := &codecs.H264Payloader{}
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			payloads := pay.Payload(1200, frame(i))
			for k, p := range payloads {
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(i * 3000), Marker: k == len(payloads)-1}, Payload: p}
				seq++
				_ = pkt.Header.SetExtension(midID, []byte(mid))
				_ = pkt.Header.SetExtension(ridID, []byte(rid))
				if err := track.WriteRTP(pkt); err != nil {
					return
				}
			}
		}
	}
	wg.Go(func() { send(q, "q", func(i int) []byte { return small[i%len(small)].Data }) })
	select {
	case w := <-widths:
		if w != 640 {
			t.Fatalf("first init %d wide, want 640 (q)", w)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no init from q in 15 s")
	}
	// f starts once viewers are on q.
	wg.Go(func() {
		// A non-IDR slice of a few bytes until the first request, then
		// the 720p file from its keyframe, again at each request.
		var seen int64
		var at int
		send(f, "f", func(int) []byte {
			if n := pliF.Load(); n != seen {
				seen, at = n, 0
			}
			if seen == 0 {
				return []byte{0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x03, 0x04}
			}
			at++
			return large[(at-1)%len(large)].Data
		})
	})

	deadline := time.After(20 * time.Second)
	for {
		select {
		case w := <-widths:
			if w == 1280 {
				t.Logf("moved to f after %d keyframe request(s) to it (%d to q)", pliF.Load(), pliQ.Load())
				return
			}
		case <-deadline:
			t.Fatalf("still on q after 20 s: %d keyframe requests to f, %d to q", pliF.Load(), pliQ.Load())
		}
	}
}
