package engine

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEventJSONIsFlat(t *testing.T) {
	e := Event{Time: time.Date(2026, 11, 21, 6, 0, 0, 5, time.UTC), Node: "device", Kind: KindAddressAdded,
		Fields: Fields{"iface": "eth0", "address": "203.0.113.10/32", "source": "rhcp"}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"address":"203.0.113.10/32","iface":"eth0","kind":"address.added","node":"device","source":"rhcp","time":"2026-11-21T06:00:00.000000005Z"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(e.Time) || back.Node != e.Node || back.Kind != e.Kind || back.Fields["iface"] != "eth0" {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestBusNeverBlocksAndCountsDrops(t *testing.T) {
	b := NewBus(3)
	slow := b.Subscribe(2, false)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10; i++ {
			b.Publish(Event{Kind: "x", Fields: Fields{"i": i}})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if got := slow.Dropped(); got != 8 {
		t.Fatalf("dropped = %d, want 8", got)
	}
	h := b.History()
	if len(h) != 3 || h[0].Fields["i"] != 7 || h[2].Fields["i"] != 9 {
		t.Fatalf("history = %+v, want the last three events in order", h)
	}
	late := b.Subscribe(10, true)
	for i := 7; i <= 9; i++ {
		if e := <-late.C; e.Fields["i"] != i {
			t.Fatalf("replay got %v, want %d", e.Fields["i"], i)
		}
	}
	b.Close()
	if _, ok := <-late.C; ok {
		t.Fatal("subscription not closed with the bus")
	}
}
