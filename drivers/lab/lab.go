// Package lab builds a profile's [lab] topology on this machine: one network
// namespace per node (fc-<lab>-<node>) and a veth pair per link, created
// directly inside the namespaces so nothing ever appears in the root
// namespace. The kernel itself records which lab a namespace belongs to (an
// alias on its lo), so Down and Status work after the process that built the
// lab has died.
package lab

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/profiles"
)

// Lab is a built lab as read back from the kernel.
type Lab struct {
	Name    string `json:"name"`
	Profile string `json:"profile,omitempty"`
	Nodes   []Node `json:"nodes"`
}

// Node is one node's namespace and its links.
type Node struct {
	Name  string       `json:"name"`
	Netns string       `json:"netns"`
	Links []LinkStatus `json:"links"`
}

// LinkStatus is one interface of a node (lo is left out).
type LinkStatus struct {
	Name string `json:"name"`
	// Peer is the other end of a veth pair, "node:iface".
	Peer      string   `json:"peer,omitempty"`
	MTU       int      `json:"mtu"`
	Up        bool     `json:"up"`
	Addresses []string `json:"addresses,omitempty"`
}

// Netns returns the namespace name of a node of the lab. It never returns
// "" (which drivers/linux would take as the current namespace).
func (l *Lab) Netns(node string) string { return NetnsName(l.Name, node) }

// NetnsName names a node's namespace.
func NetnsName(lab, node string) string { return "fc-" + lab + "-" + node }

const (
	// netnsDir is where `ip netns add` bind-mounts named namespaces.
	netnsDir = "/var/run/netns"
	// markerDir holds a JSON note per lab for people and tools; nothing
	// depends on it being there.
	markerDir = "/run/fieldcon/labs"
	// aliasPrefix starts the alias of lo in each lab namespace:
	// "fieldcon-lab name=<lab> node=<node> profile=<profile>".
	aliasPrefix = "fieldcon-lab"
)

var (
	labName  = regexp.MustCompile(`^[a-z0-9-]{1,20}$`)
	nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)
)

// ValidName checks a lab name: lowercase letters, digits and '-', at most
// 20 characters, so that every namespace name is short and predictable.
func ValidName(name string) error {
	if !labName.MatchString(name) {
		return fmt.Errorf("lab name %q is not valid; want 1 to 20 lowercase letters, digits or '-'", name)
	}
	return nil
}

// marker is what the lab records in each namespace's lo alias; index is the
// node's position in the profile, so Status lists nodes in profile order.
type marker struct {
	lab, node, profile string
	index              int
}

func (m marker) String() string {
	// Profile names are free text; the alias is space-separated.
	profile := strings.Join(strings.Fields(m.profile), "_")
	return fmt.Sprintf("%s name=%s node=%s index=%d profile=%s", aliasPrefix, m.lab, m.node, m.index, profile)
}

func parseMarker(alias string) (marker, bool) {
	f := strings.Fields(alias)
	if len(f) == 0 || f[0] != aliasPrefix {
		return marker{}, false
	}
	m := marker{index: -1}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "name":
			m.lab = v
		case "node":
			m.node = v
		case "profile":
			m.profile = v
		case "index":
			if i, err := strconv.Atoi(v); err == nil {
				m.index = i
			}
		}
	}
	return m, m.lab != "" && m.node != ""
}

// nsHandle is a netlink handle bound to one lab namespace.
type nsHandle struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
}

func openNS(name string) (*nsHandle, error) {
	ns, err := netns.GetFromPath(filepath.Join(netnsDir, name))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in netns %s: %w", name, err)
	}
	return &nsHandle{name: name, ns: ns, h: h}, nil
}

func (n *nsHandle) close() {
	n.h.Close()
	n.ns.Close()
}

// ip runs iproute2; namespaces are added and deleted with it so that the
// /var/run/netns mount is set up the way every other tool expects.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err == nil {
		return nil
	}
	if msg := strings.TrimSpace(string(out)); msg != "" {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
}

