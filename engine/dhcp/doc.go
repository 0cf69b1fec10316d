// Package dhcp is fieldcon's DHCPv4: a client (RFC 2131 state machine on a
// raw packet socket), a server (pools, reservations, leases persisted before
// the ACK) and a relay (RFC 3046 option 82), plus server-pushed re-addressing
// with FORCERENEW (RFC 3203) authenticated per RFC 6704. Messages go through
// the insomniacslk/dhcp dhcpv4 codec; the state machines are ours and
// sans-I/O, with thin runners doing I/O through engine.Host.
package dhcp

import _ "github.com/insomniacslk/dhcp/dhcpv4"
