package linux

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// udpNetwork picks the socket family from the local address. An unset
// address means IPv4, like the fake driver: a dual-stack socket would report
// IPv4 peers as IPv4-mapped IPv6 addresses (::ffff:192.0.2.1), which compare
// unequal to the netip.Addr a role expects. IPv6 needs an IPv6 address, "::"
// for any.
func udpNetwork(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "udp6"
	}
	return "udp4"
}

func (opt udpControl) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		s := int(fd)
		if opt.Device != "" {
			if serr = unix.BindToDevice(s, opt.Device); serr != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", opt.Device, serr)
				return
			}
		}
		if opt.Broadcast {
			if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("SO_BROADCAST: %w", serr)
				return
			}
		}
		if opt.ReuseAddr {
			if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEPORT: %w", serr)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

type udpControl engine.UDPOptions

// ListenUDP opens a UDP socket inside the namespace, bound to laddr (an
// unset address binds every IPv4 address, "::" every IPv6 one; port 0 picks
// one). The result wraps a *net.UDPConn (its methods, deadlines, buffer
// sizes) and also implements engine.BatchUDPConn: recvmmsg/sendmmsg with
// UDP GSO and GRO (batch_udp.go).
//
// Equivalent to: `ip netns exec $ns socat UDP-RECVFROM:$port,bind=$addr[,so-bindtodevice=$dev][,broadcast][,reuseaddr] ...`
func (h *Host) ListenUDP(laddr netip.AddrPort, opt engine.UDPOptions) (engine.UDPConn, error) {
	lc := net.ListenConfig{Control: udpControl(opt).control}
	addr := ""
	if laddr.Addr().IsValid() {
		addr = laddr.Addr().Unmap().String()
	}
	addr = net.JoinHostPort(addr, fmt.Sprint(laddr.Port()))
	var pc net.PacketConn
	err := h.inNetns(func() error {
		var err error
		pc, err = lc.ListenPacket(context.Background(), udpNetwork(laddr.Addr()), addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s in netns %q: %w", addr, h.name, err)
	}
	uc := pc.(*net.UDPConn)
	if udpNetwork(laddr.Addr()) == "udp6" {
		return newUDPConn(uc, ipv6.NewPacketConn(uc)), nil
	}
	return newUDPConn(uc, ipv4.NewPacketConn(uc)), nil
}