// candidates lists the namespaces whose names start with fc-<lab>-.
func candidates(name string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	prefix := NetnsName(name, "")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && len(e.Name()) > len(prefix) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// member says whether namespace ns belongs to lab name, and its marker.
// Only a namespace whose lo carries this lab's marker does: a namespace of
// another lab that shares the prefix ("fc-a-b-x" is node "b-x" of lab "a" or
// node "x" of lab "a-b") carries that lab's marker, and one without any
// marker is somebody else's (a test's own namespace), so neither is ever
// touched. Up sets the marker right after `ip netns add`; only a kill in
// between could leave an unmarked namespace of a lab, which Down then leaves
// for `ip netns del`.
func member(name, ns string) (marker, bool) {
	m, ok := readMarker(ns)
	return m, ok && m.lab == name
}

// readMarker reads the lab marker of namespace ns, if it has one that maps
// back to ns itself.
func readMarker(ns string) (marker, bool) {
	n, err := openNS(ns)
	if err != nil {
		return marker{}, false
	}
	defer n.close()
	lo, err := n.h.LinkByName("lo")
	if err != nil {
		return marker{}, false
	}
	m, ok := parseMarker(lo.Attrs().Alias)
	return m, ok && NetnsName(m.lab, m.node) == ns
}

// namespaces lists the lab's namespaces with their markers.
func namespaces(name string) ([]string, []marker, error) {
	cands, err := candidates(name)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var marks []marker
	for _, ns := range cands {
		if m, ok := member(name, ns); ok {
			names = append(names, ns)
			marks = append(marks, m)
		}
	}
	return names, marks, nil
}

// List names the labs whose namespaces exist on this machine, from the
// markers in the kernel (so also labs whose builder died), sorted.
func List() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "fc-") {
			continue
		}
		if m, ok := readMarker(e.Name()); ok {
			seen[m.lab] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Exists reports whether any namespace of the lab exists.
func Exists(name string) bool {
	if ValidName(name) != nil {
		return false
	}
	names, _, err := namespaces(name)
	return err == nil && len(names) > 0
}

// Up builds the lab of profile p under the given lab name: a namespace per
// node with lo up and forwarding off, then per link a veth pair with the
// profile's interface names, MTU, state and netem loss/delay. On any error
// it removes what it built. It refuses to build over an existing lab.
func Up(ctx context.Context, p *profiles.Profile, name string) (*Lab, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if p.Lab == nil {
		return nil, fmt.Errorf("profile %s has no [lab] section", p.Name)
	}
	for _, n := range p.Nodes {
		if !nodeName.MatchString(n.Name) {
			return nil, fmt.Errorf("node name %q cannot name a namespace; want lowercase letters, digits and '-'", n.Name)
		}
	}
	if Exists(name) {
		return nil, fmt.Errorf("lab %s already exists (namespaces %s*); remove it first with `fieldcon lab down`", name, NetnsName(name, ""))
	}
	b := &builder{ctx: ctx, lab: name, profile: p.Name, nodes: map[string]*nsHandle{}}
	if err := b.build(p); err != nil {
		b.close()
		if derr := b.remove(); derr != nil {
			err = errors.Join(err, fmt.Errorf("removing the half-built lab: %w", derr))
		}
		return nil, err
	}
	b.close()
	writeMarkerFile(name, p)
	return Status(name)
}

type builder struct {
	ctx     context.Context
	lab     string
	profile string
	created []string // namespaces this builder added, for removal on error
	nodes   map[string]*nsHandle
}

func (b *builder) close() {
	for _, n := range b.nodes {
		n.close()
	}
}

func (b *builder) remove() error {
	var errs []error
	for _, ns := range b.created {
		if err := ip(context.Background(), "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	removeMarkerFile(b.lab)
	return errors.Join(errs...)
}

func (b *builder) build(p *profiles.Profile) error {
	for i, node := range p.Nodes {
		if err := b.addNode(i, node.Name); err != nil {
			return err
		}
	}
	for i, l := range p.Lab.Links {
		if err := b.addLink(l); err != nil {
			return fmt.Errorf("lab link %d (%s — %s): %w", i+1, l.A, l.B, err)
		}
	}
	return nil
}

func (b *builder) addNode(index int, node string) error {
	ns := NetnsName(b.lab, node)
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	if err := clearStaleNetns(ns); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	// Not cancellable: `ip netns add` creates the file under /var/run/netns
	// and then bind-mounts the namespace on it; killed in between (Ctrl-C
	// during `lab up`) it leaves a file that is no namespace, that nothing
	// records, and that makes every later `ip netns add` fail.
	if err := ip(context.Background(), "netns", "add", ns); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	b.created = append(b.created, ns)
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	n, err := openNS(ns)
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	b.nodes[node] = n
	lo, err := n.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("node %s: lo: %w", node, err)
	}
	// The marker goes first, so that Down recognises the namespace even if
	// this process is killed right after.
	m := marker{lab: b.lab, node: node, profile: b.profile, index: index}
	if err := n.h.LinkSetAlias(lo, m.String()); err != nil {
		return fmt.Errorf("node %s: ip link set lo alias: %w", node, err)
	}
	if err := n.h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("node %s: ip link set lo up: %w", node, err)
	}
	// A new namespace inherits IPv4 settings from the root namespace
	// (net.core.devconf_inherit_init_net=0), so a lab would behave
	// differently on a router, a Docker host or a distribution that turns
	// on reverse-path filtering. Pin them: nodes are hosts until their
	// profile says otherwise (static forwarding = true turns a router on
	// at run time), no reverse-path filter drops the asymmetric flows RHCP
	// and relays produce, and removing a primary address promotes a
	// secondary instead of deleting every address of its subnet (the
	// temporary RHCP address released next to the formal DHCP one;
	// systemd's default too). "default" covers the veths created next.
	h, err := linux.Open(n.name)
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	defer h.Close()
	for _, kv := range [][2]string{
		{"net/ipv4/ip_forward", "0"},
		{"net/ipv6/conf/all/forwarding", "0"},
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		{"net/ipv4/conf/all/promote_secondaries", "1"},
		{"net/ipv4/conf/default/promote_secondaries", "1"},
	} {
		if err := h.SetSysctl(kv[0], kv[1]); err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
	}
	return nil
}

func (b *builder) addLink(l profiles.LabLink) error {
	na, nb := b.nodes[l.A.Node], b.nodes[l.B.Node]
	if na == nil || nb == nil {
		return fmt.Errorf("link end names a node that is not in the profile")
	}
	mtu := l.MTU
	if mtu == 0 {
		mtu = 1500
	}
	// Created in A's namespace with the peer placed straight into B's: no
	// moment in the root namespace, and names need only be unique per
	// namespace (both ends may be "eth0").
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: l.A.Iface, MTU: mtu, HardwareAddr: MAC(l.A)},
		PeerName:         l.B.Iface,
		PeerHardwareAddr: MAC(l.B),
		PeerNamespace:    netlink.NsFd(int(nb.ns)),
	}
	if err := na.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("ip -n %s link add %s type veth peer name %s netns %s: %w", na.name, l.A.Iface, l.B.Iface, nb.name, err)
	}
	for _, end := range []struct {
		n     *nsHandle
		iface string
	}{{na, l.A.Iface}, {nb, l.B.Iface}} {
		link, err := end.n.h.LinkByName(end.iface)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", end.iface, end.n.name, err)
		}
		if l.Loss > 0 || l.Delay.Duration > 0 {
			err := addNetem(end.n, link, l.Loss, l.Delay.Duration)
			if errors.Is(err, errNoNetem) && l.Delay.Duration == 0 {
				err = addNftLoss(context.Background(), end.n.name, end.iface, l.Loss)
			}
			if err != nil {
				return err
			}
		}
		if !l.Down {
			if err := end.n.h.LinkSetUp(link); err != nil {
				return fmt.Errorf("ip -n %s link set %s up: %w", end.n.name, end.iface, err)
			}
		}
	}
	return nil
}

