package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/tunnel"
)

// cmdNAT prints a tunnel server node's NAT table: the kernel's conntrack
// entries of tunnel traffic joined with the tunnel index table that the
// running server publishes next to its store (DESIGN.md §5).
func cmdNAT(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		f      siteFlags
		asJSON bool
	)
	fs := newFlags("nat", stdout, stderr)
	f.register(fs, siteTexts{
		profile:  "the profile the tunnel server runs: a file path or an embedded profile's name",
		node:     "the tunnel_server node whose NAT table to show (required)",
		nodeMeta: "SERVER",
		lab:      "read the table in the server's namespace of the profile's lab (the lab must be up; without --lab: this machine's)",
		state:    "the state directory the running server was run with, where it publishes its tunnel index (default: the one of the fieldcon that runs SERVER)",
	})
	fs.boolVar(&asJSON, "json", "print one JSON row per line")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fs.usageError(fmt.Sprintf("unexpected argument %q", fs.arg(0)))
		return exitUsage
	}
	p, err := f.loadProfile()
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon nat:", err)
		return exitUsage
	}
	if len(f.nodes) != 1 {
		fmt.Fprintln(stderr, "fieldcon nat: give exactly one --node: the tunnel server whose NAT table to show")
		return exitUsage
	}
	n := p.Node(f.nodes[0])
	if n == nil || n.TunnelServer == nil {
		fmt.Fprintf(stderr, "fieldcon nat: profile %s has no node %q with a [node.tunnel_server] section\n", p.Name, f.nodes[0])
		return exitUsage
	}
	netns, labName := "", ""
	if f.useLab {
		if os.Geteuid() != 0 {
			fmt.Fprintf(stderr, "fieldcon nat: %v\n", needRoot("reading a lab's NAT table needs root for its network namespaces"))
			return exitUsage
		}
		var err error
		if labName, err = f.checkedLab(p); err != nil {
			fmt.Fprintf(stderr, "fieldcon nat: %v\n", err)
			return exitUsage
		}
		if !lab.Exists(labName) {
			fmt.Fprintf(stderr, "fieldcon nat: lab %s is not up; start it with `fieldcon run -p %s --lab`\n", labName, f.profile)
			return exitFailure
		}
		netns = lab.NetnsName(labName, n.Name)
	}
	h, err := linux.Open(netns)
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon nat:", err)
		return exitFailure
	}
	defer h.Close()
	pool := n.TunnelServer.Pool.Masked()
	flows, err := h.Conntrack(engine.ConntrackFilter{Source: pool})
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon nat:", err)
		return exitFailure
	}
	var index tunnel.IndexFile
	s, err := f.findServerStore("nat", p, n.Name)
	if err == nil {
		if s.note != "" {
			fmt.Fprintln(stderr, "fieldcon nat: "+s.note)
		}
		index, err = tunnel.ReadIndex(tunnel.IndexPath(filepath.Join(s.dir, n.Name+".db")))
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(stderr, "fieldcon nat:", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon nat: no running tunnel server publishes its index for node %s; tunnel index shows as 0\n", n.Name)
	}
	rows := tunnel.SortedMappings(tunnel.JoinNAT(tunnel.ClientFlows(flows, pool), index.IndexOf()))
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			enc.Encode(r)
		}
		return exitOK
	}
	printNAT(stdout, rows, index, pool)
	return exitOK
}

func printNAT(w io.Writer, rows []engine.MappingRow, index tunnel.IndexFile, pool netip.Prefix) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tPROTO\tVIRTUAL\tTRANSLATED\tDESTINATION\tSTATE\tPKTS OUT\tBYTES OUT\tPKTS IN\tBYTES IN")
	for _, r := range rows {
		state := r.State
		if state == "" {
			state = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.TunnelIndex, r.Protocol, r.Virtual, r.Translated, r.Destination, state, r.PacketsOut, r.BytesOut, r.PacketsIn, r.BytesIn)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d flows from %s, %d tunnels\n", len(rows), pool, len(index.Tunnels))
	var drops []string
	for _, k := range slices.Sorted(maps.Keys(index.Drops)) {
		if n := index.Drops[k]; n > 0 {
			drops = append(drops, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(drops) > 0 {
		fmt.Fprintf(w, "dropped: %s\n", strings.Join(drops, ", "))
	}
}
