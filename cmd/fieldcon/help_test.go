package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestEachCommandHasItsOwnHelp (issue #13 item 13): `fieldcon help CMD`,
// `fieldcon CMD --help` and `fieldcon CMD -h` print CMD's own usage line and
// only the flags CMD takes, with texts that say what each does for CMD, to
// stdout with exit 0 (as `fieldcon --help` does). forcerenew used to show
// run's "run only this node" and "built if not up", and exit 2.
func TestEachCommandHasItsOwnHelp(t *testing.T) {
	runTexts := []string{"run only this node", "built if it is not up", "built if not up"}
	for _, tt := range []struct {
		cmd    string
		want   []string // in the help
		forbid []string // not in the help
	}{
		{"run", []string{"usage: fieldcon run -p PROFILE", "--node NODE", "run only this node", "--lab ", "built if it is not up", "--state DIR", "--for D", "--json"}, nil},
		{"console", []string{"usage: fieldcon [-p PROFILE]", "embedded demo", "--export-dir DIR", "--lab "}, []string{"--for", "--json"}},
		{"lab", []string{"usage: fieldcon lab up|down|status -p PROFILE", "--lab-name NAME", "--json"}, append([]string{"--node", "--state", "--lab "}, runTexts...)},
		{"check", []string{"usage: fieldcon check PROFILE", "file:line:col"}, []string{"--node", "--lab", "  -p PROFILE"}},
		{"profiles", []string{"usage: fieldcon profiles"}, []string{"--node", "  -p PROFILE"}},
		{"nat", []string{"usage: fieldcon nat -p PROFILE --node SERVER", "tunnel_server node whose NAT table", "--state DIR", "must be up"}, runTexts},
		{"leases", []string{"usage: fieldcon leases -p PROFILE", "dhcp_server node", "--state DIR", "running", "--stats", "--all"}, runTexts},
		{"forcerenew", []string{"usage: fieldcon forcerenew -p PROFILE --node SERVER", "CLIENT", "the dhcp_server node whose client to push", "must be up", "--state DIR", "running"}, append([]string{"--json", "--for"}, runTexts...)},
		{"trace", []string{"usage: fieldcon trace -p PROFILE", "capture only this node", "-i IFACE", "-f FILTER", "-w FILE", "--run"}, runTexts},
		{"version", []string{"usage: fieldcon version"}, []string{"--node", "  -p PROFILE"}},
	} {
		var forms [][]string
		if tt.cmd == "console" {
			forms = [][]string{{"help", "console"}}
		} else {
			forms = [][]string{{"help", tt.cmd}, {tt.cmd, "--help"}, {tt.cmd, "-h"}}
		}
		for _, args := range forms {
			code, stdout, stderr := runCLI(t, args...)
			if code != exitOK || stderr != "" {
				t.Errorf("fieldcon %s: exit %d, stderr %q; want help on stdout and exit 0", strings.Join(args, " "), code, stderr)
				continue
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("fieldcon %s: help lacks %q:\n%s", strings.Join(args, " "), w, stdout)
				}
			}
			for _, f := range tt.forbid {
				if strings.Contains(stdout, f) {
					t.Errorf("fieldcon %s: help has %q, which is not %s's:\n%s", strings.Join(args, " "), f, tt.cmd, stdout)
				}
			}
			// Go's default listing ("  -node value") is not what the
			// usage lines and the docs spell (--node NODE).
			if m := regexp.MustCompile(`(?m)^\s+-[a-z][a-z-]+ (string|value|duration|int)$`).FindString(stdout); m != "" {
				t.Errorf("fieldcon %s: Go's default flag listing %q", strings.Join(args, " "), m)
			}
		}
	}
}

// TestHelpListsEveryCommand: `fieldcon help` and `fieldcon --help` name
// every command and say how to get its help; an unknown topic is bad usage.
func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, stdout, _ := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("fieldcon %v: exit %d", args, code)
		}
		for _, c := range commands() {
			if !strings.Contains(stdout, "\n  "+c.name+" ") {
				t.Errorf("fieldcon %v does not list %s:\n%s", args, c.name, stdout)
			}
		}
		if !strings.Contains(stdout, "fieldcon help COMMAND") {
			t.Errorf("fieldcon %v does not say how to get a command's help:\n%s", args, stdout)
		}
	}
	if code, _, stderr := runCLI(t, "help", "bogus"); code != exitUsage || !strings.Contains(stderr, `no command "bogus"`) {
		t.Errorf("fieldcon help bogus: exit %d, stderr %q", code, stderr)
	}
	// A bad flag is a usage error that names the command's help.
	if code, _, stderr := runCLI(t, "forcerenew", "--bogus"); code != exitUsage || !strings.Contains(stderr, "fieldcon help forcerenew") {
		t.Errorf("fieldcon forcerenew --bogus: exit %d, stderr %q", code, stderr)
	}
}
