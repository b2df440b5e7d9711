package fmp4check

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// FileProbe is what ffprobe and ffmpeg say of an MP4 file.
type FileProbe struct {
	Duration      float64 // seconds (the container's)
	Video, Audio  bool
	Width, Height int
	VideoFrames   int     // frames decoded
	VideoDuration float64 // the video stream's duration, seconds
	AudioDuration float64
	// Errors is what ffmpeg printed at level error while decoding every
	// stream ("": none).
	Errors string
}

// Probe decodes the file at path with ffmpeg and describes it with ffprobe.
func Probe(path string) (FileProbe, error) {
	var p FileProbe
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"format=duration:stream=codec_type,width,height,duration,nb_read_frames", "-of", "json", path).Output()
	if err != nil {
		return p, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	var doc struct {
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
		Streams []struct {
			CodecType    string `json:"codec_type"`
			Width        int    `json:"width"`
			Height       int    `json:"height"`
			Duration     string `json:"duration"`
			NbReadFrames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return p, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	p.Duration, _ = strconv.ParseFloat(doc.Format.Duration, 64)
	for _, s := range doc.Streams {
		d, _ := strconv.ParseFloat(s.Duration, 64)
		switch s.CodecType {
		case "video":
			p.Video, p.Width, p.Height, p.VideoDuration = true, s.Width, s.Height, d
			p.VideoFrames, _ = strconv.Atoi(s.NbReadFrames)
		case "audio":
			p.Audio, p.AudioDuration = true, d
		}
	}
	dec, err := decodeAll(path)
	if err != nil && len(dec) == 0 {
		return p, fmt.Errorf("ffmpeg %s: %w", path, err)
	}
	p.Errors = strings.TrimSpace(string(dec))
	return p, nil
}
