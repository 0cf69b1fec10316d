// Package engine is fieldcon's core: nodes that run roles, the event bus every
// consumer (TUI, --json, journal) reads, state snapshots, and the Host
// interface through which roles touch a machine. Protocol code lives in
// engine/<capability> packages and never imports netlink or unix directly;
// drivers (drivers/linux, drivers/fake) implement Host.
package engine
