package linux

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// linkKind names a link the way the engine does: the rtnetlink kind ("veth",
// "ppp", "dummy", ...), "tun"/"tap" for tuntap, "loopback" for lo and
// "device" for physical NICs.
func linkKind(l netlink.Link) string {
	a := l.Attrs()
	switch t := l.(type) {
	case *netlink.Tuntap:
		if t.Mode == netlink.TUNTAP_MODE_TAP {
			return "tap"
		}
		return "tun"
	}
	if a.EncapType == "loopback" {
		return "loopback"
	}
	if a.EncapType == "ppp" && l.Type() == "device" {
		return "ppp"
	}
	return l.Type()
}

func toLink(l netlink.Link) engine.Link {
	a := l.Attrs()
	return engine.Link{
		Index:   a.Index,
		Name:    a.Name,
		Kind:    linkKind(l),
		MAC:     a.HardwareAddr,
		MTU:     a.MTU,
		Up:      a.RawFlags&unix.IFF_UP != 0,
		Running: a.RawFlags&unix.IFF_RUNNING != 0,
	}
}

// Links lists the namespace's interfaces.
//
// Equivalent to: `ip link show`
func (h *Host) Links() ([]engine.Link, error) {
	list, err := retryDump(h.handle.LinkList)
	if err != nil {
		return nil, fmt.Errorf("ip link show in netns %q: %w", h.name, err)
	}
	out := make([]engine.Link, 0, len(list))
	for _, l := range list {
		out = append(out, toLink(l))
	}
	return out, nil
}

func (h *Host) link(name string) (netlink.Link, error) {
	l, err := h.handle.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s in netns %q: %w", name, h.name, notExist(err))
	}
	return l, nil
}

// LinkByName returns one interface.
//
// Equivalent to: `ip link show dev $name`
func (h *Host) LinkByName(name string) (engine.Link, error) {
	l, err := h.link(name)
	if err != nil {
		return engine.Link{}, err
	}
	return toLink(l), nil
}

// SetLinkUp brings an interface up or down.
//
// Equivalent to: `ip link set $name up` (or `down`)
func (h *Host) SetLinkUp(name string, up bool) error {
	l, err := h.link(name)
	if err != nil {
		return err
	}
	if up {
		err = h.handle.LinkSetUp(l)
	} else {
		err = h.handle.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("ip link set %s %s in netns %q: %w", name, upDown(up), h.name, notExist(err))
	}
	return nil
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// WatchLinks reports every link change (RTM_NEWLINK/RTM_DELLINK) in the
// namespace until ctx ends; the channel is then closed. It is also closed if
// the subscription fails.
//
// Equivalent to: `ip monitor link`
func (h *Host) WatchLinks(ctx context.Context) (<-chan engine.Link, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	ns := h.ns
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &ns,
		// Errors end the subscription, which closes updates and so out.
		ErrorCallback: func(error) {},
	})
	if err != nil {
		return nil, fmt.Errorf("ip monitor link in netns %q: %w", h.name, err)
	}
	out := make(chan engine.Link, 16)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				close(done)
				// Drain so the subscriber goroutine can finish and close updates.
				for range updates {
				}
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				l := toLink(u.Link)
				if u.Header.Type == unix.RTM_DELLINK {
					l.Up, l.Running = false, false
				}
				select {
				case out <- l:
				case <-ctx.Done():
				}
			}
		}
	}()
	return out, nil
}