// MAC is the address a lab gives interface end: locally administered
// (02:…, IEEE 802 §8.2.2), derived from "node:iface", so traces and golden
// files show the same MACs on every run.
func MAC(end profiles.Endpoint) net.HardwareAddr {
	h := sha256.Sum256([]byte(end.String()))
	return net.HardwareAddr{0x02, 0xfc, h[0], h[1], h[2], h[3]}
}

// addNetem puts a netem root qdisc on one end: loss in percent, delay one
// way, so a link's round trip gets twice the delay.
//
// Equivalent to: `tc -n $ns qdisc add dev $iface root netem delay $delay loss $loss%`
func addNetem(n *nsHandle, link netlink.Link, loss float64, delay time.Duration) error {
	q := netlink.NewNetem(netlink.QdiscAttrs{
		LinkIndex: link.Attrs().Index,
		Handle:    netlink.MakeHandle(1, 0),
		Parent:    netlink.HANDLE_ROOT,
	}, netlink.NetemQdiscAttrs{
		Latency: uint32(delay / time.Microsecond),
		Loss:    float32(loss),
	})
	if err := n.h.QdiscAdd(q); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delay needs the kernel's netem qdisc, which this kernel lacks (load it with `modprobe sch_netem`, or remove delay from the lab link; loss alone works without netem): tc -n %s qdisc add dev %s root netem: %w: %w", n.name, link.Attrs().Name, errNoNetem, err)
		}
		return fmt.Errorf("tc -n %s qdisc add dev %s root netem delay %s loss %g%%: %w", n.name, link.Attrs().Name, delay, loss, err)
	}
	return nil
}

