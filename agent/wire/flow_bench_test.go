package wire

import (
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// unixStreamPair is streamPair over a real unix socket, with the channel's
// own buffers and coalescing, as between bothy and an agent.
func unixStreamPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "s")
	ln, err := net.Listen("unix", p)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	a, err := net.Dial("unix", p)
	if err != nil {
		tb.Fatal(err)
	}
	b := <-acc
	ca, _ := yamux.Client(ChannelConn(a), YamuxConfig())
	sb, _ := yamux.Server(ChannelConn(b), YamuxConfig())
	tb.Cleanup(func() { ca.Close(); sb.Close() })
	got := make(chan net.Conn, 1)
	go func() { st, _ := sb.Accept(); got <- st }()
	st, err := ca.OpenStream()
	if err != nil {
		tb.Fatal(err)
	}
	return st, <-got
}

func BenchmarkFlowDownload(b *testing.B) {
	for _, budget := range []int64{0, 256 << 10, 1 << 20, 4 << 20} {
		b.Run(byteSize(budget), func(b *testing.B) {
			var reserved atomic.Int64
			grow := func(n int64) (func(), bool) {
				if budget > 0 && reserved.Load()+n > budget {
					return nil, false
				}
				reserved.Add(n)
				return func() { reserved.Add(-n) }, true
			}
			a, s := unixStreamPair(b)
			fa, fs := NewFlow(a, grow), NewFlow(s, nil)
			const size = 64 << 20
			chunk := make([]byte, DataFrame)
			go func() {
				out := NewFrameSender(fs)
				for range b.N {
					for left := size; left > 0; left -= len(chunk) {
						out.Send(FrameStdout, chunk)
					}
				}
			}()
			b.SetBytes(size)
			b.ResetTimer()
			t0 := time.Now()
			for range b.N {
				for left := size; left > 0; left -= len(chunk) {
					_, n, err := ReadFrameHeader(fa)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := CopyFrame(io.Discard, fa, n); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(fa.windowSize()>>10), "window-KiB")
			_ = t0
		})
	}
}

func byteSize(n int64) string {
	if n == 0 {
		return "unbounded"
	}
	return strconv.FormatInt(n>>10, 10) + "KiB"
}
