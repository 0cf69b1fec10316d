package dhcp

import (
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// Classic BPF programs for engine.PacketOptions.Filter. A client's packet
// socket has to be AF_PACKET (it has no address yet), and without a filter
// the kernel queues every IPv4 frame of the link to it: on a busy segment
// the client wakes, copies and parses thousands of frames to find its OFFER,
// and a full receive queue drops the one it wanted. The kernel runs these
// programs before queueing, so only DHCP reaches the socket.
//
// Only plain loads and jumps: no ancillary loads (SKF_AD_*), so that
// golang.org/x/net/bpf's VM, which drivers/fake runs them in, executes them
// exactly as the kernel does.

// snapLen is what an accepting program returns: the whole frame.
const snapLen = 0x40000

// dropMark in a JumpIf's SkipTrue means "jump to the final drop"; prog
// resolves it once the program's length is known.
const dropMark = 0xff

// prog appends accept and drop returns to ins, resolves jumps to the drop
// and assembles. The programs are constants of this file and
// TestFiltersAssemble assembles every one of them, so a failure here is a
// bug in this file, not a runtime condition.
func prog(ins []bpf.Instruction) []bpf.RawInstruction {
	ins = append(ins, bpf.RetConstant{Val: snapLen}, bpf.RetConstant{Val: 0})
	drop := len(ins) - 1
	for i, in := range ins {
		if j, ok := in.(bpf.JumpIf); ok && j.SkipTrue == dropMark {
			j.SkipTrue = uint8(drop - i - 1)
			ins[i] = j
		}
	}
	raw, err := bpf.Assemble(ins)
	if err != nil {
		panic(fmt.Sprintf("dhcp: assemble packet filter: %v", err))
	}
	return raw
}

// UDPDstPortFilter accepts IPv4 datagrams to UDP port, as tcpdump's
// `ip and udp dst port PORT` does: IPv4 (EtherType 0x0800 on a raw socket,
// version 4), protocol 17, not a non-first fragment (no UDP header there,
// RFC 791 fragment offset), destination port at the header length the IHL
// says. cooked selects offsets for a SOCK_DGRAM socket, which sees the
// packet from its IP header.
func UDPDstPortFilter(port uint16, cooked bool) []bpf.RawInstruction {
	l := uint32(ethHeaderLen)
	var ins []bpf.Instruction
	if cooked {
		l = 0
	} else {
		ins = append(ins,
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0800, SkipTrue: dropMark},
		)
	}
	return prog(append(ins,
		bpf.LoadAbsolute{Off: l, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x40, SkipTrue: dropMark},
		bpf.LoadAbsolute{Off: l + 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 17, SkipTrue: dropMark},
		bpf.LoadAbsolute{Off: l + 6, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: dropMark},
		bpf.LoadMemShift{Off: l},
		bpf.LoadIndirect{Off: l + 2, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(port), SkipTrue: dropMark},
	))
}

// ClientFilter is the DHCP client's packet socket filter (raw Ethernet):
// IPv4/UDP to port 68, where servers and relays answer (RFC 2131 §4.1).
func ClientFilter() []bpf.RawInstruction { return UDPDstPortFilter(ClientPort, false) }

// ARPFilter accepts Ethernet ARP packets for IPv4 (RFC 826: hardware type
// 1, protocol type 0x0800) whose sender or target protocol address is addr:
// everything RFC 5227 §2.1.1 calls a conflict for a probed addr (a packet
// from addr, or another host's probe for it), and nothing else.
func ARPFilter(addr netip.Addr) []bpf.RawInstruction {
	a4 := addr.As4()
	ip := uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])
	return prog([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0806, SkipTrue: dropMark},
		bpf.LoadAbsolute{Off: 14, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 1, SkipTrue: dropMark},
		bpf.LoadAbsolute{Off: 16, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0800, SkipTrue: dropMark},
		// Sender protocol address at 28, target at 38 (14 + 24).
		bpf.LoadAbsolute{Off: 28, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: ip, SkipTrue: 2},
		bpf.LoadAbsolute{Off: 38, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ip, SkipTrue: dropMark},
	})
}
