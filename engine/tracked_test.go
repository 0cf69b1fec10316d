package engine_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
)

func TestTrackedUndoesInReverse(t *testing.T) {
	h := fake.NewHost("n", nil, "eth0")
	h.SetNeighbor(engine.Neighbor{Dev: "eth0", IP: netip.MustParseAddr("192.0.2.1"), MAC: []byte{2, 0, 0, 0, 0, 1}, Permanent: true})
	h.SetSysctl("net/ipv4/ip_forward", "1")
	mark := len(h.Transcript())

	tr := engine.NewTracked(h, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.SetSysctl("net/ipv4/ip_forward", "1")) // unchanged: nothing to undo
	must(tr.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.2/24")}))
	must(tr.AddRoute(engine.Route{Dst: netip.MustParsePrefix("203.0.113.0/24"), Gateway: netip.MustParseAddr("192.0.2.1")}))
	must(tr.SetNeighbor(engine.Neighbor{Dev: "eth0", IP: netip.MustParseAddr("192.0.2.1"), MAC: []byte{2, 0, 0, 0, 0, 2}, Permanent: true}))
	must(tr.SetLinkUp("eth0", false))
	if got := len(tr.AddedAddresses()); got != 1 {
		t.Fatalf("AddedAddresses = %d, want 1", got)
	}
	must(tr.Undo())
	got := strings.Join(h.Transcript()[mark:], "\n")
	want := strings.Join([]string{
		"sysctl -w net.ipv4.ip_forward=1",
		"ip addr add 192.0.2.2/24 dev eth0",
		"ip route add 203.0.113.0/24 via 192.0.2.1",
		"ip neigh replace 192.0.2.1 lladdr 02:00:00:00:00:02 dev eth0 nud permanent",
		"ip link set eth0 down",
		// undo, newest first; the neighbour goes back to what it was
		"ip link set eth0 up",
		"ip neigh replace 192.0.2.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent",
		"ip route del 203.0.113.0/24 via 192.0.2.1",
		"ip addr del 192.0.2.2/24 dev eth0",
	}, "\n")
	if got != want {
		t.Fatalf("transcript:\n%s\nwant:\n%s", got, want)
	}
	if len(tr.AddedAddresses()) != 0 || len(tr.Pending()) != 0 {
		t.Fatal("state left after Undo")
	}
}

func TestTrackedUndoSkipsWhatIsAlreadyGone(t *testing.T) {
	h := fake.NewHost("n", nil, "eth0")
	tr := engine.NewTracked(h, nil)
	a := engine.Address{Prefix: netip.MustParsePrefix("192.0.2.2/24")}
	if err := tr.AddAddress("eth0", a); err != nil {
		t.Fatal(err)
	}
	if err := h.DelAddress("eth0", a); err != nil { // removed behind our back
		t.Fatal(err)
	}
	if err := tr.Undo(); err != nil {
		t.Fatalf("Undo of a vanished address: %v", err)
	}
}

// TestNestedTrackedKeepsSource: a mechanism's Tracked over its role's Tracked
// (arbitration) must let the outer one name the source when it undoes.
func TestNestedTrackedKeepsSource(t *testing.T) {
	h := fake.NewHost("n", nil, "eth0")
	bus := engine.NewBus(10)
	outer := engine.NewTracked(h, bus.NodeEmitter("n"))
	inner := engine.NewTracked(outer, nil)
	env := &engine.Env{Node: "n", Host: inner, Emit: bus.NodeEmitter("n")}
	if err := env.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.10/32")}, "rhcp"); err != nil {
		t.Fatal(err)
	}
	if err := outer.Undo(); err != nil {
		t.Fatal(err)
	}
	var src any
	for _, e := range bus.History() {
		if e.Kind == engine.KindAddressRemoved {
			src = e.Fields["source"]
		}
	}
	if src != "rhcp" {
		t.Fatalf("address.removed source = %v, want rhcp", src)
	}
}

func TestUndoNamesRouteSource(t *testing.T) {
	h := fake.NewHost("n", nil, "eth0")
	bus := engine.NewBus(10)
	env := &engine.Env{Node: "n", Host: engine.NewTracked(h, bus.NodeEmitter("n")), Emit: bus.NodeEmitter("n")}
	if err := env.AddRoute(engine.Route{Dst: netip.MustParsePrefix("198.51.100.0/24"), Dev: "eth0"}, "rhcp"); err != nil {
		t.Fatal(err)
	}
	if err := env.Host.Undo(); err != nil {
		t.Fatal(err)
	}
	h2 := bus.History()
	if last := h2[len(h2)-1]; last.Kind != engine.KindRouteRemoved || last.Fields["source"] != "rhcp" {
		t.Fatalf("last event %s %v, want route.removed with source rhcp", last.Kind, last.Fields)
	}
}

// TestReAddingDoesNotStackUndo: a route re-added every time a link comes
// back (or an address renewed) keeps one undo step, and Undo removes it once.
func TestReAddingDoesNotStackUndo(t *testing.T) {
	h := fake.NewHost("n", nil, "eth0")
	tr := engine.NewTracked(h, nil)
	r := engine.Route{Dst: netip.MustParsePrefix("203.0.113.10/32"), Gateway: netip.MustParseAddr("192.0.2.2"), Dev: "eth0", OnLink: true}
	a := engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Peer: netip.MustParsePrefix("192.0.2.2/32")}
	for i := 0; i < 5; i++ {
		if err := tr.AddAddress("eth0", a); err != nil {
			t.Fatal(err)
		}
		if err := tr.AddRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	if got := tr.Pending(); len(got) != 2 {
		t.Fatalf("pending undo steps after 5 re-adds: %v, want 2", got)
	}
	mark := len(h.Transcript())
	if err := tr.Undo(); err != nil {
		t.Fatal(err)
	}
	if got := h.Transcript()[mark:]; len(got) != 2 {
		t.Fatalf("undo ran %v, want one route and one address removal", got)
	}
	// After Undo the same changes are tracked afresh.
	if err := tr.AddRoute(r); err != nil {
		t.Fatal(err)
	}
	if got := tr.Pending(); len(got) != 1 {
		t.Fatalf("pending after Undo and a new add: %v", got)
	}
}
