package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/profiles"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stdout, stderr)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() != 1 {
		fs.usageError("name one profile: a file path or an embedded profile's name")
		return exitUsage
	}
	p, err := profiles.Load(fs.arg(0))
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
	fs := newFlags("profiles", stdout, stderr)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fs.usageError(fmt.Sprintf("unexpected argument %q", fs.arg(0)))
		return exitUsage
	}
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
