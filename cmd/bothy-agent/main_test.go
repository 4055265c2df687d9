package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestGateways(t *testing.T) {
	file := filepath.Join(t.TempDir(), "route")
	table := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t0100FA0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t0000FA0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
	if err := os.WriteFile(file, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := gateways(file)
	if err != nil || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.250.0.1")}) {
		t.Fatalf("gateways = %v, %v", got, err)
	}
	if _, err := gateways(file + ".missing"); err == nil {
		t.Fatal("a missing routing table gave no error")
	}
}

// TestKEPReady: the KEP pod's readiness probe succeeds only when both
// services accept connections.
func TestKEPReady(t *testing.T) {
	listen := func() net.Listener {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	rest, grpc := listen(), listen()
	args := []string{"--rest", rest.Addr().String(), "--grpc", grpc.Addr().String()}
	if code := kepReady(args); code != 0 {
		t.Fatalf("both listening: exit %d", code)
	}
	grpc.Close()
	if code := kepReady(args); code != 1 {
		t.Fatalf("the process service not listening: exit %d, want 1", code)
	}
}
