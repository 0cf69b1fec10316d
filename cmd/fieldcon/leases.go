package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// leaseRow is one line of `fieldcon leases`: the stored lease without its
// RFC 6704 nonce, which is a key (DESIGN.md: secrets never reach output).
type leaseRow struct {
	Node        string     `json:"node"`
	Key         string     `json:"key"`
	ClientID    string     `json:"client_id,omitempty"`
	MAC         string     `json:"mac"`
	Address     netip.Addr `json:"address"`
	State       string     `json:"state"`
	Start       time.Time  `json:"start"`
	Expiry      time.Time  `json:"expiry"`
	Hostname    string     `json:"hostname,omitempty"`
	GIAddr      netip.Addr `json:"giaddr,omitempty"`
	CircuitID   string     `json:"circuit_id,omitempty"`
	RemoteID    string     `json:"remote_id,omitempty"`
	CloudServer netip.Addr `json:"cloud_server,omitempty"`
	// ForceRenew says whether the client holds a nonce, i.e. can be sent a
	// FORCERENEW it will accept.
	ForceRenew bool `json:"forcerenew"`
}

func rowOf(node string, l dhcp.ServerLease) leaseRow {
	return leaseRow{Node: node, Key: l.Key, ClientID: l.ClientID, MAC: l.MAC, Address: l.Address, State: l.State,
		Start: l.Start, Expiry: l.Expiry, Hostname: l.Hostname, GIAddr: l.GIAddr, CircuitID: l.CircuitID,
		RemoteID: l.RemoteID, CloudServer: l.CloudServer, ForceRenew: len(l.Nonce) > 0}
}