// errNoNetem marks a kernel without the netem qdisc (CONFIG_NET_SCH_NETEM).
var errNoNetem = errors.New("no netem qdisc")

// addNftLoss drops loss percent of the frames leaving iface, for kernels
// without netem: a netdev egress chain (Linux 5.16+) with a random number per
// frame. Both ends of a link get one, so each direction loses loss percent,
// as with netem on both ends. Egress runs before the kernel hands outgoing
// frames to packet-socket taps and the wire, so a dropped frame is seen by
// nobody — an ingress rule would not hide it from the receiver's AF_PACKET
// sockets, which get frames before the ingress hook. Frames sent from
// AF_PACKET sockets (DHCP clients) pass the egress hook too. The rules live in
// the lab's namespace and go with it.
//
// Equivalent to: `ip netns exec $ns nft add rule netdev fieldcon_lab loss_$iface numgen random mod 10000 < $loss*100 drop`
func addNftLoss(ctx context.Context, ns, iface string, loss float64) error {
	chain := "loss_" + iface
	script := fmt.Sprintf("add table netdev fieldcon_lab\n"+
		"add chain netdev fieldcon_lab %s { type filter hook egress device %q priority 0; policy accept; }\n"+
		"add rule netdev fieldcon_lab %s numgen random mod 10000 < %d counter drop\n",
		chain, iface, chain, int(loss*100+0.5))
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("loss %g%% on %s in %s without netem needs nftables (apt-get install nftables): nft: %w: %s", loss, iface, ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// endProcesses ends the processes running in lab namespace ns: SIGTERM,
// then SIGKILL for those still there after a second. Only processes whose
// network namespace is ns are signalled, by PID.
//
// Equivalent to: `ip netns pids $ns | xargs kill`
func endProcesses(ns string) error {
	pids := func() []int {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return nil
		}
		var list []int
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				list = append(list, pid)
			}
		}
		return list
	}
	left := pids()
	for _, pid := range left {
		unix.Kill(pid, unix.SIGTERM)
	}
	for deadline := time.Now().Add(time.Second); len(left) > 0 && time.Now().Before(deadline); left = pids() {
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range left {
		unix.Kill(pid, unix.SIGKILL)
	}
	if len(left) > 0 {
		time.Sleep(50 * time.Millisecond)
		if still := pids(); len(still) > 0 {
			return fmt.Errorf("processes %v still run in namespace %s after SIGKILL", still, ns)
		}
	}
	return nil
}

// clearStaleNetns removes /var/run/netns/ns when it is a file with no
// namespace mounted on it (left by an `ip netns add` killed half-way): no
// process can be using it, and it would block the build. A real namespace
// of that name without this lab's marker is left alone, with advice.
func clearStaleNetns(ns string) error {
	path := filepath.Join(netnsDir, ns)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	if fs.Type == unix.NSFS_MAGIC {
		return fmt.Errorf("namespace %s already exists and is not marked as this lab's (a build killed right after creating it, or somebody else's); if it is a leftover remove it with `ip netns del %s`", ns, ns)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the stale namespace file %s: %w", path, err)
	}
	return nil
}

