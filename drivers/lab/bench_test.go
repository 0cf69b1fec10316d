package lab_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

// BenchmarkUpDown builds and removes the three-node lab, side by side with
// the same topology built by the iproute2 commands a person would type (the
// peer), so the two can be reported as a ratio.
func BenchmarkUpDown(b *testing.B) {
	labtest.RequireRoot(b)
	p, err := parseProfile(threeNodes)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fieldcon", func(b *testing.B) {
		for b.Loop() {
			name := labtest.UniqueName("b")
			if _, err := lab.Up(context.Background(), p, name); err != nil {
				b.Fatal(err)
			}
			if err := lab.Down(name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("iproute2", func(b *testing.B) {
		for b.Loop() {
			name := labtest.UniqueName("b")
			s, r, d := lab.NetnsName(name, "server"), lab.NetnsName(name, "router"), lab.NetnsName(name, "device")
			cmds := [][]string{
				{"netns", "add", s}, {"netns", "add", r}, {"netns", "add", d},
				{"-n", s, "link", "set", "lo", "up"}, {"-n", r, "link", "set", "lo", "up"}, {"-n", d, "link", "set", "lo", "up"},
				{"-n", s, "link", "add", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "eth0", "netns", r},
				{"-n", s, "link", "set", "eth0", "up"}, {"-n", r, "link", "set", "eth0", "up"},
				{"-n", r, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", d},
				{"netns", "del", s}, {"netns", "del", r}, {"netns", "del", d},
			}
			for _, c := range cmds {
				if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
					b.Fatalf("ip %v: %v %s", c, err, out)
				}
			}
		}
	})
}
