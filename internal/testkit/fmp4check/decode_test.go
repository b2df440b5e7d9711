package fmp4check

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDecodeVariableFrameRate: a fragmented MP4 whose frame 11 comes 0.01 ms
// after frame 10's slot (a browser's capture clock under load) decodes
// without an error line, every frame counted; the same file cut short does
// report errors.
func TestDecodeVariableFrameRate(t *testing.T) {
	RequireFFmpeg(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "vfr.mp4")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi",
		"-i", "testsrc=size=160x120:rate=30", "-t", "2",
		"-vf", "setpts='if(eq(N,11),(N-0.8)/30/TB,N/30/TB)'", "-fps_mode", "passthrough",
		"-c:v", "libx264", "-bf", "0", "-video_track_timescale", "90000",
		"-movflags", "frag_keyframe+empty_moov+default_base_moof", path).CombinedOutput()
	if err != nil {
		t.Fatalf("making the file: %v\n%s", err, out)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	errs, frames, err := Decode(dir, file, nil)
	if err != nil || errs != "" {
		t.Fatalf("variable frame rate: %v %q", err, errs)
	}
	if frames != 60 {
		t.Fatalf("%d frames decoded, want 60", frames)
	}
	p, err := Probe(path)
	if err != nil || p.Errors != "" {
		t.Fatalf("probe: %v %q", err, p.Errors)
	}
	errs, _, err = Decode(dir, file[:len(file)*2/3], nil)
	if err != nil || errs == "" {
		t.Fatalf("a file cut short decoded without errors (%v)", err)
	}
}
