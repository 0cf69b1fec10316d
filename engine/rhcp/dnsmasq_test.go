package rhcp

import (
	"errors"
	"strings"
	"testing"
)

func TestDnsmasqStartFailureSaysInstall(t *testing.T) {
	exit := errors.New("exit status 1")
	err := startFailure(exit, `exec of "dnsmasq" failed: No such file or directory`)
	if !strings.Contains(err.Error(), "apt-get install dnsmasq") || !errors.Is(err, exit) {
		t.Errorf("missing binary: %v", err)
	}
	err = startFailure(exit, "dnsmasq: failed to bind DHCP server socket: Address in use")
	if strings.Contains(err.Error(), "install") || !strings.Contains(err.Error(), "Address in use") {
		t.Errorf("bind failure: %v", err)
	}
}
