package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// runTexts are the site flags of the commands that run a profile's roles.
func runTexts() siteTexts {
	return siteTexts{
		profile:  "the profile to run: a file path or an embedded profile's name",
		node:     "run only this node (repeatable; default: every node, which takes --lab when there are several)",
		nodeMeta: "NODE",
		lab:      "run the nodes in the profile's lab namespaces; the lab is built if it is not up, and then removed when the run ends",
		state:    "directory of the nodes' stores (default: /var/lib/fieldcon/PROFILE, with --lab /var/lib/fieldcon/labs/LAB, emptied when the run builds the lab)",
	}
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f siteFlags
	var (
		asJSON bool
		dur    time.Duration
	)
	fs := newFlags("run", stdout, stderr)
	f.register(fs, runTexts())
	fs.boolVar(&asJSON, "json", "print one JSON event per line")
	fs.durationVar(&dur, "for", "D", "stop after this long, e.g. 30s (default: until interrupted)")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fs.usageError(fmt.Sprintf("unexpected argument %q", fs.arg(0)))
		return exitUsage
	}
	if dur < 0 {
		fmt.Fprintf(stderr, "fieldcon run: --for %s is negative; give how long to run, e.g. --for 30s, or leave it out to run until interrupted\n", dur)
		return exitUsage
	}
	ctx, stdout, cancel := guardPipe(ctx, stdout)
	defer cancel()
	bus := engine.NewBus(10000)
	sub := bus.Subscribe(65536, true)
	var wg sync.WaitGroup
	failed := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		failed = printEvents(sub.C, stdout, asJSON)
	}()
	code := runSite(ctx, &f, bus, dur, stderr)
	bus.Close()
	wg.Wait()
	if code == exitOK && failed {
		code = exitFailure
	}
	return code
}

// runSite opens the site, runs it until ctx ends or dur passes, and tears it
// down (undo, lab removal).
func runSite(ctx context.Context, f *siteFlags, bus *engine.Bus, dur time.Duration, stderr io.Writer) int {
	s, err := f.open(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	if n := s.note(); n != "" {
		fmt.Fprintln(stderr, "fieldcon: "+n)
	}
	if dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dur)
		defer cancel()
	}
	code := exitOK
	if err := s.site.Engine.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "fieldcon: undo: %v\n", err)
		code = exitFailure
	}
	if err := s.close(); err != nil {
		fmt.Fprintf(stderr, "fieldcon: lab down: %v\n", err)
		code = exitFailure
	}
	return code
}

// printEvents writes events until c closes; it reports whether any role
// failed (an error event).
func printEvents(c <-chan engine.Event, w io.Writer, asJSON bool) (failed bool) {
	enc := json.NewEncoder(w)
	for e := range c {
		if e.Kind == engine.KindError {
			failed = true
		}
		if asJSON {
			enc.Encode(e)
			continue
		}
		fmt.Fprintln(w, formatEvent(e))
	}
	return failed
}

// formatEvent is the human one-line form: time node kind key=value...
func formatEvent(e engine.Event) string {
	return fmt.Sprintf("%s %-8s %-22s", e.Time.Format("15:04:05.000"), e.Node, e.Kind) + eventFields(e)
}

// eventFields is an event's fields as " key=value", in FieldNames order.
func eventFields(e engine.Event) string {
	var b strings.Builder
	for _, k := range e.FieldNames() {
		b.WriteString(" " + k + "=" + fieldText(e.Fields[k]))
	}
	return b.String()
}

// fieldText writes a field value for people: scalars as they are, maps and
// lists as compact JSON (`changed={"address":{"new":…,"old":…}}` rather than
// Go's `map[address:map[new:… old:…]]`).
func fieldText(v any) string {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}
