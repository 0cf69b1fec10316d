package tunnel

import (
	"net/netip"
	"sort"

	"github.com/fieldcon/fieldcon/engine"
)

// ipv4Src and ipv4Dst read an IPv4 header's addresses (RFC 791 §3.1).
func ipv4Src(p []byte) (netip.Addr, bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(p[12:16])), true
}

func ipv4Dst(p []byte) (netip.Addr, bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(p[16:20])), true
}

// flowKey identifies a conntrack entry by its original tuple.
func flowKey(f engine.ConntrackFlow) string {
	return engine.ProtocolName(f.Protocol) + " " + f.OrigSrc.String() + " > " + f.OrigDst.String()
}

// JoinNAT builds the NAT table: the conntrack entries of tunnel traffic
// (original source in the pool) joined with the tunnel index table by
// virtual address. Flows from addresses no tunnel holds get index 0.
func JoinNAT(flows []engine.ConntrackFlow, indexOf func(netip.Addr) uint32) map[string]engine.MappingRow {
	rows := make(map[string]engine.MappingRow, len(flows))
	for _, f := range flows {
		rows[flowKey(f)] = engine.MappingRow{
			TunnelIndex: indexOf(f.OrigSrc.Addr()),
			Protocol:    engine.ProtocolName(f.Protocol),
			Virtual:     f.OrigSrc.String(),
			// With source NAT, replies are addressed to the translated source.
			Translated:  f.ReplyDst.String(),
			Destination: f.OrigDst.String(),
			State:       f.State,
			PacketsOut:  f.PacketsOrig, BytesOut: f.BytesOrig,
			PacketsIn: f.PacketsReply, BytesIn: f.BytesReply,
		}
	}
	return rows
}

func mappingFields(r engine.MappingRow) engine.Fields {
	return engine.Fields{
		"index": r.TunnelIndex, "protocol": r.Protocol, "virtual": r.Virtual,
		"translated": r.Translated, "destination": r.Destination, "state": r.State,
		"packets_out": r.PacketsOut, "bytes_out": r.BytesOut, "packets_in": r.PacketsIn, "bytes_in": r.BytesIn,
	}
}

// ClientFlows keeps the flows of pool's clients, filtering flows in place:
// the server's own traffic, from the pool's gateway address, is no tunnel's.
func ClientFlows(flows []engine.ConntrackFlow, pool netip.Prefix) []engine.ConntrackFlow {
	gw := gatewayOf(pool)
	kept := flows[:0]
	for _, f := range flows {
		if f.OrigSrc.Addr() != gw {
			kept = append(kept, f)
		}
	}
	return kept
}

// refreshNAT reads conntrack, replaces the NAT table and emits
// nat.mapping.added/removed for the difference.
func (s *Server) refreshNAT(nh engine.NATHost) {
	flows, err := nh.Conntrack(engine.ConntrackFilter{Source: s.pool.Prefix()})
	if err != nil {
		s.env.Log.Warn("conntrack unreadable; NAT table not refreshed", "err", err)
		return
	}
	kept := ClientFlows(flows, s.pool.Prefix())
	s.mu.RLock()
	rows := JoinNAT(kept, func(a netip.Addr) uint32 {
		if t := s.byAddr[a]; t != nil {
			return t.index
		}
		return 0
	})
	s.mu.RUnlock()
	s.mu.Lock()
	old := s.nat
	s.nat = rows
	s.mu.Unlock()
	for k, r := range rows {
		if _, ok := old[k]; !ok {
			s.env.Emit.Emit(engine.KindNATAdded, mappingFields(r))
		}
	}
	for k, r := range old {
		if _, ok := rows[k]; !ok {
			s.env.Emit.Emit(engine.KindNATRemoved, mappingFields(r))
		}
	}
}

// Mappings returns the NAT table, by tunnel index then flow.
func (s *Server) Mappings() []engine.MappingRow {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return SortedMappings(s.nat)
}

// SortedMappings lists a NAT table by tunnel index, then flow.
func SortedMappings(m map[string]engine.MappingRow) []engine.MappingRow {
	rows := make([]engine.MappingRow, 0, len(m))
	for _, r := range m {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].TunnelIndex != rows[j].TunnelIndex {
			return rows[i].TunnelIndex < rows[j].TunnelIndex
		}
		return rows[i].Protocol+rows[i].Virtual+rows[i].Destination < rows[j].Protocol+rows[j].Virtual+rows[j].Destination
	})
	return rows
}
