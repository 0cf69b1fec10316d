package tunnel

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// IndexFile is the tunnel index table a running server publishes next to
// its store (STORE.tunnels.json), so `fieldcon nat` in another process can
// join the kernel's conntrack with it: the store itself stays locked by the
// running engine.
type IndexFile struct {
	Time    time.Time          `json:"time"`
	Pool    string             `json:"pool"`
	Tunnels []engine.TunnelRow `json:"tunnels"`
	// Drops counts dropped packets by reason (docs/protocols/tunnel.md).
	Drops map[string]uint64 `json:"drops"`
}

// IndexPath is where the server with store path storePath publishes.
func IndexPath(storePath string) string { return storePath + ".tunnels.json" }

// ReadIndex reads a published index table.
func ReadIndex(path string) (IndexFile, error) {
	var f IndexFile
	b, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("tunnel index: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("tunnel index %s: %w", path, err)
	}
	return f, nil
}

// IndexOf returns a lookup from virtual address to tunnel index.
func (f IndexFile) IndexOf() func(netip.Addr) uint32 {
	m := make(map[netip.Addr]uint32, len(f.Tunnels))
	for _, t := range f.Tunnels {
		if a, err := netip.ParseAddr(t.Virtual); err == nil {
			m[a] = t.Index
		}
	}
	return func(a netip.Addr) uint32 { return m[a] }
}

// publishIndex writes the index table atomically (write, rename).
func (s *Server) publishIndex(now time.Time) {
	if s.env.Store == nil {
		return
	}
	path := IndexPath(s.env.Store.Path())
	b, err := json.Marshal(IndexFile{Time: now, Pool: s.pool.Prefix().String(), Tunnels: s.Tunnels(), Drops: s.Drops()})
	if err == nil {
		err = os.WriteFile(path+".tmp", b, 0o644)
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		s.env.Log.Warn("tunnel index not published", "path", path, "err", err)
	}
}

func (s *Server) unpublishIndex() {
	if s.env.Store != nil {
		os.Remove(IndexPath(s.env.Store.Path()))
	}
}
