package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrInUse is returned by Lock when another process runs the lab.
var ErrInUse = errors.New("lab in use")

// Lock marks the lab as run by this process until release is called or the
// process ends (an flock(2) on /run/fieldcon/labs/NAME.lock, so a crash
// frees it). Two engines on one lab would configure the same namespaces and
// undo each other's changes; the second one is refused instead, naming the
// first one's PID.
func Lock(name string) (release func(), err error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(markerDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: lock: %w", name, err)
	}
	path := filepath.Join(markerDir, name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab %s: lock: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lab %s is being run by another fieldcon%s; stop that one first, or run a second copy with --lab-name NAME: %w", name, holder, ErrInUse)
		}
		return nil, fmt.Errorf("lab %s: lock %s: %w", name, path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		f.Close() // closing drops the flock
	}, nil
}
