package main

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/trace"
)

// countingHost counts the link dumps a trace asks of a node.
type countingHost struct {
	engine.Host
	links atomic.Int32
}

func (h *countingHost) Links() ([]engine.Link, error) {
	h.links.Add(1)
	return h.Host.Links()
}

func TestWatchAddressesPollsOnceASecond(t *testing.T) {
	h := &countingHost{Host: fake.NewHost("n1", fake.NewNetwork(), "eth0")}
	nodes := []tracedNode{{name: "n1", host: h}}
	prev := []map[string]bool{hostAddresses(h)}
	h.links.Store(0)
	out := &traceOutput{w: io.Discard, ring: trace.NewRing(trace.RingConfig{})}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	watchAddresses(ctx, nodes, prev, out, func() {})
	if n := h.links.Load(); n > 2 {
		t.Fatalf("%d link dumps in 1.5 s; want one a second", n)
	}
}
