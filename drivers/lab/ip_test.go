package lab

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestIPErrorWithoutOutput: an ip command that never ran (interrupted
// before it started) reports the reason without a dangling ": ", and the
// cancellation stays visible to errors.Is.
func TestIPErrorWithoutOutput(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ip(ctx, "netns", "add", "fc-never-made")
	if err == nil {
		t.Fatal("ip with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %q does not wrap context.Canceled", err)
	}
	if strings.HasSuffix(err.Error(), ": ") || strings.HasSuffix(err.Error(), ":") {
		t.Errorf("error %q ends with an empty output", err)
	}
}
