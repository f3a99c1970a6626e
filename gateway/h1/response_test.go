package h1

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestStatusLineConcurrent: connections write their status lines at the
// same time, with codes that have no reason phrase too. The table they
// read is built once at init; filled on first use instead, the race
// detector sees one connection write an entry another reads.
func TestStatusLineConcurrent(t *testing.T) {
	codes := []int{http.StatusOK, 299, 450, 599, 700}
	want := make([]string, len(codes))
	for i, code := range codes {
		text := http.StatusText(code)
		if text == "" {
			text = fmt.Sprint("status code ", code)
		}
		want[i] = fmt.Sprintf("HTTP/1.1 %d %s\r\n", code, text)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			for i, code := range codes {
				if got := statusLine(code); got != want[i] {
					t.Errorf("statusLine(%d) = %q, want %q", code, got, want[i])
				}
			}
		})
	}
	close(start)
	wg.Wait()
}

// TestStatusLineAllocs: a status line below 600 is the table's string.
func TestStatusLineAllocs(t *testing.T) {
	for _, code := range []int{100, http.StatusOK, 299, http.StatusBadGateway, 599} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { _ = statusLine(code) }); n != 0 {
				t.Errorf("%v allocations, want 0", n)
			}
		})
	}
}
