package gateway_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/mseway/mseway/"

// floors is the house of docs/ARCHITECTURE.md: every package of the module
// on its floor. A package imports only packages on lower floors, so data
// flows one way: publishers -> remux -> fan-out -> viewers. A new package
// gets its floor here (the test fails until it has one).
var floors = map[string]int{
	"cmd/gateway":      9,
	"cmd/loadtest":     9,
	"internal/gateway": 8,
	"signaling":        7,
	"sources":          6,
	"agent":            6,
	"peer":             5,
	"mseout":           4,
	"whip":             4,
	"relaywire":        4,
	"cluster":          5,
	"relay":            5,
	"record":           5,
	"remux":            3,
	"devices":          3,
	"web":              3,
	"auth":             3,
	"guard":            3,
	"webhooks":         2,
	"httpapi":          2,
	"bitstream":        1,
	"sdpfrag":          1,
	"contain":          1,
	"ratelog":          1,
	"configs":          1,
}

const testkit = "internal/testkit/"

// TestLayout checks every import of the module's production code against
// the floors, and that the test kits stay out of production code.
func TestLayout(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		isTest := strings.HasSuffix(path, "_test.go")
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		seen[pkg] = true
		from, placed := floors[pkg]
		if !placed && !strings.HasPrefix(pkg, testkit) {
			t.Errorf("%s: package %s has no floor in layout_test.go (and docs/ARCHITECTURE.md)", path, pkg)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			dst, ours := strings.CutPrefix(p, module)
			if !ours {
				continue
			}
			switch {
			case strings.HasPrefix(dst, testkit):
				if !isTest && pkg != "cmd/loadtest" && !strings.HasPrefix(pkg, testkit) {
					t.Errorf("%s: production code imports the test kit %s", path, dst)
				}
			case isTest || strings.HasPrefix(pkg, testkit):
				// Tests and test kits may use anything of production.
			case floors[dst] >= from:
				t.Errorf("%s: %s (floor %d) imports %s (floor %d): an arrow back up the house", path, pkg, from, dst, floors[dst])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range floors {
		if !seen[pkg] {
			t.Errorf("layout_test.go places %s, which no longer exists", pkg)
		}
	}
}
