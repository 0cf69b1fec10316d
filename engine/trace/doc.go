// Package trace shows what is on the wire while the engine works: it captures
// frames on any interface of any node (engine.Host.OpenPacket with
// engine.EthAll), decodes a one-line Summary of each on a zero-allocation
// fast path (gopacket's DecodingLayerParser), keeps them in a bounded Ring,
// filters them with a small expression language, dissects one frame in full
// on demand, and exports pcapng that Wireshark and tshark read.
//
// fieldcon's own protocols are registered gopacket layers (LayerTypeRHCP,
// LayerTypeTunnel), decoded by name with their fields; HMACs, Noise messages,
// cookies and sealed payloads are never shown, only their sizes.
//
// # Reading a session (the TUI, fieldcon trace)
//
//	s := trace.NewSession(trace.SessionConfig{})
//	s.Start(ctx, host, "router", "eth0")   // or s.StartAll(ctx, host, "router"); s.Stop(node, iface)
//	s.Capturing(), s.Stats()               // captured interfaces, packets and bytes each
//	r := s.Ring()
//	r.Len(), r.First(), r.Next()  // summaries held; oldest and next sequence numbers
//	r.Dropped()                   // summaries overwritten because the ring was full
//	r.Range(from, n)              // up to n summaries from seq `from` on (copies)
//	r.RangeFiltered(f, from, n)   // the same through a filter
//	r.Before(f, r.Next(), n)      // the newest n that match (follow mode, scroll back)
//	r.Count(f)                    // how many held summaries match
//	r.Get(seq)                    // one summary and a copy of its frame bytes
//	r.Detail(seq, opt)            // full layer tree and hex dump of one frame
//	r.Line(&sum)                  // the one-line text, with node and interface
//	<-r.Notify()                  // wakes a reader after new summaries arrived
//	r.WritePcapng(w, f)           // export what matches f (NewPcapngWriter streams)
//	r.Follow(f, from, n)          // like RangeFiltered, plus where to continue
//	trace.ParseFilter("rhcp and node=router")  // *SyntaxError carries Pos
//
// Readers get copies and hold the ring's lock for at most one chunk of a
// scan (scanChunk summaries), so capture goroutines never wait long; the
// ring never blocks capture on a slow reader.
//
// # Memory budget
//
// A Summary is a fixed-size, pointer-free struct (SummarySize = 112 bytes on
// 64-bit), so the garbage collector never scans the ring. The default ring
// holds DefaultSummaries = 1,048,576 summaries: 112 MiB at most, allocated
// as traffic arrives. Frame bytes live apart in one arena of DefaultRawBytes
// = 64 MiB (allocated on the first frame), recycled oldest first; a summary
// whose bytes were recycled still shows and filters, but Get returns no
// bytes and export skips it (ExportResult.Missing). Default budget per
// session: 176 MiB. RingConfig changes both.
package trace
