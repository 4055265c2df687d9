package server

import (
	"bytes"
	"math/rand"
	"testing"
)

func TestRingKeepsTheLastBytes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, size := range []int{1, 7, 64} {
		r := newRing(size)
		var all []byte
		for i := 0; i < 200; i++ {
			p := make([]byte, rng.Intn(size*2+1))
			rng.Read(p)
			r.Write(p)
			all = append(all, p...)
			want := all
			if len(want) > size {
				want = want[len(want)-size:]
			}
			if got := r.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("size %d, step %d: got %v, want %v", size, i, got, want)
			}
		}
	}
}
