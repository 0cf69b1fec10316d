package trace

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fieldcon/fieldcon/engine"
)

// ExportResult counts what an export wrote.
type ExportResult struct {
	// Packets is how many packets were written.
	Packets int
	// Missing is how many matching summaries had no bytes any more (the
	// ring's raw arena had recycled them); they are not in the file.
	Missing int
}

// WritePcapng writes the held packets that match f (nil for all) as pcapng
// through gopacket's NgWriter: one interface description block per captured
// interface (its name, link type, and the node in the description),
// nanosecond timestamps as captured, and the direction in each packet's
// flags when the kernel gave it. The file opens in Wireshark and tshark.
func (r *Ring) WritePcapng(w io.Writer, f *Filter) (ExportResult, error) {
	pw, err := NewPcapngWriter(w, r, f, 0)
	if err != nil {
		return ExportResult{}, err
	}
	if err := pw.WriteNew(); err != nil {
		return pw.Result(), err
	}
	return pw.Result(), pw.Flush()
}

// PcapngWriter streams a ring's packets to a pcapng file as they are
// captured (`fieldcon trace -w`): call WriteNew often enough that the ring's
// byte arena has not recycled the frames yet (64 MiB by default: over half a
// second at a gigabit), and Flush at the end.
type PcapngWriter struct {
	ng      *pcapgo.NgWriter
	r       *Ring
	f       *Filter
	next    uint64
	written int // interfaces of the ring with a block in the file
	offset  int // file interface index of ring interface 0
	res     ExportResult
}

// NewPcapngWriter writes the section header and the interface blocks known
// so far; packets from sequence number from on (clamped to the oldest held)
// that match f are written by WriteNew.
func NewPcapngWriter(w io.Writer, r *Ring, f *Filter, from uint64) (*PcapngWriter, error) {
	pw := &PcapngWriter{r: r, f: f, next: from}
	ifs := r.Interfaces()
	first := Interface{Name: "none", LinkType: layers.LinkTypeEthernet}
	if len(ifs) > 0 {
		first = ifs[0]
		pw.written = 1
	} else {
		pw.offset = 1 // a placeholder block takes index 0
	}
	ng, err := pcapgo.NewNgWriterInterface(w, ngInterface(first), pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "fieldcon trace"},
	})
	if err != nil {
		return nil, fmt.Errorf("pcapng: %w", err)
	}
	pw.ng = ng
	return pw, pw.addInterfaces()
}

func ngInterface(i Interface) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:                i.Name,
		Description:         "fieldcon node " + i.Node + " interface " + i.Name,
		OS:                  runtime.GOOS,
		LinkType:            i.LinkType,
		SnapLength:          snapLen,
		TimestampResolution: 9,
	}
}

// addInterfaces writes blocks for interfaces added to the ring since; pcapng
// allows them anywhere before the first packet that refers to them.
func (pw *PcapngWriter) addInterfaces() error {
	ifs := pw.r.Interfaces()
	for ; pw.written < len(ifs); pw.written++ {
		if _, err := pw.ng.AddInterface(ngInterface(ifs[pw.written])); err != nil {
			return fmt.Errorf("pcapng: interface %s: %w", ifs[pw.written], err)
		}
	}
	return nil
}

// WriteNew writes the matching packets captured since the last call.
func (pw *PcapngWriter) WriteNew() error {
	if err := pw.addInterfaces(); err != nil {
		return err
	}
	const batch = 4096
	for {
		sums, next, missed := pw.r.Follow(pw.f, pw.next, batch)
		pw.next = next
		pw.res.Missing += int(missed)
		for i := range sums {
			if err := pw.r.writeOne(pw.ng, &sums[i], pw.offset, &pw.res); err != nil {
				return err
			}
		}
		if len(sums) < batch {
			return nil
		}
	}
}

// Result counts what was written so far.
func (pw *PcapngWriter) Result() ExportResult { return pw.res }

// Flush writes out what is buffered.
func (pw *PcapngWriter) Flush() error {
	if err := pw.ng.Flush(); err != nil {
		return fmt.Errorf("pcapng: %w", err)
	}
	return nil
}

func (r *Ring) writeOne(ng *pcapgo.NgWriter, s *Summary, offset int, res *ExportResult) error {
	_, frame, ok := r.Get(s.Seq)
	if !ok || frame == nil {
		res.Missing++
		return nil
	}
	ci := gopacket.CaptureInfo{
		Timestamp:      time.Unix(0, s.Time),
		CaptureLength:  len(frame),
		Length:         max(int(s.Len), len(frame)),
		InterfaceIndex: int(s.Iface) + offset,
	}
	opts := pcapgo.NgPacketOptions{}
	if fl := epbFlags(engine.Direction(s.Dir)); fl != nil {
		opts.Flags = fl
	}
	if err := ng.WritePacketWithOptions(ci, frame, opts); err != nil {
		return fmt.Errorf("pcapng: packet %d: %w", s.Seq, err)
	}
	res.Packets++
	return nil
}

// epbFlags maps the kernel's packet type to the enhanced packet block's
// direction and reception type (pcapng spec, epb_flags).
func epbFlags(d engine.Direction) *pcapgo.NgEpbFlags {
	switch d {
	case engine.DirIn:
		return &pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound, Reception: pcapgo.NgEpbFlagReceptionTypeUnicast}
	case engine.DirOut:
		return &pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionOutbound}
	case engine.DirOther:
		return &pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound, Reception: pcapgo.NgEpbFlagReceptionTypePromiscuous}
	case engine.DirBroadcast:
		return &pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound, Reception: pcapgo.NgEpbFlagReceptionTypeBroadcast}
	}
	return nil
}
