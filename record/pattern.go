package record

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is the default file pattern.
const DefaultPath = "recordings/%stream/%Y-%m-%d_%H-%M-%S-%f.mp4"

// pattern is a file name pattern: %stream is the stream's name, %Y %m %d
// %H %M %S %f the start of the file (UTC; %f microseconds). Every verb is
// required, so that names are unique per stream and sort by time.
type pattern struct {
	text string
	re   *regexp.Regexp // one group per verb, named
}

var verbs = []struct {
	verb, group, re string
}{
	{"%stream", "stream", `[A-Za-z0-9._-]{1,64}`},
	{"%Y", "Y", `\d{4}`}, {"%m", "m", `\d{2}`}, {"%d", "d", `\d{2}`},
	{"%H", "H", `\d{2}`}, {"%M", "M", `\d{2}`}, {"%S", "S", `\d{2}`}, {"%f", "f", `\d{6}`},
}

func parsePattern(text string) (pattern, error) {
	if text == "" {
		text = DefaultPath
	}
	clean := filepath.Clean(text)
	if clean != text && clean+"/" != text {
		text = clean
	}
	if strings.HasSuffix(text, "/") {
		return pattern{}, fmt.Errorf("record.path %q names a directory: it is a file pattern such as %s", text, DefaultPath)
	}
	for _, v := range verbs {
		n := strings.Count(text, v.verb)
		if v.verb == "%stream" && n == 0 {
			return pattern{}, fmt.Errorf("record.path %q has no %%stream", text)
		}
		if v.verb != "%stream" && n != 1 {
			return pattern{}, fmt.Errorf("record.path %q must hold %s exactly once (every time verb %%Y %%m %%d %%H %%M %%S %%f is needed for unique names)", text, v.verb)
		}
	}
	// The regular expression: literal parts quoted, verbs as groups; the
	// stream's name appears as a group once, later uses must match it.
	var re strings.Builder
	re.WriteString("^")
	rest := text
	seenStream := false
	for rest != "" {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			re.WriteString(regexp.QuoteMeta(rest))
			break
		}
		re.WriteString(regexp.QuoteMeta(rest[:i]))
		rest = rest[i:]
		matched := false
		for _, v := range verbs {
			if strings.HasPrefix(rest, v.verb) {
				if v.group == "stream" && seenStream {
					re.WriteString(`[A-Za-z0-9._-]{1,64}`)
				} else {
					re.WriteString("(?P<" + v.group + ">" + v.re + ")")
				}
				seenStream = seenStream || v.group == "stream"
				rest = rest[len(v.verb):]
				matched = true
				break
			}
		}
		if !matched {
			return pattern{}, fmt.Errorf("record.path %q: unknown verb at %q (known: %%stream %%Y %%m %%d %%H %%M %%S %%f)", text, rest[:min(len(rest), 8)])
		}
	}
	re.WriteString("$")
	return pattern{text: text, re: regexp.MustCompile(re.String())}, nil
}

// name is the file of stream starting at t.
func (p pattern) name(stream string, t time.Time) string {
	t = t.UTC()
	r := strings.NewReplacer("%stream", stream,
		"%Y", fmt.Sprintf("%04d", t.Year()), "%m", fmt.Sprintf("%02d", int(t.Month())), "%d", fmt.Sprintf("%02d", t.Day()),
		"%H", fmt.Sprintf("%02d", t.Hour()), "%M", fmt.Sprintf("%02d", t.Minute()), "%S", fmt.Sprintf("%02d", t.Second()),
		"%f", fmt.Sprintf("%06d", t.Nanosecond()/1000))
	return r.Replace(p.text)
}

// glob matches the files of stream ("": every stream).
func (p pattern) glob(stream string) string {
	var b strings.Builder
	rest := p.text
	for rest != "" {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			b.WriteString(globQuote(rest))
			break
		}
		b.WriteString(globQuote(rest[:i]))
		rest = rest[i:]
		for _, v := range verbs {
			if strings.HasPrefix(rest, v.verb) {
				if v.group == "stream" && stream != "" {
					b.WriteString(stream) // names are [A-Za-z0-9._-]: nothing to quote
				} else {
					b.WriteString("*")
				}
				rest = rest[len(v.verb):]
				break
			}
		}
	}
	return b.String()
}

func globQuote(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

var errNotOurs = errors.New("not a recording's name")

// parse returns the stream and start time of a file's name.
func (p pattern) parse(path string) (string, time.Time, error) {
	m := p.re.FindStringSubmatch(path)
	if m == nil {
		return "", time.Time{}, errNotOurs
	}
	num := func(g string) int {
		n, _ := strconv.Atoi(m[p.re.SubexpIndex(g)])
		return n
	}
	t := time.Date(num("Y"), time.Month(num("m")), num("d"), num("H"), num("M"), num("S"), num("f")*1000, time.UTC)
	if t.Month() != time.Month(num("m")) || t.Day() != num("d") || t.Hour() != num("H") || t.Minute() != num("M") || t.Second() != num("S") {
		return "", time.Time{}, errNotOurs // no such date
	}
	return m[p.re.SubexpIndex("stream")], t, nil
}

// root is the directory above the first verb: the one retention never
// removes.
func (p pattern) root() string {
	i := strings.IndexByte(p.text, '%')
	return filepath.Dir(p.text[:i] + "x")
}

// CheckPath reports whether a record.path pattern is usable.
func CheckPath(path string) error {
	_, err := parsePattern(path)
	return err
}
