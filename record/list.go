package record

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File is one recording file.
type File struct {
	Stream string
	Path   string
	// Start is the wall-clock time of its first fragment (from its name),
	// End the time of its last write.
	Start, End time.Time
	Bytes      int64
	// Recording: the file is being written.
	Recording bool
}

// openFiles returns the files being written.
func (r *Recorder) openFiles() map[string]bool {
	open := map[string]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		s.mu.Lock()
		if s.current != "" {
			open[s.current] = true
		}
		s.mu.Unlock()
	}
	return open
}

// listTTL: a stream's files are read from the directory at most this
// often for List (every watch page asks for them; thousands of viewers
// must not mean thousands of directory reads a second).
const (
	listTTL       = 2 * time.Second
	maxListCached = 1024 // streams
)

type cachedList struct {
	at    time.Time
	files []File
}

// List returns the files of stream ("": every stream) that overlap
// [from, to] (a zero bound is open), oldest first.
func (r *Recorder) List(stream string, from, to time.Time) ([]File, error) {
	if stream == "" { // retention: always fresh
		return r.list("", from, to)
	}
	now := time.Now()
	r.listMu.Lock()
	c, ok := r.listCache[stream]
	r.listMu.Unlock()
	if !ok || now.Sub(c.at) > listTTL {
		all, err := r.list(stream, time.Time{}, time.Time{})
		if err != nil {
			return nil, err
		}
		c = cachedList{at: now, files: all}
		r.listMu.Lock()
		if len(r.listCache) >= maxListCached {
			clear(r.listCache)
		}
		r.listCache[stream] = c
		r.listMu.Unlock()
	}
	var out []File
	for _, f := range c.files {
		if (!from.IsZero() && f.End.Before(from)) || (!to.IsZero() && f.Start.After(to)) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// forget drops the cached listing of stream (a file of it was opened,
// closed or deleted).
func (r *Recorder) forget(stream string) {
	r.listMu.Lock()
	delete(r.listCache, stream)
	r.listMu.Unlock()
}

func (r *Recorder) list(stream string, from, to time.Time) ([]File, error) {
	paths, err := filepath.Glob(r.pat.glob(stream))
	if err != nil {
		return nil, err
	}
	open := r.openFiles()
	var out []File
	for _, p := range paths {
		name, start, err := r.pat.parse(p)
		if err != nil || (stream != "" && name != stream) {
			continue
		}
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f := File{Stream: name, Path: p, Start: start, End: fi.ModTime(), Bytes: fi.Size(), Recording: open[p]}
		if f.End.Before(f.Start) {
			f.End = f.Start
		}
		if (!from.IsZero() && f.End.Before(from)) || (!to.IsZero() && f.Start.After(to)) {
			continue
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return compareStrings(a.Stream, b.Stream)
	})
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// retentionLoop deletes by age and size every CheckInterval.
func (r *Recorder) retentionLoop() {
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	for {
		r.enforceRetention(r.cfg.Now())
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

const (
	deletedByAge = iota
	deletedBySize
)

// enforceRetention deletes the files that ended more than MaxAge before
// now, then the oldest while all take more than MaxBytes. A file being
// written is never deleted.
func (r *Recorder) enforceRetention(now time.Time) {
	files, err := r.List("", time.Time{}, time.Time{})
	if err != nil {
		r.log.Warn("recording retention: cannot list the files", "err", err)
		return
	}
	var total int64
	for _, f := range files {
		total += f.Bytes
	}
	remove := func(f File, why int, reason string) bool {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("recording retention: cannot delete", "path", f.Path, "err", err)
			return false
		}
		r.m.deleted[why].Add(1)
		r.forget(f.Stream)
		total -= f.Bytes
		r.log.Info("recording deleted", "path", f.Path, "why", reason, "bytes", f.Bytes)
		removeEmptyDirs(filepath.Dir(f.Path), r.pat.root())
		return true
	}
	kept := files[:0]
	for _, f := range files {
		if !f.Recording && r.cfg.MaxAge > 0 && now.Sub(f.End) > r.cfg.MaxAge && remove(f, deletedByAge, "max_age") {
			continue
		}
		kept = append(kept, f)
	}
	for _, f := range kept { // oldest first
		if r.cfg.MaxBytes <= 0 || total <= r.cfg.MaxBytes {
			break
		}
		if !f.Recording {
			remove(f, deletedBySize, "max_bytes")
		}
	}
}

// removeEmptyDirs removes dir and its parents while they are empty, up to
// (not including) root.
func removeEmptyDirs(dir, root string) {
	for dir != root && dir != "." && dir != "/" && len(dir) > len(root) {
		if os.Remove(dir) != nil { // fails when not empty
			return
		}
		dir = filepath.Dir(dir)
	}
}
