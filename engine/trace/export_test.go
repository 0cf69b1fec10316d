package trace

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
)

// exportRing fills a ring as captures on two nodes would: frames on
// router eth1 (Ethernet) and device tun0 (raw IP), with nanosecond times.
func exportRing(t testing.TB) (*Ring, [][]byte, []int64) {
	r := NewRing(RingConfig{Summaries: 100, RawBytes: 1 << 16})
	eth := r.AddInterface(Interface{Node: "router", Name: "eth1", LinkType: layers.LinkTypeEthernet})
	tun := r.AddInterface(Interface{Node: "device", Name: "tun0", LinkType: layers.LinkTypeRaw})
	probe := ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 7)))
	stop := ethIPv4UDP(t, "203.0.113.21", "198.51.100.1", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpStop(t, 8)))
	frames := [][]byte{probe, stop[14:], arpRequest(t, "192.0.2.1", "192.0.2.2"), dhcpFrame(t, layers.DHCPMsgTypeAck, 9, "203.0.113.30")}
	ifaces := []uint16{eth, tun, eth, eth}
	dirs := []engine.Direction{engine.DirOut, engine.DirIn, engine.DirBroadcast, engine.DirUnknown}
	base := time.Date(2026, 11, 21, 7, 0, 0, 123456789, time.UTC).UnixNano()
	var times []int64
	d := NewDecoder(DecoderOptions{})
	for i, f := range frames {
		s := Summary{Time: base + int64(i)*1_000_001, Iface: ifaces[i], Dir: uint8(dirs[i]), Len: uint32(len(f))}
		lt := layers.LinkTypeEthernet
		if ifaces[i] == tun {
			lt = layers.LinkTypeRaw
		}
		d.Decode(lt, f, &s)
		r.Add(s, f)
		times = append(times, s.Time)
	}
	return r, frames, times
}

func TestWritePcapngReadsBack(t *testing.T) {
	r, frames, times := exportRing(t)
	var buf bytes.Buffer
	res, err := r.WritePcapng(&buf, nil)
	if err != nil || res.Packets != 4 || res.Missing != 0 {
		t.Fatalf("export: %+v %v", res, err)
	}
	ng, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, ci, err := ng.ReadPacketData()
		if err == io.EOF {
			if i != 4 {
				t.Errorf("read %d packets, want 4", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, frames[i]) || ci.Timestamp.UnixNano() != times[i] {
			t.Errorf("packet %d: %d bytes at %d, want %d bytes at %d", i, len(data), ci.Timestamp.UnixNano(), len(frames[i]), times[i])
		}
	}
	if ng.NInterfaces() != 2 {
		t.Fatalf("%d interface blocks, want 2", ng.NInterfaces())
	}
	for i, want := range []pcapgo.NgInterface{
		{Name: "eth1", Description: "fieldcon node router interface eth1", LinkType: layers.LinkTypeEthernet},
		{Name: "tun0", Description: "fieldcon node device interface tun0", LinkType: layers.LinkTypeRaw},
	} {
		got, _ := ng.Interface(i)
		if got.Name != want.Name || got.Description != want.Description || got.LinkType != want.LinkType {
			t.Errorf("interface %d: %s %q %v", i, got.Name, got.Description, got.LinkType)
		}
	}
}

func TestWritePcapngFiltered(t *testing.T) {
	r, _, _ := exportRing(t)
	f, _ := ParseFilter("rhcp")
	var buf bytes.Buffer
	if res, err := r.WritePcapng(&buf, f); err != nil || res.Packets != 2 {
		t.Fatalf("filtered export: %+v %v", res, err)
	}
}

// TestTsharkReadsExport: tshark reads the export with the same packet count,
// timestamps, interfaces and directions, and dissects the frames.
func TestTsharkReadsExport(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("skipping: tshark not installed (apt-get install tshark)")
	}
	r, _, times := exportRing(t)
	path := filepath.Join(t.TempDir(), "trace.pcapng")
	if err := writeFile(r, path); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.time_epoch", "-e", "frame.interface_name", "-e", "frame.interface_description",
		"-e", "pkt_comment", "-e", "frame.p2p_dir", "-e", "_ws.col.Protocol", "-e", "dhcp.id").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(times) {
		t.Fatalf("tshark read %d packets, want %d:\n%s", len(lines), len(times), out)
	}
	for i, l := range lines {
		f := strings.Split(l, "|")
		want := fmt.Sprintf("%d.%09d", times[i]/1e9, times[i]%1e9)
		if f[0] != want {
			t.Errorf("packet %d: tshark time %s, want %s", i, f[0], want)
		}
		node := map[bool]string{true: "device", false: "router"}[f[1] == "tun0"]
		if !strings.Contains(f[2], "node "+node) {
			t.Errorf("packet %d: interface %s description %q", i, f[1], f[2])
		}
	}
	if f := strings.Split(lines[3], "|"); f[5] != "DHCP" || f[6] != "0x00000009" {
		t.Errorf("tshark does not see the DHCP ACK: %q", lines[3])
	}
	if f := strings.Split(lines[1], "|"); f[1] != "tun0" || f[5] != "UDP" {
		t.Errorf("raw IP frame on tun0: %q", lines[1])
	}
}

func writeFile(r *Ring, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := r.WritePcapng(f, nil); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestPcapngWriterStreams: written as they arrive, packets survive a byte
// arena far smaller than the capture, and an interface that starts
// capturing later gets its block before its first packet.
func TestPcapngWriterStreams(t *testing.T) {
	r := NewRing(RingConfig{Summaries: 1000, RawBytes: 400})
	var buf bytes.Buffer
	pw, err := NewPcapngWriter(&buf, r, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	eth := r.AddInterface(Interface{Node: "router", Name: "eth0", LinkType: layers.LinkTypeEthernet})
	frame := arpRequest(t, "192.0.2.1", "192.0.2.2")
	for i := 0; i < 50; i++ {
		if i == 25 {
			r.AddInterface(Interface{Node: "device", Name: "eth0", LinkType: layers.LinkTypeEthernet})
		}
		iface := eth
		if i >= 25 {
			iface = 1
		}
		r.Add(Summary{Time: int64(i + 1), Iface: iface, Len: uint32(len(frame))}, frame)
		if err := pw.WriteNew(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.Flush(); err != nil {
		t.Fatal(err)
	}
	if res := pw.Result(); res.Packets != 50 || res.Missing != 0 {
		t.Fatalf("streamed %+v, want 50 packets none missing", res)
	}
	ng, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, ci, err := ng.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		iface, _ := ng.Interface(ci.InterfaceIndex)
		if want := map[bool]string{true: "fieldcon node device interface eth0", false: "fieldcon node router interface eth0"}[n >= 25]; iface.Description != want {
			t.Errorf("packet %d on %q, want %q", n, iface.Description, want)
		}
		n++
	}
	if n != 50 {
		t.Errorf("read %d packets", n)
	}
	// The same ring exported at the end has lost most frames' bytes.
	if res, _ := r.WritePcapng(io.Discard, nil); res.Missing == 0 {
		t.Errorf("end-of-run export of a recycled arena: %+v, expected missing frames", res)
	}
}
