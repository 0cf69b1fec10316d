package fake

import (
	"fmt"
	"strings"
	"sync"

	"github.com/fieldcon/fieldcon/engine"
)

// NAT is a fake host that also implements engine.NATHost: rules go to the
// host's transcript as nft commands, and the conntrack table is whatever the
// test sets with SetConntrack.
type NAT struct {
	*Host

	mu    sync.Mutex
	rules []string
	flows []engine.ConntrackFlow
}

var _ engine.NATHost = (*NAT)(nil)

// NewNAT wraps h.
func NewNAT(h *Host) *NAT { return &NAT{Host: h} }

func (n *NAT) record(s string) {
	n.Host.mu.Lock()
	n.Host.record("%s", s)
	n.Host.mu.Unlock()
}

func (n *NAT) addRules(rules []string, table string) func() error {
	n.mu.Lock()
	n.rules = append(n.rules, rules...)
	n.mu.Unlock()
	for _, r := range rules {
		n.record(r)
	}
	var once sync.Once
	return func() error {
		once.Do(func() {
			n.mu.Lock()
			keep := n.rules[:0]
			for _, r := range n.rules {
				if !strings.Contains(r, " "+table+" ") {
					keep = append(keep, r)
				}
			}
			n.rules = keep
			n.mu.Unlock()
			n.record("nft delete table ip " + table)
		})
		return nil
	}
}

// AddMasquerade implements engine.NATHost.
func (n *NAT) AddMasquerade(m engine.Masquerade) (func() error, error) {
	table := "fieldcon-" + m.Name
	action := "masquerade"
	if m.To.IsValid() {
		action = "snat to " + m.To.String()
	}
	if m.PortMin != 0 {
		action += fmt.Sprintf(":%d-%d", m.PortMin, m.PortMax)
	}
	rule := fmt.Sprintf("nft add rule ip %s postrouting ip saddr %s oifname %s %s", table, m.Source, m.OutIface, action)
	return n.addRules([]string{rule}, table), nil
}

// AddForwardFilter implements engine.NATHost.
func (n *NAT) AddForwardFilter(f engine.ForwardFilter) (func() error, error) {
	table := "fieldcon-" + f.Name
	rules := []string{fmt.Sprintf("nft add rule ip %s forward ct state established,related accept", table)}
	for _, p := range f.AllowUDP {
		rules = append(rules, fmt.Sprintf("nft add rule ip %s forward iifname %s oifname %s udp dport %d accept", table, f.InIface, f.OutIface, p))
	}
	rules = append(rules, fmt.Sprintf("nft add rule ip %s forward iifname %s oifname %s drop", table, f.InIface, f.OutIface))
	return n.addRules(rules, table), nil
}

// Rules lists the nft rules in place.
func (n *NAT) Rules() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.rules...)
}

// SetConntrack replaces the fake conntrack table.
func (n *NAT) SetConntrack(flows []engine.ConntrackFlow) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flows = append([]engine.ConntrackFlow(nil), flows...)
}

// Conntrack implements engine.NATHost.
func (n *NAT) Conntrack(f engine.ConntrackFilter) ([]engine.ConntrackFlow, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []engine.ConntrackFlow
	for _, fl := range n.flows {
		if f.Matches(fl) {
			out = append(out, fl)
		}
	}
	return out, nil
}

// DeleteConntrack implements engine.NATHost.
func (n *NAT) DeleteConntrack(f engine.ConntrackFilter) (int, error) {
	n.mu.Lock()
	keep := n.flows[:0]
	for _, fl := range n.flows {
		if !f.Matches(fl) {
			keep = append(keep, fl)
		}
	}
	gone := len(n.flows) - len(keep)
	n.flows = keep
	n.mu.Unlock()
	n.record(fmt.Sprintf("conntrack -D -s %s", f.Source))
	return gone, nil
}
