package main

import (
	"context"
	"fmt"
	"io"
)

// cmdConsole is `fieldcon` without a subcommand. Until the TUI lands it runs
// the demo lab headless and says so.
func cmdConsole(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "fieldcon: the console is not built yet; running the demo lab headless (fieldcon run -p demo --lab)")
	return cmdRun(ctx, append([]string{"-p", "demo", "--lab"}, args...), stdout, stderr)
}
