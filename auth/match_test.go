package auth

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"lobby", "lobby", true},
		{"lobby", "lobby2", false},
		{"lobby", "Lobby", false},
		{"*", "", true},
		{"*", "anything.at_all-1", true},
		{"**", "x", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*b", "b", true},
		{"*b", "aab", true},
		{"*b", "ba", false},
		{"cam-*", "cam-1", true},
		{"cam-*", "cam-", true},
		{"cam-*", "lobby", false},
		{"cam-*", "xcam-1", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "abcb", false},
		{"a*b*c", "abcbc", true},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"*a*", "bab", true},
		{"*a*", "bbb", false},
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"*.main", "cam-1.main", true},
		{"?", "a", false}, // only * is special
		{"a.b", "axb", false},
	} {
		if got := Match(c.pattern, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// A pattern that makes naive backtracking exponential: it must still
// answer (this would not finish with a naive recursive matcher).
func TestMatchPathological(t *testing.T) {
	pattern := strings.Repeat("a*", 5000) + "b"
	name := strings.Repeat("a", 20000)
	if Match(pattern, name) {
		t.Error("matched without a b")
	}
	if !Match(pattern, name+"b") {
		t.Error("did not match with the b")
	}
	if Match(strings.Repeat("*a", 40)+"*b", strings.Repeat("a", 64)) {
		t.Error("matched without a b")
	}
}

// Match agrees with a simple (quadratic, memoized) reference on small
// inputs.
func TestMatchReference(t *testing.T) {
	alphabet := []string{"", "a", "b", "*"}
	var patterns []string
	var gen func(p string, n int)
	gen = func(p string, n int) {
		patterns = append(patterns, p)
		if n == 0 {
			return
		}
		for _, c := range alphabet[1:] {
			gen(p+c, n-1)
		}
	}
	gen("", 5)
	var names []string
	var genName func(s string, n int)
	genName = func(s string, n int) {
		names = append(names, s)
		if n == 0 {
			return
		}
		genName(s+"a", n-1)
		genName(s+"b", n-1)
	}
	genName("", 5)
	for _, p := range patterns {
		for _, n := range names {
			if got, want := Match(p, n), refMatch(p, n); got != want {
				t.Fatalf("Match(%q, %q) = %v, reference says %v", p, n, got, want)
			}
		}
	}
}

func refMatch(p, s string) bool {
	// dp[i][j]: p[i:] matches s[j:].
	dp := make([][]bool, len(p)+1)
	for i := range dp {
		dp[i] = make([]bool, len(s)+1)
	}
	dp[len(p)][len(s)] = true
	for i := len(p) - 1; i >= 0; i-- {
		for j := len(s); j >= 0; j-- {
			if p[i] == '*' {
				dp[i][j] = dp[i+1][j] || (j < len(s) && dp[i][j+1])
			} else {
				dp[i][j] = j < len(s) && p[i] == s[j] && dp[i+1][j+1]
			}
		}
	}
	return dp[0][0]
}
