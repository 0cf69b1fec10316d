package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fieldcon/fieldcon/drivers/lab"
)

// labNameFlag repeats --lab-name for a command line the user can copy.
func labNameFlag(f siteFlags) string {
	if f.labName == "" {
		return ""
	}
	return " --lab-name " + f.labName
}

func cmdLab(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		f      siteFlags
		asJSON bool
	)
	fs := newFlags("lab", stdout, stderr)
	f.register(fs, siteTexts{
		profile: "the profile whose lab it is: a file path or an embedded profile's name",
		labName: "the lab's name, whose namespaces are fc-NAME-NODE (default: the profile's name)",
	})
	fs.boolVar(&asJSON, "json", "print the lab as JSON (up, status)")
	if len(args) == 0 {
		fs.usageError("say up, down or status")
		return exitUsage
	}
	verb := args[0]
	if verb[0] == '-' {
		// Flags before the verb: only for the help, which needs none.
		if code, ok := fs.parse(args); !ok {
			return code
		}
		fs.usageError("say up, down or status before the flags")
		return exitUsage
	}
	if code, ok := fs.parse(args[1:]); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fmt.Fprintf(stderr, "fieldcon lab %s: unexpected argument %q\n", verb, fs.arg(0))
		return exitUsage
	}
	p, err := f.loadProfile()
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon: %v\n", err)
		return exitUsage
	}
	if p.Lab == nil {
		fmt.Fprintf(stderr, "fieldcon: profile %s has no [lab] section\n", p.Source)
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "fieldcon: %v\n", needRoot("labs need root for their network namespaces"))
		return exitUsage
	}
	name, err := f.checkedLab(p)
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon: %v\n", err)
		return exitUsage
	}
	var l *lab.Lab
	switch verb {
	case "up":
		// Held while building, so two builds of one lab never interleave
		// (and never while an engine runs it).
		unlock, lerr := lab.Lock(name)
		if lerr != nil {
			fmt.Fprintf(stderr, "fieldcon: lab up: %v\n", lerr)
			return exitFailure
		}
		defer unlock()
		if l, err = lab.Up(ctx, p, name); err == nil {
			err = resetLabState(p, name)
		}
	case "down":
		// A live fieldcon running the lab removes it itself when stopped;
		// pulling the namespaces from under it would strand its undo.
		unlock, lerr := lab.Lock(name)
		if lerr != nil {
			fmt.Fprintf(stderr, "fieldcon: lab down: %v\n", lerr)
			return exitFailure
		}
		defer unlock()
		// The lab's default stores go with it: "down leaves nothing
		// behind" (DESIGN.md), and a lab built again starts afresh anyway.
		up := lab.Exists(name)
		if up {
			err = lab.Down(name)
		}
		if err == nil {
			err = resetLabState(p, name)
		}
		if err == nil {
			if up {
				fmt.Fprintf(stdout, "lab %s removed\n", name)
			} else {
				fmt.Fprintf(stdout, "lab %s is not up; nothing to remove\n", name)
			}
			return exitOK
		}
	case "status":
		if !lab.Exists(name) {
			fmt.Fprintf(stderr, "fieldcon: lab %s is not up; build it with `fieldcon lab up -p %s%s` or run it with `fieldcon run -p %s --lab%s`\n",
				name, f.profile, labNameFlag(f), f.profile, labNameFlag(f))
			return exitFailure
		}
		l, err = lab.Status(name)
	default:
		fmt.Fprintf(stderr, "fieldcon: unknown lab command %q; want up, down or status\n", verb)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon: lab %s: %v\n", verb, err)
		return exitFailure
	}
	if asJSON {
		json.NewEncoder(stdout).Encode(l)
		return exitOK
	}
	fmt.Fprintf(stdout, "lab %s (%d nodes)\n", l.Name, len(l.Nodes))
	for _, n := range l.Nodes {
		fmt.Fprintf(stdout, "  %-12s netns %s\n", n.Name, n.Netns)
		for _, ln := range n.Links {
			state := "down"
			if ln.Up {
				state = "up"
			}
			fmt.Fprintf(stdout, "    %-10s %-4s mtu %-5d peer %-14s %s\n", ln.Name, state, ln.MTU, ln.Peer, strings.Join(ln.Addresses, " "))
		}
	}
	return exitOK
}
