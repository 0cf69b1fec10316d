// Command fieldcon is the field engineer's console: with no arguments it
// opens the TUI on the embedded demo lab; subcommands run the engine
// headless, manage labs and check profiles. Exit status: 0 done, 1 failure at
// run time, 2 bad usage or bad profile.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes (DESIGN.md "Interfaces people and scripts use").
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run -p PROFILE [--node N] [--lab] [--json] [--for D]  run the engine headless", cmdRun},
		{"lab", "lab up|down|status -p PROFILE [--json]            build, remove, list a lab", cmdLab},
		{"check", "check PROFILE                                       validate a profile", cmdCheck},
		{"profiles", "profiles                                            list embedded profiles", cmdProfiles},
		{"nat", "nat -p PROFILE --node N [--lab] [--json]            a tunnel server's NAT table", cmdNAT},
		{"leases", "leases -p PROFILE [--node N] [--lab] [--json] [--all]  a DHCP server's leases", cmdLeases},
		{"forcerenew", "forcerenew -p PROFILE --node SERVER [--lab] CLIENT  push a FORCERENEW to one client", cmdForceRenew},
		{"trace", "trace -p PROFILE [--lab] [--node N] [-i IFACE] [-f FILTER] [-w FILE.pcapng] [--for D]  live packet summaries", cmdTrace},
		{"version", "version                                             print the version", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fieldcon [-p PROFILE] [--lab]    the console (default: the embedded demo lab)")
	for _, c := range commands() {
		fmt.Fprintln(w, "       fieldcon "+c.usage)
	}
}

func main() {
	// SIGHUP: a dropped SSH session ends a headless run like Ctrl-C, with
	// its undo. SIGPIPE: a closed stdout becomes an EPIPE error that
	// closedPipe turns into the same, instead of killing the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		switch {
		case len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help"):
			usage(stdout)
			return exitOK
		}
		return cmdConsole(ctx, args, stdout, stderr)
	}
	if args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "fieldcon: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}