// Down removes every namespace of the lab (their veths go with them) and the
// marker file. Processes still running inside (a peer such as dnsmasq whose
// fieldcon was killed with SIGKILL) are ended first: left alone they would
// keep serving in a nameless namespace. Removing a lab that is not there is
// not an error.
func Down(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	names, _, err := namespaces(name)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		if err := endProcesses(ns); err != nil {
			errs = append(errs, err)
		}
		if err := ip(context.Background(), "netns", "del", ns); err != nil {
			// Someone else may have removed it meanwhile.
			if _, serr := os.Stat(filepath.Join(netnsDir, ns)); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	removeMarkerFile(name)
	return errors.Join(errs...)
}

// Status reads the lab back from the kernel: its namespaces, their links,
// states, MTUs, addresses and which interface each veth is paired with.
func Status(name string) (*Lab, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	names, marks, err := namespaces(name)
	if err != nil {
		return nil, err
	}
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	// Profile order; namespaces without a marker go last, by name.
	sort.SliceStable(order, func(i, j int) bool {
		a, b := marks[order[i]].index, marks[order[j]].index
		return a >= 0 && (b < 0 || a < b)
	})
	sortedNames, sortedMarks := make([]string, len(names)), make([]marker, len(names))
	for i, o := range order {
		sortedNames[i], sortedMarks[i] = names[o], marks[o]
	}
	names, marks = sortedNames, sortedMarks
	if len(names) == 0 {
		return nil, fmt.Errorf("lab %s is not up (no namespace %s*)", name, NetnsName(name, ""))
	}
	l := &Lab{Name: name}
	handles := make([]*nsHandle, 0, len(names))
	defer func() {
		for _, h := range handles {
			h.close()
		}
	}()
	for i, ns := range names {
		h, err := openNS(ns)
		if err != nil {
			return nil, err
		}
		handles = append(handles, h)
		node := marks[i].node
		if node == "" {
			node = strings.TrimPrefix(ns, NetnsName(name, ""))
		}
		if marks[i].profile != "" {
			l.Profile = marks[i].profile
		}
		l.Nodes = append(l.Nodes, Node{Name: node, Netns: ns})
	}
	for i, h := range handles {
		links, err := nodeLinks(h, handles, l.Nodes)
		if err != nil {
			return nil, err
		}
		l.Nodes[i].Links = links
	}
	return l, nil
}

func nodeLinks(h *nsHandle, all []*nsHandle, nodes []Node) ([]LinkStatus, error) {
	list, err := h.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("ip -n %s link show: %w", h.name, err)
	}
	// The kernel names a veth's peer by its ifindex and the peer
	// namespace's id as seen from here (IFLA_LINK, IFLA_LINK_NETNSID).
	nsids := map[int]int{}
	for i, o := range all {
		if id, err := h.h.GetNetNsIdByFd(int(o.ns)); err == nil && id >= 0 {
			nsids[id] = i
		}
	}
	self := -1
	for i, o := range all {
		if o == h {
			self = i
		}
	}
	var out []LinkStatus
	for _, link := range list {
		a := link.Attrs()
		if a.EncapType == "loopback" {
			continue
		}
		ls := LinkStatus{Name: a.Name, MTU: a.MTU, Up: a.RawFlags&unix.IFF_UP != 0}
		if _, ok := link.(*netlink.Veth); ok && a.ParentIndex > 0 {
			peerNS := self
			if a.NetNsID >= 0 {
				if i, ok := nsids[a.NetNsID]; ok {
					peerNS = i
				} else {
					peerNS = -1
				}
			}
			if peerNS >= 0 {
				if p, err := all[peerNS].h.LinkByIndex(a.ParentIndex); err == nil {
					ls.Peer = nodes[peerNS].Name + ":" + p.Attrs().Name
				}
			}
		}
		addrs, err := h.h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("ip -n %s addr show dev %s: %w", h.name, a.Name, err)
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue
			}
			ls.Addresses = append(ls.Addresses, ad.IPNet.String())
		}
		out = append(out, ls)
	}
	return out, nil
}

// SetLinkUp brings one end of a lab link up or down (a cable pulled and
// plugged back; the other end loses carrier).
//
// Equivalent to: `ip -n fc-$lab-$node link set $iface up|down`
func SetLinkUp(l *Lab, end profiles.Endpoint, up bool) error {
	if l == nil || ValidName(l.Name) != nil {
		return fmt.Errorf("set lab link %s: not a lab", end)
	}
	if !nodeName.MatchString(end.Node) {
		return fmt.Errorf("set lab link %s: no such node", end)
	}
	n, err := openNS(l.Netns(end.Node))
	if err != nil {
		return fmt.Errorf("set lab link %s: %w", end, err)
	}
	defer n.close()
	link, err := n.h.LinkByName(end.Iface)
	if err != nil {
		return fmt.Errorf("set lab link %s: %w", end, err)
	}
	if up {
		err = n.h.LinkSetUp(link)
	} else {
		err = n.h.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("set lab link %s up=%t: %w", end, up, err)
	}
	return nil
}

type markerFile struct {
	Name    string   `json:"name"`
	Profile string   `json:"profile"`
	Source  string   `json:"source,omitempty"`
	Nodes   []string `json:"nodes"`
	PID     int      `json:"pid"`
	Created string   `json:"created"`
}

// writeMarkerFile records the lab for people and tools. Failing to write it
// does not fail Up: the kernel-side markers are what Down relies on.
func writeMarkerFile(name string, p *profiles.Profile) {
	m := markerFile{Name: name, Profile: p.Name, Source: p.Source, PID: os.Getpid(), Created: time.Now().UTC().Format(time.RFC3339)}
	for _, n := range p.Nodes {
		m.Nodes = append(m.Nodes, n.Name)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return
	}
	if os.MkdirAll(markerDir, 0o755) != nil {
		return
	}
	os.WriteFile(filepath.Join(markerDir, name+".json"), append(b, '\n'), 0o644)
}

func removeMarkerFile(name string) {
	os.Remove(filepath.Join(markerDir, name+".json"))
}
