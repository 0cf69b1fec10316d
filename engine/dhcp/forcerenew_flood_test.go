package dhcp

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine"
)

// TestForceRenewRejectionsRateLimited: a flood of forged FORCERENEWs gives
// a bounded number of dhcp.forcerenew.rejected events, and the ones held
// back are counted in a later event, so the flood's size still shows.
func TestForceRenewRejectionsRateLimited(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: []byte("\x00ESN-F"), NonceCapable: true})
	bound(t, exchange(t, s, c, now, c.Start(now)))
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(MessageTypeForceRenew))
	m.OpCode = dhcpv4.OpcodeBootReply
	forged, _ := SignForceRenew(m, 99, []byte("0123456789abcdef"))
	const flood = 300
	var events []Action
	collect := func(acts []Action) {
		for _, a := range acts {
			if a.Kind == ActEmit && a.Event == engine.KindForceRenewRejected {
				events = append(events, a)
			}
		}
	}
	for i := 0; i < flood; i++ {
		at := now.Add(time.Duration(i) * time.Millisecond) // 300 in 0.3 s
		collect(c.Receive(at, forged, Source{MAC: srvMAC, IP: srvAddr}))
		collect(c.Tick(at))
	}
	if len(events) > rejectEventsPerSecond {
		t.Errorf("%d rejection events for %d forgeries within a second, want at most %d", len(events), flood, rejectEventsPerSecond)
	}
	// The flood stops; the next ticks report what was held back.
	for ts := now.Add(300 * time.Millisecond); ts.Before(now.Add(3 * time.Second)); ts = ts.Add(200 * time.Millisecond) {
		collect(c.Tick(ts))
	}
	total := 0
	for _, e := range events {
		if _, one := e.Fields["from"]; one {
			total++ // a rejection; a summary has no sender
		}
		if n, ok := e.Fields["suppressed"].(int); ok {
			total += n
		}
	}
	if total != flood {
		t.Errorf("events report %d rejections (%d events), want all %d", total, len(events), flood)
	}
	if c.State() != StateBound {
		t.Errorf("state %s", c.State())
	}
}
