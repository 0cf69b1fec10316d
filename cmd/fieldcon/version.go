package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stdout, stderr)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fs.usageError(fmt.Sprintf("unexpected argument %q", fs.arg(0)))
		return exitUsage
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "fieldcon %s%s %s/%s %s\n", version, rev, runtime.GOOS, runtime.GOARCH, runtime.Version())
	return exitOK
}
