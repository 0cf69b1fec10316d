package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// cmdFlags is one command's flag set with the help it prints: its own usage
// line, what it does, and its flags with texts written for it (a flag such
// as --node means "run this node" to run and "push this server's client" to
// forcerenew).
type cmdFlags struct {
	fs     *flag.FlagSet
	cmd    command
	meta   map[string]string // flag → the placeholder of its value (NODE, DIR)
	order  []string          // the flags as declared: the help lists them so, -p first
	stdout io.Writer
	stderr io.Writer
}

// newFlags returns the flag set of the command named name (see commands).
// -h and --help print its help to stdout and exit 0, like `fieldcon -h`.
func newFlags(name string, stdout, stderr io.Writer) *cmdFlags {
	c, ok := lookupCommand(name)
	if !ok {
		panic("fieldcon: no command " + name) // a programming error, caught by the help test
	}
	fs := flag.NewFlagSet("fieldcon "+name, flag.ContinueOnError)
	// Errors and help are printed by parse, in the form of our usage lines.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{fs: fs, cmd: c, meta: map[string]string{}, stdout: stdout, stderr: stderr}
}

func (c *cmdFlags) stringVar(p *string, name, meta, usage string) {
	c.fs.StringVar(p, name, "", usage)
	c.declare(name, meta)
}

func (c *cmdFlags) listVar(p *stringList, name, meta, usage string) {
	c.fs.Var(p, name, usage)
	c.declare(name, meta)
}

func (c *cmdFlags) boolVar(p *bool, name, usage string) {
	c.fs.BoolVar(p, name, false, usage)
	c.declare(name, "")
}

func (c *cmdFlags) durationVar(p *time.Duration, name, meta, usage string) {
	c.fs.DurationVar(p, name, 0, usage)
	c.declare(name, meta)
}

func (c *cmdFlags) intVar(p *int, name, meta, usage string) {
	c.fs.IntVar(p, name, 0, usage)
	c.declare(name, meta)
}

func (c *cmdFlags) declare(name, meta string) {
	c.meta[name] = meta
	c.order = append(c.order, name)
}

// parse parses args. When it returns false the command is done and returns
// code: 0 after printing the help asked for, 2 after a bad flag.
func (c *cmdFlags) parse(args []string) (code int, ok bool) {
	err := c.fs.Parse(args)
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		c.help(c.stdout)
		return exitOK, false
	default:
		c.usageError(err.Error())
		return exitUsage, false
	}
}

// usageError prints a usage problem with the command's usage line and where
// its help is.
func (c *cmdFlags) usageError(msg string) {
	fmt.Fprintf(c.stderr, "fieldcon %s: %s\n", c.cmd.name, msg)
	fmt.Fprintf(c.stderr, "usage: %s\n`fieldcon help %s` describes its flags\n", c.cmd.usageLine(), c.cmd.name)
}

func (c *cmdFlags) arg(i int) string { return c.fs.Arg(i) }
func (c *cmdFlags) nArg() int        { return c.fs.NArg() }

// help prints the command's usage line, what it does and its flags.
func (c *cmdFlags) help(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n", c.cmd.usageLine())
	fmt.Fprintln(w, wrap(c.cmd.about, "", 78))
	if len(c.order) == 0 {
		return
	}
	fmt.Fprintln(w, "\nflags:")
	for _, name := range c.order {
		fl := c.fs.Lookup(name)
		spelled := "-" + fl.Name
		if len(fl.Name) > 1 {
			spelled = "--" + fl.Name
		}
		if m := c.meta[fl.Name]; m != "" {
			spelled += " " + m
		}
		if len(spelled) <= 16 {
			fmt.Fprintf(w, "  %-16s  %s\n", spelled, wrap(fl.Usage, strings.Repeat(" ", 20), 78)[20:])
			continue
		}
		fmt.Fprintf(w, "  %s\n%s\n", spelled, wrap(fl.Usage, strings.Repeat(" ", 20), 78))
	}
}

// wrap breaks text into lines of at most width columns, each starting with
// indent; a blank line in text starts a new paragraph.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	for i, para := range strings.Split(text, "\n\n") {
		if i > 0 {
			b.WriteString("\n\n")
		}
		line := indent
		for _, word := range strings.Fields(para) {
			if len(line) > len(indent) && len(line)+1+len(word) > width {
				b.WriteString(line + "\n")
				line = indent
			}
			if len(line) > len(indent) {
				line += " "
			}
			line += word
		}
		b.WriteString(line)
	}
	return b.String()
}

// cmdHelp is `fieldcon help [COMMAND]`.
func cmdHelp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "fieldcon help: one command at a time, not %q\n", strings.Join(args, " "))
		return exitUsage
	}
	c, ok := lookupCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "fieldcon help: no command %q; the commands are: %s\n", args[0], strings.Join(commandNames(), ", "))
		return exitUsage
	}
	// Every command prints its help for --help; lab's takes a verb first,
	// and takes --help in its place too.
	return c.run(ctx, []string{"--help"}, stdout, stderr)
}
