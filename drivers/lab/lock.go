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
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lab %s: lock: %w", name, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("lab %s is being run by another fieldcon%s; stop that one first, or run a second copy with --lab-name NAME: %w", name, lockHolder(path), ErrInUse)
			}
			return nil, fmt.Errorf("lab %s: lock %s: %w", name, path, err)
		}
		// The holder before us removes the file when it releases (so no
		// lock file outlives its lab); if it did so after we opened it, we
		// hold a lock on a file nobody else will find: open it again.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		f.Truncate(0)
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return func() {
			os.Remove(path) // while still locked: see above
			f.Close()       // closing drops the flock
		}, nil
	}
}

// samePath reports whether the open file f is still the file at path.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// lockHolder names the PID written in the lock file, if any.
func lockHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}
