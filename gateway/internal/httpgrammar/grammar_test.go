package httpgrammar

import (
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want bool
	}{
		{"GET", true},
		{"X-Request-Id", true},
		{"!#$%&'*+-.^_`|~09azAZ", true},
		{"", false},
		{"a b", false},
		{"a:b", false},
		{"a/b", false},
		{"a\x00", false},
		{"ä", false},
		{`"q"`, false},
	} {
		if got := IsToken(tt.s); got != tt.want {
			t.Errorf("IsToken(%q) = %v; want %v", tt.s, got, tt.want)
		}
	}
	// tchar is exactly the 77 bytes RFC 9110 §5.6.2 lists.
	n := 0
	for c := 0; c < 256; c++ {
		if IsTokenChar(byte(c)) {
			n++
		}
	}
	if n != 26+26+10+15 {
		t.Fatalf("%d token characters; want 77", n)
	}
}

func TestFieldValues(t *testing.T) {
	for _, tt := range []struct {
		v           string
		valid, safe bool
	}{
		{"text/html; q=0.9", true, true},
		{"a\tb", true, true},
		{"obs-text \xe4", true, true},
		{"", true, true},
		{"a\x01b", false, true},
		{"a\x7fb", false, true},
		{"a\rb", false, false},
		{"a\nb", false, false},
		{"a\x00b", false, false},
	} {
		if got := ValidFieldValue(tt.v); got != tt.valid {
			t.Errorf("ValidFieldValue(%q) = %v; want %v", tt.v, got, tt.valid)
		}
		if got := SafeFieldValue(tt.v); got != tt.safe {
			t.Errorf("SafeFieldValue(%q) = %v; want %v", tt.v, got, tt.safe)
		}
	}
	if !VisibleASCII("/a?b=c%20") || VisibleASCII("/a b") || VisibleASCII("/\x7f") || VisibleASCII("/\xc3\xa4") {
		t.Error("VisibleASCII: want only 0x21-0x7E")
	}
}

func TestListHas(t *testing.T) {
	for _, tt := range []struct {
		vv   []string
		tok  string
		want bool
	}{
		{[]string{"close"}, "close", true},
		{[]string{"keep-alive, Upgrade"}, "upgrade", true},
		{[]string{"a", " \tb\t "}, "b", true},
		{[]string{",,trailers,"}, "trailers", true},
		{[]string{"closed"}, "close", false},
		{[]string{"x close"}, "close", false}, // one member, "x close"
		{[]string{"\u00a0close"}, "close", false},
		{nil, "close", false},
	} {
		if got := ListHas(tt.vv, tt.tok); got != tt.want {
			t.Errorf("ListHas(%q, %q) = %v; want %v", tt.vv, tt.tok, got, tt.want)
		}
	}
}

// Expect as RFC 9110 §10.1.1 reads it: one list over all its lines; 100
// Continue wanted when 100-continue is a member; anything else unmet.
func TestExpect(t *testing.T) {
	for _, tt := range []struct {
		vv               []string
		continues, unmet bool
	}{
		{nil, false, false},
		{[]string{""}, false, false},
		{[]string{"100-continue"}, true, false},
		{[]string{"100-Continue"}, true, false},
		{[]string{" 100-continue ,"}, true, false},
		{[]string{"100-continue,100-continue"}, true, false},
		{[]string{"", "100-continue"}, true, false},
		{[]string{"100-continue", "100-continue"}, true, false},
		{[]string{"magic"}, false, true},
		{[]string{"100-continue, magic"}, true, true},
		{[]string{"100-continue", "magic"}, true, true},
		{[]string{"magic", "100-continue"}, true, true},
		{[]string{"100-continue;a=b"}, false, true},
		{[]string{"x 100-continue"}, false, true},
		{[]string{","}, false, true},
		{[]string{"", ","}, false, true},
	} {
		name := strings.Join(tt.vv, "|")
		c, u := Expect(tt.vv)
		if c != tt.continues || u != tt.unmet {
			t.Errorf("Expect(%q) = continues %v, unmet %v; want %v, %v", name, c, u, tt.continues, tt.unmet)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	vv := []string{"keep-alive, Upgrade", "100-continue"}
	if n := testing.AllocsPerRun(100, func() {
		_ = ListHas(vv, "upgrade")
		_, _ = Expect(vv)
		_ = IsToken("X-Request-Id")
	}); n != 0 {
		t.Fatalf("%v allocations; want none", n)
	}
}
