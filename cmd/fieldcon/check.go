package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/profiles"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check PROFILE", stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: fieldcon check PROFILE   (a file path or an embedded profile's name)")
		return exitUsage
	}
	p, err := profiles.Load(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok — %d nodes\n", p.Source, len(p.Nodes))
	for _, n := range p.Nodes {
		fmt.Fprintf(stdout, "  %-12s %s\n", n.Name, strings.Join(roleNames(&n), ", "))
	}
	if p.Lab != nil {
		fmt.Fprintf(stdout, "  lab: %d links\n", len(p.Lab.Links))
		// The lab is named after the profile unless --lab-name says otherwise;
		// say so now rather than at `lab up`.
		if err := lab.ValidName(p.Name); err != nil {
			fmt.Fprintf(stdout, "  note: %v, so run the lab with --lab-name NAME\n", err)
		}
	}
	return exitOK
}

// roleNames lists the role sections a node has, from the profile's keys.
func roleNames(n *profiles.Node) []string {
	names := profiles.RoleKeys(n)
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"(no roles)"}
	}
	return names
}

func cmdProfiles(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	for _, name := range profiles.Embedded() {
		p, err := profiles.Load(name)
		if err != nil {
			fmt.Fprintf(stdout, "%-12s INVALID: %v\n", name, err)
			continue
		}
		fmt.Fprintf(stdout, "%-12s %s\n", name, p.Description)
	}
	return exitOK
}

// newFlags returns a flag set that prints its usage to stderr.
func newFlags(usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("fieldcon "+usage, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
