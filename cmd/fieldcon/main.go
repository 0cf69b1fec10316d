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
	"strings"
	"syscall"
)

// Exit codes (DESIGN.md "Interfaces people and scripts use").
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is a subcommand: its usage line (fieldcon NAME SYNOPSIS), the
// summary `fieldcon help` lists, the paragraph its own help opens with, and
// what runs it.
type command struct {
	name     string
	synopsis string
	summary  string
	about    string
	run      func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func (c command) usageLine() string {
	if c.name == "console" {
		return "fieldcon " + c.synopsis
	}
	return strings.TrimSpace("fieldcon " + c.name + " " + c.synopsis)
}

func commands() []command {
	return []command{
		{"console", "[-p PROFILE] [--node NODE]... [--lab [--lab-name NAME]] [--state DIR] [--export-dir DIR]",
			"the console (also with no command; default: the embedded demo lab)",
			"Opens the console (the TUI) on a profile: with no -p, the embedded demo in its lab, built in network namespaces and removed on exit. The engine runs the profile's roles until q, then undoes what they changed. `fieldcon console` and `fieldcon` are the same.",
			cmdConsole},
		{"run", "-p PROFILE [--node NODE]... [--lab [--lab-name NAME]] [--state DIR] [--json] [--for D]",
			"run the engine headless",
			"Runs the profile's roles without the console and prints their events, one line each (with --json one JSON object each), until interrupted or --for has passed; then undoes what the roles changed, and removes the lab if this run built it. While it runs, `fieldcon leases`, `forcerenew` and `nat` find its --state by themselves.",
			cmdRun},
		{"lab", "up|down|status -p PROFILE [--lab-name NAME] [--json]",
			"build, remove, list a lab",
			"up builds the profile's lab: a network namespace per node (fc-LAB-NODE) and the links of its [lab] section, with fresh default stores. down removes it with the stores runs kept in /var/lib/fieldcon/labs/LAB, also after a crash. status lists its namespaces, links and addresses. up and down are refused while a fieldcon runs the lab.",
			cmdLab},
		{"check", "PROFILE",
			"validate a profile",
			"Validates a profile (a file path or an embedded profile's name): keys, value types, addresses, the references between sections. Lists its nodes and their roles when it is valid; otherwise prints each problem as file:line:col and exits 2.",
			cmdCheck},
		{"profiles", "",
			"list the embedded profiles",
			"Lists the profiles built into fieldcon, each with its description; give a name to -p or to `fieldcon check`.",
			cmdProfiles},
		{"nat", "-p PROFILE --node SERVER [--lab [--lab-name NAME]] [--state DIR] [--json]",
			"a tunnel server's NAT table",
			"Prints a tunnel_server node's NAT table: the kernel's conntrack entries of the tunnel's client pool, each with the tunnel index of the client it belongs to. The index comes from the running server, which publishes it beside its store: nat finds the store of the fieldcon that runs the node, or reads --state DIR.",
			cmdNAT},
		{"leases", "-p PROFILE [--node SERVER]... [--lab [--lab-name NAME]] [--state DIR] [--all] [--json | --stats]",
			"a DHCP server's leases",
			"Lists the leases of the profile's dhcp_server nodes, read from their stores (a copy, while a server holds its store). Without --state it reads the store of the running fieldcon that runs the node (fieldcon run, the console, trace --run), else the node's default store, and says which; when there is neither it names the --state to pass.",
			cmdLeases},
		{"forcerenew", "-p PROFILE --node SERVER [--lab [--lab-name NAME]] [--state DIR] CLIENT",
			"push a FORCERENEW to one client",
			"Sends one client of a running dhcp_server an authenticated FORCERENEW (RFC 3203, RFC 6704) from the server's address and namespace: the client renews at once and applies what changed. CLIENT is its address, its client key (from `fieldcon leases`), its ESN or its MAC. The nonce and the replay counter come from the running server's store: forcerenew finds the fieldcon that runs SERVER, or reads --state DIR.",
			cmdForceRenew},
		{"trace", "-p PROFILE [--lab [--lab-name NAME]] [--node NODE]... [-i IFACE]... [-f FILTER] [-w FILE.pcapng] [--for D] [--run]",
			"live packet summaries",
			"Captures on the interfaces of the profile's nodes, in their lab namespaces with --lab (this machine's with no --lab), and prints one decoded summary per packet that matches the filter, until interrupted or --for has passed. With --run it also runs the profile's roles, as `fieldcon run` does, and prints their events among the packets.",
			cmdTrace},
		{"version", "",
			"print the version",
			"Prints fieldcon's version, commit, platform and Go version.",
			cmdVersion},
	}
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fieldcon [-p PROFILE] [--lab]    the console (default: the embedded demo lab)")
	fmt.Fprintln(w, "       fieldcon COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`fieldcon help COMMAND` (or `fieldcon COMMAND --help`) prints a command's usage and flags.")
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
		return cmdHelp(ctx, args[1:], stdout, stderr)
	}
	if c, ok := lookupCommand(args[0]); ok {
		return c.run(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "fieldcon: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}
