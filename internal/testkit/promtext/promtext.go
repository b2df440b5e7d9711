// Package promtext renders Prometheus collectors as the text exposition
// format for tests: a collector is registered in a pedantic registry (which
// checks that what it collects matches what it describes) and gathered.
package promtext

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Text gathers cs and returns them in the text format, failing t on an
// inconsistent collector.
func Text(t testing.TB, cs ...prometheus.Collector) string {
	t.Helper()
	s, err := Format(cs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Format gathers cs in a pedantic registry and returns the text format.
func Format(cs ...prometheus.Collector) (string, error) {
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return "", err
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// Value returns the value of the sample named series (a name with its
// labels as the text format writes them, e.g. `x_total{reason="a"}`) in a
// text exposition, and whether it is there.
func Value(text, series string) (float64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}
