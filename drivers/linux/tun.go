package linux

import (
	"fmt"
	"io"
	"sync"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fieldcon/fieldcon/engine"
)

// tunDevice adapts wireguard-go's batched, offload-aware tun.Device to
// engine.TUN's one packet per Read and Write.
type tunDevice struct {
	dev  tun.Device
	name string

	rmu   sync.Mutex
	batch int // the most packets one read of the device yields
	// bufs is a batch as wide as the device may return, for Read alone:
	// allocated at the first Read (batch×64 KiB, some 8 MiB), since users
	// of ReadBatch bring their own buffers and never need it.
	bufs    [][]byte
	sizes   []int
	pending [][]byte // packets of the last batch not yet returned

	wmu  sync.Mutex
	wbuf []byte
}

// writeHeadroom is room in front of a written packet for the virtio-net
// header wireguard-go prepends when the device uses offloads (IFF_VNET_HDR);
// 16 covers its 10 bytes with alignment to spare.
const writeHeadroom = engine.TUNHeadroom

// maxPacket is the largest IP packet (and so the largest GSO segment or
// coalesced read).
const maxPacket = 65535

// CreateTUN creates a TUN device in the namespace; closing it removes the
// device.
//
// Equivalent to: `ip tuntap add dev $name mode tun && ip link set $name mtu $mtu`
func (h *Host) CreateTUN(name string, mtu int) (engine.TUN, error) {
	if mtu <= 0 {
		mtu = 1500
	}
	var dev tun.Device
	// The device, and the netlink socket wireguard-go opens to watch it,
	// belong to the namespace of the creating thread.
	err := h.inNetns(func() error {
		var err error
		dev, err = tun.CreateTUN(name, mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ip tuntap add dev %s mode tun in netns %q: %w", name, h.name, err)
	}
	got, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun %s: name: %w", name, err)
	}
	// wireguard-go reports up/down events on a small buffered channel and
	// blocks when nobody reads it; nothing here needs them (WatchLinks does).
	go func() {
		for range dev.Events() {
		}
	}()
	batch := max(dev.BatchSize(), 1)
	return &tunDevice{dev: dev, name: got, batch: batch, wbuf: make([]byte, writeHeadroom+maxPacket)}, nil
}

func (t *tunDevice) Name() string { return t.name }

// Read returns one IP packet. A read from the device may yield several
// (a GSO super-packet split into segments); the rest wait for later Reads.
func (t *tunDevice) Read(b []byte) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if t.bufs == nil {
		t.bufs, t.sizes = make([][]byte, t.batch), make([]int, t.batch)
		for i := range t.bufs {
			t.bufs[i] = make([]byte, maxPacket)
		}
	}
	for len(t.pending) == 0 {
		n, err := t.dev.Read(t.bufs, t.sizes, 0)
		if err != nil {
			return 0, fmt.Errorf("read tun %s: %w", t.name, err)
		}
		for i := range n {
			t.pending = append(t.pending, t.bufs[i][:t.sizes[i]])
		}
	}
	p := t.pending[0]
	t.pending = t.pending[1:]
	if len(p) > len(b) {
		return copy(b, p), fmt.Errorf("read tun %s: %d-byte packet truncated to %d: %w", t.name, len(p), len(b), io.ErrShortBuffer)
	}
	return copy(b, p), nil
}

// Write sends one IP packet into the kernel.
func (t *tunDevice) Write(b []byte) (int, error) {
	if len(b) > maxPacket {
		return 0, fmt.Errorf("write tun %s: %d-byte packet is larger than an IP packet can be", t.name, len(b))
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	n := copy(t.wbuf[writeHeadroom:], b)
	if _, err := t.dev.Write([][]byte{t.wbuf[:writeHeadroom+n]}, writeHeadroom); err != nil {
		return 0, fmt.Errorf("write tun %s: %w", t.name, err)
	}
	return n, nil
}

// BatchSize implements engine.BatchTUN: the most packets one read yields
// (wireguard-go's, 128 on Linux: a 64 KiB GSO super-packet split at the MTU).
func (t *tunDevice) BatchSize() int { return t.batch }

// ReadBatch implements engine.BatchTUN: one read(2) of the device, split
// into its segments when the kernel handed over a GSO super-packet
// (IFF_VNET_HDR with TSO/USO offloads, which wireguard-go turns on).
func (t *tunDevice) ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if len(t.pending) > 0 {
		// Packets of a batch Read split up: hand them over first, in order.
		n := 0
		for n < len(bufs) && len(t.pending) > 0 {
			p := t.pending[0]
			if len(p) > len(bufs[n])-offset {
				return n, fmt.Errorf("read tun %s: %d-byte packet does not fit: %w", t.name, len(p), io.ErrShortBuffer)
			}
			sizes[n] = copy(bufs[n][offset:], p)
			t.pending = t.pending[1:]
			n++
		}
		return n, nil
	}
	n, err := t.dev.Read(bufs, sizes, offset)
	if err != nil {
		return n, fmt.Errorf("read tun %s: %w", t.name, err)
	}
	return n, nil
}

// WriteBatch implements engine.BatchTUN. wireguard-go coalesces segments of
// one TCP or UDP flow into a super-packet (GRO) and writes it with its
// virtio-net header in the headroom: one write(2) for many packets.
func (t *tunDevice) WriteBatch(bufs [][]byte, offset int) (int, error) {
	if offset < writeHeadroom {
		return 0, fmt.Errorf("write tun %s: %d bytes of headroom, need %d", t.name, offset, writeHeadroom)
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if _, err := t.dev.Write(bufs, offset); err != nil {
		return 0, fmt.Errorf("write tun %s: %w", t.name, err)
	}
	return len(bufs), nil
}

// Close closes the device's file descriptor, and the kernel removes a
// non-persistent TUN device with it.
//
// Equivalent to: `ip link del $name`
func (t *tunDevice) Close() error {
	if err := t.dev.Close(); err != nil {
		return fmt.Errorf("close tun %s: %w", t.name, err)
	}
	return nil
}
