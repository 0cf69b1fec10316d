package linux

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

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
	t.Run("ipv4", func(t *testing.T) { testUDPBatch(t, "192.0.2.1", "192.0.2.2") })
	t.Run("ipv6", func(t *testing.T) { testUDPBatch(t, "2001:db8::1", "2001:db8::2") })
}

func testUDPBatch(t *testing.T, cliIP, srvIP string) {
	ha, hb, a, b := twoHosts(t)
	if netip.MustParseAddr(srvIP).Is6() {
		run(t, "ip", "-n", a, "addr", "add", cliIP+"/64", "dev", "a0", "nodad")
		run(t, "ip", "-n", b, "addr", "add", srvIP+"/64", "dev", "b0", "nodad")
	}
	listen := func(h *Host, a string) engine.BatchUDPConn {
		c, err := h.ListenUDP(netip.MustParseAddrPort(a), engine.UDPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(engine.BatchUDPConn)
	}
	srv := netip.MustParseAddr(srvIP)
	batched, single := listen(hb, netip.AddrPortFrom(srv, 0).String()), listen(hb, netip.AddrPortFrom(srv, 0).String())
	cli := listen(ha, netip.AddrPortFrom(netip.MustParseAddr(cliIP), 0).String())
	toB := netip.AddrPortFrom(srv, uint16(batched.LocalAddr().(*net.UDPAddr).Port))
	toS := netip.AddrPortFrom(srv, uint16(single.LocalAddr().(*net.UDPAddr).Port))

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
			if m.Addr.Addr() != netip.MustParseAddr(cliIP) {
				t.Fatalf("datagram from %s, want %s", m.Addr, cliIP)
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

// recordBatch stands in for x/net's PacketConn: it records what sendmmsg
// would get, and refuses GSO sends when told to, as a device without
// checksum offload makes udp_send_skb do (EIO).
type recordBatch struct {
	sent     []ipv4.Message
	refuseGS bool
}

func (r *recordBatch) ReadBatch(ms []ipv4.Message, flags int) (int, error) { return 0, nil }

func (r *recordBatch) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	for i, m := range ms {
		if r.refuseGS && len(m.OOB) > 0 {
			if i == 0 {
				return -1, &net.OpError{Op: "write", Err: os.NewSyscallError("sendmmsg", syscall.EIO)}
			}
			return i, nil
		}
		r.sent = append(r.sent, ipv4.Message{Buffers: append([][]byte(nil), m.Buffers...), OOB: append([]byte(nil), m.OOB...), Addr: &net.UDPAddr{IP: append(net.IP(nil), m.Addr.(*net.UDPAddr).IP...), Port: m.Addr.(*net.UDPAddr).Port}})
	}
	return len(ms), nil
}

// TestUDPBatchRuns checks how WriteBatch groups datagrams into GSO sends,
// without a kernel: a run ends at another address, a longer datagram,
// after a shorter one, at 64 segments or at an IP packet's worth.
func TestUDPBatchRuns(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.2:4000")
	b := netip.MustParseAddrPort("192.0.2.3:4000")
	var ms []engine.UDPMessage
	add := func(n, size int, to netip.AddrPort) {
		for range n {
			ms = append(ms, engine.UDPMessage{Buf: make([]byte, size), Addr: to})
		}
	}
	add(3, 1400, a) // run 1
	add(1, 700, a)  // ends run 1 (shorter last)
	add(2, 1400, b) // run 2: another address
	add(1, 1500, b) // longer: run 3
	add(70, 100, a) // runs 4 and 5: at most 64 segments
	add(50, 1400, a)
	rec := &recordBatch{}
	c := &udpConn{batch: rec, gso: true}
	if n, err := c.WriteBatch(ms); err != nil || n != len(ms) {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	var runs []string
	for _, m := range rec.sent {
		seg := 0
		if len(m.OOB) > 0 {
			seg = int(binary.NativeEndian.Uint16(m.OOB[unix.CmsgLen(0):]))
		}
		total := 0
		for _, b := range m.Buffers {
			total += len(b)
		}
		runs = append(runs, fmt.Sprintf("%s:%d/%d/%d", m.Addr.(*net.UDPAddr).IP, len(m.Buffers), seg, total))
	}
	// 50×1400 = 70000 is more than an IP packet: 46 (64400) then 4.
	want := "[192.0.2.2:4/1400/4900 192.0.2.3:2/1400/2800 192.0.2.3:1/0/1500 192.0.2.2:64/100/6400 192.0.2.2:6/100/600 192.0.2.2:46/1400/64400 192.0.2.2:4/1400/5600]"
	if fmt.Sprint(runs) != want {
		t.Errorf("sends\n%v\nwant\n%s", runs, want)
	}

	// A kernel that refuses GSO: the socket falls back to one datagram
	// per message and sends everything.
	rec = &recordBatch{refuseGS: true}
	c = &udpConn{batch: rec, gso: true}
	if n, err := c.WriteBatch(ms); err != nil || n != len(ms) {
		t.Fatalf("WriteBatch without GSO = %d, %v", n, err)
	}
	if c.gso || len(rec.sent) != len(ms) {
		t.Errorf("after EIO: gso %v, %d sends for %d datagrams", c.gso, len(rec.sent), len(ms))
	}
}

func TestGROSegment(t *testing.T) {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], 1436)
	if got := groSegment(b); got != 1436 {
		t.Errorf("groSegment = %d, want 1436", got)
	}
	if got := groSegment(nil); got != 0 {
		t.Errorf("groSegment(nil) = %d", got)
	}
}

// FuzzGROSegment: control messages are parsed without trusting lengths.
func FuzzGROSegment(f *testing.F) {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		groSegment(oob)
	})
}
