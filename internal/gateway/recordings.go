package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
	"github.com/mseway/mseway/record"
)

// The recordings API (README "Recording"): the files of a stream, and a
// time range of them as fMP4, for whoever may view the stream.
func (g *Gateway) registerRecordings(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/recordings", g.listRecordings)
	mux.HandleFunc("OPTIONS /api/recordings", preflight(g.origins))
	mux.HandleFunc("GET /recordings/{stream}", g.serveRecording)
	mux.HandleFunc("OPTIONS /recordings/{stream}", preflight(g.origins))
}

// recordingJSON is one file of GET /api/recordings.
type recordingJSON struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Bytes     int64     `json:"bytes"`
	Recording bool      `json:"recording"` // being written
	File      string    `json:"file"`      // its name, for the operator
	URL       string    `json:"url"`       // GET: the file's media from its start
}

// maxListed bounds one answer of GET /api/recordings (the oldest first; ask
// again from the last one's end for more).
const maxListed = 1000

// recordingStream checks the stream parameter and the view right on it.
func (g *Gateway) recordingStream(w http.ResponseWriter, r *http.Request, stream string) bool {
	g.origins.SetCORS(w, r)
	w.Header().Set("Access-Control-Expose-Headers", "X-Recording-Start, X-Recording-End, X-Recording-Media-Start, Content-Range, Content-Length")
	if !configs.ValidStreamName(stream) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusBadRequest, fmt.Sprintf("stream: %q is not a stream name", stream)))
		return false
	}
	if err := g.access.view(r, stream); err != nil {
		httpapi.Fail(w, err)
		return false
	}
	return true
}

// parseTime reads a from/to parameter: RFC 3339 or Unix seconds ("" = zero).
func parseTime(q url.Values, key string) (time.Time, error) {
	v := q.Get(key)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e11 {
		return time.Unix(0, int64(f*1e9)), nil
	}
	return time.Time{}, httpapi.Errorf(http.StatusBadRequest, fmt.Sprintf("%s: %q is neither an RFC 3339 time nor Unix seconds", key, v))
}

func (g *Gateway) listRecordings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stream := q.Get("stream")
	if !g.recordingStream(w, r, stream) {
		return
	}
	from, err := parseTime(q, "from")
	if err == nil {
		var to time.Time
		if to, err = parseTime(q, "to"); err == nil {
			var files []record.File
			if files, err = g.recorder.List(stream, from, to); err == nil {
				out := make([]recordingJSON, 0, min(len(files), maxListed))
				for _, f := range files[:min(len(files), maxListed)] {
					out = append(out, recordingJSON{
						Start: f.Start, End: f.End, Bytes: f.Bytes, Recording: f.Recording, File: filepath.Base(f.Path),
						URL: "/recordings/" + stream + "?from=" + f.Start.UTC().Format(time.RFC3339Nano),
					})
				}
				httpapi.WriteJSON(w, http.StatusOK, out)
				return
			}
			g.log.Error("recordings: cannot list", "stream", stream, "err", err)
			err = httpapi.Errorf(http.StatusInternalServerError, "the recordings cannot be listed")
		}
	}
	httpapi.Fail(w, err)
}

// serveRecording answers GET /recordings/{stream}?from=&to=: the part of a
// recording file from the keyframe at or before from (with after=1: the
// first fragment at or after from, for a player that has what came before)
// to to (or the file's end), as fMP4 with range requests. X-Recording-Start and -End are the
// wall-clock times it covers, X-Recording-Media-Start the media time (s) at
// which it starts; the next part starts at -End.
func (g *Gateway) serveRecording(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	if !g.recordingStream(w, r, stream) {
		return
	}
	q := r.URL.Query()
	from, err := parseTime(q, "from")
	if err != nil {
		httpapi.Fail(w, err)
		return
	}
	if from.IsZero() {
		httpapi.Fail(w, httpapi.Errorf(http.StatusBadRequest, "from: required (RFC 3339 or Unix seconds)"))
		return
	}
	to, err := parseTime(q, "to")
	if err != nil {
		httpapi.Fail(w, err)
		return
	}
	if to.IsZero() {
		to = from.Add(24 * time.Hour) // to the file's end
	}
	if to.Before(from) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusBadRequest, "to: before from"))
		return
	}
	clipOf := g.recorder.Clip
	if q.Get("after") == "1" { // a player going on from the previous part's X-Recording-End
		clipOf = g.recorder.ClipAfter
	}
	clip, err := clipOf(stream, from, to)
	if errors.Is(err, record.ErrNoRecording) {
		httpapi.Fail(w, httpapi.Errorf(http.StatusNotFound, "no recording of "+stream+" at that time on this node"))
		return
	}
	if err != nil {
		g.log.Error("recordings: cannot read", "stream", stream, "err", err)
		httpapi.Fail(w, httpapi.Errorf(http.StatusInternalServerError, "the recording cannot be read"))
		return
	}
	defer clip.Close()
	h := w.Header()
	h.Set("Content-Type", "video/mp4")
	h.Set("Cache-Control", "private, no-cache")
	h.Set("X-Recording-Start", clip.Start.UTC().Format(time.RFC3339Nano))
	h.Set("X-Recording-End", clip.End.UTC().Format(time.RFC3339Nano))
	h.Set("X-Recording-Media-Start", strconv.FormatFloat(clip.MediaStart.Round(time.Microsecond).Seconds(), 'f', -1, 64))
	http.ServeContent(w, r, "", time.Time{}, clip)
}
