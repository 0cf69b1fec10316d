package lab_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

// TestDownEndsProcessesInside: a process left running in a lab namespace
// (a peer whose fieldcon was killed with SIGKILL) is ended by Down, instead
// of serving on in a nameless namespace.
func TestDownEndsProcessesInside(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("p")
	if _, err := lab.Up(context.Background(), parse(t, threeNodes), name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Down(name) })
	cmd := exec.Command("ip", "netns", "exec", lab.NetnsName(name, "router"), "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	time.Sleep(200 * time.Millisecond) // let ip exec sleep inside the namespace
	if err := lab.Down(name); err != nil {
		t.Fatalf("Down: %v", err)
	}
	select {
	case err := <-exited:
		if err == nil {
			t.Error("the process inside exited cleanly; want it ended by a signal")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the process inside the lab still runs after Down")
	}
	if left := leftovers(name); len(left) != 0 {
		t.Errorf("namespaces left: %v", left)
	}
}
