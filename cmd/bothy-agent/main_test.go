package main

import (
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
