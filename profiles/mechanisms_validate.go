package profiles

import "fmt"

// mechanisms checks a node's mechanisms list against its sections (DESIGN.md
// §1 "Arbitration": all listed mechanisms start, the first formal address
// wins, the others stop).
func (v *validator) mechanisms(path string, n *Node) {
	seen := map[string]bool{}
	for i, m := range n.Mechanisms {
		at := fmt.Sprintf("%s.mechanisms[%d]", path, i)
		if seen[m] {
			v.errorf(at, "mechanism %q is listed twice; list each once", m)
		}
		seen[m] = true
		if m == "static" && n.Static == nil {
			v.errorf(at, "mechanism \"static\" needs a [node.static] section with the address")
		}
	}
	// Without a list both clients would run unarbitrated and each put its
	// own address on the device: two formal addresses, no winner.
	if len(n.Mechanisms) == 0 && n.RHCPClient != nil && n.DHCPClient != nil {
		v.errorf(path+".name", "node %q has both [node.rhcp_client] and [node.dhcp_client]; list them in mechanisms (e.g. mechanisms = [\"rhcp\", \"dhcp\"]) so the first formal address wins and the other stops", n.Name)
	}
}
