package profiles

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Prefix is an address with its prefix length in CIDR notation
// ("192.0.2.10/24"). The host bits are kept: it names an interface address.
type Prefix struct{ netip.Prefix }

// UnmarshalText parses CIDR notation.
func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := netip.ParsePrefix(string(b))
	if err != nil {
		return fmt.Errorf("%q is not an address in CIDR notation; want e.g. \"192.0.2.10/24\" or \"2001:db8::1/64\"", string(b))
	}
	p.Prefix = v
	return nil
}

// MarshalText writes CIDR notation.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.Prefix.String()), nil }

// Addr is an IP address without prefix length.
type Addr struct{ netip.Addr }

// UnmarshalText parses an IPv4 or IPv6 address.
func (a *Addr) UnmarshalText(b []byte) error {
	v, err := netip.ParseAddr(string(b))
	if err != nil {
		return fmt.Errorf("%q is not an IP address; want e.g. \"192.0.2.1\" or \"2001:db8::1\"", string(b))
	}
	a.Addr = v
	return nil
}

// MarshalText writes the address.
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.Addr.String()), nil }

// Duration is a Go duration string ("30s", "1m30s", "250ms").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration; negative durations are rejected.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration; want e.g. \"30s\", \"1m\" or \"250ms\"", string(b))
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative; want zero or more", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Or returns d, or def when d is unset.
func (d Duration) Or(def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}

// Endpoint names an interface of a node: "router:eth1".
type Endpoint struct {
	Node  string
	Iface string
}

// UnmarshalText parses node:iface.
func (e *Endpoint) UnmarshalText(b []byte) error {
	node, iface, ok := strings.Cut(string(b), ":")
	if !ok || node == "" || iface == "" {
		return fmt.Errorf("%q is not a link end; want \"node:interface\", e.g. \"router:eth1\"", string(b))
	}
	if len(iface) > 15 {
		return fmt.Errorf("interface name %q is longer than 15 characters (the kernel's limit)", iface)
	}
	e.Node, e.Iface = node, iface
	return nil
}

// MarshalText writes node:iface.
func (e Endpoint) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

func (e Endpoint) String() string { return e.Node + ":" + e.Iface }
