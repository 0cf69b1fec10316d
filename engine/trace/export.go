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
	var res ExportResult
	ifs := r.Interfaces()
	if len(ifs) == 0 {
		ifs = []Interface{{Name: "none", LinkType: layers.LinkTypeEthernet}}
	}
	ngIf := func(i Interface) pcapgo.NgInterface {
		return pcapgo.NgInterface{
			Name:                i.Name,
			Description:         "fieldcon node " + i.Node + " interface " + i.Name,
			OS:                  runtime.GOOS,
			LinkType:            i.LinkType,
			SnapLength:          snapLen,
			TimestampResolution: 9,
		}
	}
	ng, err := pcapgo.NewNgWriterInterface(w, ngIf(ifs[0]), pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "fieldcon trace"},
	})
	if err != nil {
		return res, fmt.Errorf("pcapng: %w", err)
	}
	for _, i := range ifs[1:] {
		if _, err := ng.AddInterface(ngIf(i)); err != nil {
			return res, fmt.Errorf("pcapng: interface %s: %w", i, err)
		}
	}
	const batch = 4096
	for from := uint64(0); ; {
		sums := r.RangeFiltered(f, from, batch)
		if len(sums) == 0 {
			break
		}
		for i := range sums {
			s := &sums[i]
			if err := r.writeOne(ng, s, &res); err != nil {
				return res, err
			}
		}
		from = sums[len(sums)-1].Seq + 1
	}
	if err := ng.Flush(); err != nil {
		return res, fmt.Errorf("pcapng: %w", err)
	}
	return res, nil
}

func (r *Ring) writeOne(ng *pcapgo.NgWriter, s *Summary, res *ExportResult) error {
	_, frame, ok := r.Get(s.Seq)
	if !ok || frame == nil {
		res.Missing++
		return nil
	}
	ci := gopacket.CaptureInfo{
		Timestamp:      time.Unix(0, s.Time),
		CaptureLength:  len(frame),
		Length:         max(int(s.Len), len(frame)),
		InterfaceIndex: int(s.Iface),
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
