package client

import (
	"testing"
	"time"
)

func TestBackoff_DoublesWithJitterUpToTheCap(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	for n := range 70 {
		want := hi
		if n < 6 {
			want = lo << n // 100ms, 200ms, … 3.2s
		}
		for range 50 {
			d := backoff(lo, hi, n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
