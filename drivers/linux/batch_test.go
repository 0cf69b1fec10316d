package linux

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// datagramsOf splits received messages into their datagrams.
func datagramsOf(ms []engine.UDPMessage) (dgs [][]byte, coalesced int) {
	for _, m := range ms {
		b, seg := m.Buf[:m.N], m.Segment
		if seg > 0 {
			coalesced++
		} else {
			seg = len(b)
		}
		for len(b) > 0 {
			k := min(seg, len(b))
			dgs = append(dgs, append([]byte(nil), b[:k]...))
			b = b[k:]
		}
	}
	return dgs, coalesced
}

func numbered(i, size int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	return b
}

// TestUDPBatch sends runs of datagrams with WriteBatch (one GSO send per
// run where the kernel can) to a socket read with ReadBatch (GRO) and to
// one read a datagram at a time: both get every datagram, whole and in
// order; the single reader never gets two as one.
func TestUDPBatch(t *testing.T) {
	requireRoot(t)
	ha, hb, _, _ := twoHosts(t)
	listen := func(h *Host, a string) engine.BatchUDPConn {
		c, err := h.ListenUDP(netip.MustParseAddrPort(a), engine.UDPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(engine.BatchUDPConn)
	}
	batched, single := listen(hb, "192.0.2.2:0"), listen(hb, "192.0.2.2:0")
	cli := listen(ha, "0.0.0.0:0")
	toB := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(batched.LocalAddr().(*net.UDPAddr).Port))
	toS := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(single.LocalAddr().(*net.UDPAddr).Port))

	// Prime the batched socket's receive offload before the burst.
	batched.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	batched.ReadBatch(make([]engine.UDPMessage, 1))

	// 40 to the batched socket, 10 to the single one, 30 more to the
	// batched one with a short last datagram, in one WriteBatch.
	var out []engine.UDPMessage
	var wantB, wantS [][]byte
	for i := range 80 {
		size, to := 1200, toB
		if i >= 40 && i < 50 {
			size, to = 900, toS
		}
		if i == 79 {
			size = 300
		}
		p := numbered(i, size)
		out = append(out, engine.UDPMessage{Buf: p, Addr: to})
		if to == toB {
			wantB = append(wantB, p)
		} else {
			wantS = append(wantS, p)
		}
	}
	if n, err := cli.WriteBatch(out); err != nil || n != len(out) {
		t.Fatalf("WriteBatch = %d, %v; want %d", n, err, len(out))
	}

	var got [][]byte
	coalesced := 0
	ms := make([]engine.UDPMessage, 8)
	for i := range ms {
		ms[i].Buf = make([]byte, 65535)
	}
	for len(got) < len(wantB) {
		batched.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := batched.ReadBatch(ms)
		if err != nil {
			t.Fatalf("ReadBatch after %d datagrams: %v", len(got), err)
		}
		for _, m := range ms[:n] {
			if m.Addr.Addr() != netip.MustParseAddr("192.0.2.1") {
				t.Fatalf("datagram from %s, want 192.0.2.1", m.Addr)
			}
		}
		d, c := datagramsOf(ms[:n])
		got, coalesced = append(got, d...), coalesced+c
	}
	for i := range wantB {
		if !bytes.Equal(got[i], wantB[i]) {
			t.Fatalf("batched datagram %d: %d bytes starting % x, want %d starting % x", i, len(got[i]), got[i][:4], len(wantB[i]), wantB[i][:4])
		}
	}
	gso := cli.(*udpConn).gso
	t.Logf("%d datagrams in %d coalesced messages and the rest one by one; GSO %v", len(got), coalesced, gso)
	if gso && coalesced == 0 {
		t.Error("the kernel can segment (UDP_SEGMENT) but nothing arrived coalesced (UDP_GRO)")
	}

	buf := make([]byte, 65535)
	for i, w := range wantS {
		single.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := single.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], w) {
			t.Fatalf("single datagram %d: %d bytes, %v; want %d", i, n, err, len(w))
		}
	}
}

// TestTUNBatch writes a batch of packets into a TUN (with the headroom the
// virtio-net header takes) and reads a batch back out.
func TestTUNBatch(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	h := open(t, ns)
	dev, err := h.CreateTUN("fcb0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	bt, ok := dev.(engine.BatchTUN)
	if !ok {
		t.Fatal("the TUN has no batch interface")
	}
	if err := h.AddAddress("fcb0", engine.Address{Prefix: netip.MustParsePrefix("198.18.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	h.SetSysctl("net/ipv6/conf/fcb0/disable_ipv6", "1")
	if err := h.SetLinkUp("fcb0", true); err != nil {
		t.Fatal(err)
	}
	srv, err := h.ListenUDP(netip.MustParseAddrPort("198.18.0.1:5000"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	peer, local := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")

	const k = 6
	bufs := make([][]byte, k)
	for i := range bufs {
		p := ipv4UDP(peer, local, 6000, 5000, numbered(i, 1000))
		bufs[i] = append(make([]byte, engine.TUNHeadroom, engine.TUNHeadroom+65535), p...)
	}
	if _, err := bt.WriteBatch(bufs, 3); err == nil {
		t.Error("WriteBatch with 3 bytes of headroom succeeded")
	}
	if n, err := bt.WriteBatch(bufs, engine.TUNHeadroom); err != nil || n != k {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	buf := make([]byte, 2048)
	for i := range k {
		srv.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil || from.Addr() != peer || !bytes.Equal(buf[:n], numbered(i, 1000)) {
			t.Fatalf("datagram %d through the TUN: %d bytes from %s, %v", i, n, from, err)
		}
	}

	// And out: replies read in batches.
	for i := range k {
		if _, err := srv.WriteToUDPAddrPort(numbered(i, 500), netip.AddrPortFrom(peer, 6000)); err != nil {
			t.Fatal(err)
		}
	}
	rbufs, sizes := make([][]byte, bt.BatchSize()), make([]int, bt.BatchSize())
	for i := range rbufs {
		rbufs[i] = make([]byte, engine.TUNHeadroom+65535)
	}
	seen := 0
	deadline := time.Now().Add(3 * time.Second)
	for seen < k && time.Now().Before(deadline) {
		n, err := bt.ReadBatch(rbufs, sizes, engine.TUNHeadroom)
		if err != nil {
			t.Fatal(err)
		}
		for j := range n {
			p := rbufs[j][engine.TUNHeadroom : engine.TUNHeadroom+sizes[j]]
			if len(p) < 28 || p[9] != 17 || netip.AddrFrom4([4]byte(p[16:20])) != peer {
				continue // not ours
			}
			if !bytes.Equal(p[28:], numbered(seen, 500)) {
				t.Fatalf("reply %d out of the TUN: % x", seen, p[28:min(len(p), 36)])
			}
			seen++
		}
	}
	if seen < k {
		t.Fatalf("%d of %d replies out of the TUN", seen, k)
	}
}