// cmdLeases lists the DHCP leases of a profile's servers, read from their
// stores (DESIGN.md: leases live in the embedded store).
func cmdLeases(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		f                  siteFlags
		asJSON, all, stats bool
	)
	fs := newFlags("leases", stdout, stderr)
	f.register(fs, siteTexts{
		profile:  "the profile the server runs: a file path or an embedded profile's name",
		node:     "show only this dhcp_server node's leases (repeatable; default: every dhcp_server node)",
		nodeMeta: "SERVER",
		lab:      "read the server that runs in the profile's lab (without --lab: the one on this machine's interfaces)",
		state:    runningState,
	})
	fs.boolVar(&all, "all", "include released, expired and declined leases")
	fs.boolVar(&asJSON, "json", "print one JSON lease per line")
	fs.boolVar(&stats, "stats", "print each server's counters instead (messages received, undecodable and malformed input, replies, silences by reason)")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fs.usageError(fmt.Sprintf("unexpected argument %q", fs.arg(0)))
		return exitUsage
	}
	p, err := f.loadProfile()
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon leases:", err)
		return exitUsage
	}
	nodes, err := dhcpServerNodes(p, f.nodes)
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon leases:", err)
		return exitUsage
	}
	stores := map[string]string{}
	for _, n := range nodes {
		s, err := f.findServerStore("leases", p, n.Name)
		if err != nil {
			fmt.Fprintf(stderr, "fieldcon leases: node %s: %v\n", n.Name, err)
			return exitCode(err)
		}
		if s.note != "" {
			fmt.Fprintln(stderr, "fieldcon leases: "+s.note)
		}
		stores[n.Name] = filepath.Join(s.dir, n.Name+".db")
	}
	if stats {
		return printStats(nodes, stores, asJSON, stdout, stderr)
	}
	var rows []leaseRow
	for _, n := range nodes {
		leases, err := readLeases(stores[n.Name])
		if err != nil {
			fmt.Fprintf(stderr, "fieldcon leases: node %s: %v\n", n.Name, err)
			return exitCode(err)
		}
		for _, l := range leases {
			if all || l.State == dhcp.LeaseBound || l.State == dhcp.LeaseOffered {
				rows = append(rows, rowOf(n.Name, l))
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Node != rows[j].Node {
			return rows[i].Node < rows[j].Node
		}
		return rows[i].Address.Less(rows[j].Address)
	})
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			enc.Encode(r)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\tCLIENT\tMAC\tEXPIRES\tRELAY\tCIRCUIT\tREMOTE-ID\tFORCERENEW")
	for _, r := range rows {
		fr := "-"
		if r.ForceRenew {
			fr = "nonce"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, r.Address, r.State, dash(r.Key), dash(r.MAC),
			r.Expiry.Local().Format(time.DateTime), dash(addrOrEmpty(r.GIAddr)), dash(r.CircuitID), dash(r.RemoteID), fr)
	}
	tw.Flush()
	if len(rows) == 0 {
		fmt.Fprintln(stderr, "fieldcon leases: no leases (use --all to include released and expired ones)")
	}
	return exitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func addrOrEmpty(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func dhcpServerNodes(p *profiles.Profile, names []string) ([]*profiles.Node, error) {
	var out []*profiles.Node
	for i := range p.Nodes {
		n := &p.Nodes[i]
		if len(names) > 0 && !containsString(names, n.Name) {
			continue
		}
		if n.DHCPServer != nil {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("profile %s has no selected node with a [node.dhcp_server] section", p.Name)
	}
	return out, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readLeases loads a server's leases. A running server holds its store
// locked, so its file is copied and the copy read: bbolt opens the copy at
// the newest meta page whose checksum holds, normally the server's last
// committed transaction; a copy torn by a commit in flight fails to open and
// the command says so (run it again).
func readLeases(path string) ([]dhcp.ServerLease, error) {
	st, done, err := openServerStore(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return dhcp.LoadLeases(st)
}

// openServerStore opens a server's store, or a copy of it while the server
// holds it (see readLeases); done closes it and removes the copy.
func openServerStore(path string) (st *store.Store, done func(), err error) {
	if _, err := os.Stat(path); err != nil {
		if permissionDenied(err) {
			return nil, nil, needRoot("reading the lease store " + path)
		}
		return nil, nil, fmt.Errorf("no store at %s (has the server run with this --state?): %w", path, err)
	}
	err = errStoreLocked
	if !heldByServer(path) {
		st, err = store.Open(path)
	}
	if err == nil {
		return st, func() { st.Close() }, nil
	}
	tmp, cerr := copyToTemp(path)
	if cerr != nil {
		return nil, nil, errors.Join(err, cerr)
	}
	if st, err = store.Open(tmp); err != nil {
		os.RemoveAll(filepath.Dir(tmp))
		return nil, nil, err
	}
	return st, func() { st.Close(); os.RemoveAll(filepath.Dir(tmp)) }, nil
}

// statsRow is one server's counters in `fieldcon leases --stats --json`.
type statsRow struct {
	Node string `json:"node"`
	dhcp.StoredStats
}

// printStats prints the counters each server stored (DHCP servers keep them
// in their store while they run, written at every sweep).
func printStats(nodes []*profiles.Node, stores map[string]string, asJSON bool, stdout, stderr io.Writer) int {
	var rows []statsRow
	for _, n := range nodes {
		st, done, err := openServerStore(stores[n.Name])
		if err != nil {
			fmt.Fprintf(stderr, "fieldcon leases: node %s: %v\n", n.Name, err)
			return exitCode(err)
		}
		s, ok, err := dhcp.LoadStats(st)
		done()
		if err != nil {
			fmt.Fprintf(stderr, "fieldcon leases: node %s: %v\n", n.Name, err)
			return exitFailure
		}
		if !ok {
			fmt.Fprintf(stderr, "fieldcon leases: node %s: no counters stored (the server stores them while it runs, every sweep_interval)\n", n.Name)
			continue
		}
		rows = append(rows, statsRow{Node: n.Name, StoredStats: s})
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			enc.Encode(r)
		}
		return exitOK
	}
	for _, r := range rows {
		s := r.Stats
		fmt.Fprintf(stdout, "%s: counters since %s, stored %s\n", r.Node, r.Since.Local().Format(time.DateTime), r.Updated.Local().Format(time.DateTime))
		tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
		for _, c := range []struct {
			name string
			n    int64
		}{
			{"received", s.Received}, {"undecodable", s.Undecodable}, {"malformed", s.Malformed},
			{"discovers", s.Discovers}, {"requests", s.Requests}, {"offers", s.Offers}, {"acks", s.Acks}, {"naks", s.Naks},
			{"silent", s.Silent}, {"send errors", s.SendErrors}, {"store errors", s.StoreErrors}, {"commits", s.Commits},
			{"slow replies (>1s)", s.SlowReplies},
		} {
			fmt.Fprintf(tw, "  %s\t%d\n", c.name, c.n)
		}
		why := make([]string, 0, len(s.SilentWhy))
		for k := range s.SilentWhy {
			why = append(why, k)
		}
		sort.Strings(why)
		for _, k := range why {
			fmt.Fprintf(tw, "    silent: %s\t%d\n", k, s.SilentWhy[k])
		}
		fmt.Fprintf(tw, "  max batch\t%d\n  max commit\t%s\n  max reply delay\t%s\n", s.MaxBatch, s.MaxCommit, s.MaxReplyDelay)
		tw.Flush()
	}
	return exitOK
}

var errStoreLocked = errors.New("store held by a running server")

// heldByServer reports whether a running server holds the store's lock
// (bbolt flocks its file exclusively), so the copy is read at once instead
// of after store.Open's lock timeout.
func heldByServer(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

func copyToTemp(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "fieldcon-leases-")
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, "copy.db")
	return tmp, os.WriteFile(tmp, b, 0o600)
}

// cmdForceRenew pushes an authenticated FORCERENEW (RFC 3203, RFC 6704) to
// one client of a server node, from the server's namespace, with the nonce
// kept with the client's lease. The client renews and applies what changed.
func cmdForceRenew(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f siteFlags
	fs := newFlags("forcerenew", stdout, stderr)
	f.register(fs, siteTexts{
		profile:  "the profile the server runs: a file path or an embedded profile's name",
		node:     "the dhcp_server node whose client to push (required)",
		nodeMeta: "SERVER",
		lab:      "reach the server inside the profile's lab, sending from its namespace (the lab must be up; without --lab: this machine's interfaces)",
		state:    "the state directory the running server was run with, whose lease holds the client's nonce (default: the one of the fieldcon that runs SERVER — fieldcon run, the console or trace --run)",
	})
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() != 1 {
		fs.usageError("name one client: its address, its client key (from `fieldcon leases`), its ESN or its MAC")
		return exitUsage
	}
	p, err := f.loadProfile()
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitUsage
	}
	nodes, err := dhcpServerNodes(p, f.nodes)
	if err != nil || len(nodes) != 1 {
		fmt.Fprintln(stderr, "fieldcon forcerenew: give exactly one --node with a [node.dhcp_server] section")
		return exitUsage
	}
	n := nodes[0]
	s, err := f.findServerStore("forcerenew", p, n.Name, fs.arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitCode(err)
	}
	if s.note != "" {
		fmt.Fprintln(stderr, "fieldcon forcerenew: "+s.note)
	}
	if s.running == nil && f.stateDir == "" {
		// Its stored leases may hold the nonce, but nobody would answer
		// the renewal the FORCERENEW asks for (RFC 3203 §3).
		fmt.Fprintf(stderr, "fieldcon forcerenew: node %s's server is not running, so the client's renewal would go unanswered; start it (`fieldcon run -p %s%s`), or give --state %s to push from its stored leases anyway\n",
			n.Name, f.profile, labFlag(f.useLab)+labNameFlag(f), s.dir)
		return exitFailure
	}
	storePath := filepath.Join(s.dir, n.Name+".db")
	leases, err := readLeases(storePath)
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitCode(err)
	}
	l, ok := findLease(leases, fs.arg(0))
	if !ok {
		fmt.Fprintf(stderr, "fieldcon forcerenew: no bound lease matches %q; `fieldcon leases %s` lists them\n", fs.arg(0), strings.Join(f.asArgs(), " "))
		return exitFailure
	}
	netns := ""
	if f.useLab {
		netns = lab.NetnsName(f.lab(p), n.Name)
	}
	h, err := linux.Open(netns)
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitFailure
	}
	defer h.Close()
	sid := serverID(*n.DHCPServer, h)
	if !sid.IsValid() {
		fmt.Fprintf(stderr, "fieldcon forcerenew: node %s has no server_id and no IPv4 address on %s to send from\n", n.Name, strings.Join(n.DHCPServer.Ifaces, ", "))
		return exitFailure
	}
	// The replay detection value comes from the counter the running server
	// shares (its store is locked): above all it and this command sent.
	rc, err := dhcp.OpenReplayCounter(dhcp.ReplayCounterPath(storePath), 1)
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitCode(err)
	}
	defer rc.Close()
	rc.AtLeast(l.Replay + 1)
	replay, err := rc.Next()
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitFailure
	}
	raw, to, err := dhcp.BuildForceRenew(l, sid, replay)
	if err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitFailure
	}
	// From port 67 as RFC 3203 says, but through a send-only raw socket: a
	// second socket bound to 67 next to a running server (SO_REUSEPORT)
	// would be handed some of the server's requests, and the client's
	// renewal, which comes back at once, is the likeliest to be one.
	if err := h.SendIPv4(dhcp.BuildDatagram(netip.AddrPortFrom(sid, dhcp.ServerPort), to, raw)); err != nil {
		fmt.Fprintln(stderr, "fieldcon forcerenew:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "FORCERENEW sent to %s (client %s)\n", to, l.Key)
	return exitOK
}

// serverID is the identifier the node's running dhcp_server gives its
// clients, read from the interfaces it serves on as the server does.
func serverID(p profiles.DHCPServer, h engine.Host) netip.Addr {
	ipv4 := map[string][]netip.Prefix{}
	for _, iface := range p.Ifaces {
		as, err := h.Addresses(iface)
		if err != nil {
			continue
		}
		for _, a := range as {
			if a.Prefix.Addr().Is4() {
				ipv4[iface] = append(ipv4[iface], a.Prefix)
			}
		}
	}
	return dhcp.ServerID(p, ipv4)
}

// findLease matches a bound lease by address, client key or ESN.
func findLease(leases []dhcp.ServerLease, q string) (dhcp.ServerLease, bool) {
	esnKey := dhcp.ClientKey(dhcp.EncodeClientID(q), nil)
	for _, l := range leases {
		if l.State != dhcp.LeaseBound {
			continue
		}
		if l.Address.String() == q || l.Key == q || l.Key == esnKey || strings.EqualFold(l.MAC, q) {
			return l, true
		}
	}
	return dhcp.ServerLease{}, false
}
