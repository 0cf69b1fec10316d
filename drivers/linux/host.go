// Package linux is the engine.Host of a real Linux machine: links, addresses,
// routes and neighbours through a netlink handle bound to one network
// namespace, and UDP, AF_PACKET and TUN sockets created inside that
// namespace. Every mutating method names its iproute2 equivalent.
package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// Host is one network namespace of the running kernel.
type Host struct {
	name   string         // namespace name, "" for the current one
	ns     netns.NsHandle // the namespace, kept open so it can't vanish under us
	handle *netlink.Handle
}

var _ engine.Host = (*Host)(nil)

// netnsDir is where iproute2 bind-mounts named namespaces (`ip netns add`).
const netnsDir = "/var/run/netns"

// Open returns the host for the named network namespace (as created by
// `ip netns add NAME`), or for the current namespace when name is "".
func Open(name string) (*Host, error) {
	var (
		ns  netns.NsHandle
		err error
	)
	if name == "" {
		ns, err = netns.Get()
	} else {
		if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			return nil, fmt.Errorf("open netns %q: not a namespace name", name)
		}
		ns, err = netns.GetFromPath(filepath.Join(netnsDir, name))
	}
	if err != nil {
		return nil, fmt.Errorf("open netns %q: %w", name, err)
	}
	// The current namespace needs no setns (which takes CAP_SYS_ADMIN): a
	// plain handle reaches it, so a user without root gets the kernel's real
	// answer (EPERM on the first change) instead of a failed setns.
	var h *netlink.Handle
	if name == "" {
		h, err = netlink.NewHandle()
	} else {
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		ns.Close()
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("open netlink in netns %q: %w (run as root)", name, err)
		}
		return nil, fmt.Errorf("open netlink in netns %q: %w", name, err)
	}
	// A netlink request that never gets an answer must not hang the engine.
	if err := h.SetSocketTimeout(10 * time.Second); err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("netlink socket timeout in netns %q: %w", name, err)
	}
	return &Host{name: name, ns: ns, handle: h}, nil
}

// Name implements engine.Host: the namespace name, "" for the current one.
func (h *Host) Name() string { return h.name }

// Close releases the netlink handle and the namespace file descriptor. It
// removes nothing from the namespace.
func (h *Host) Close() error {
	h.handle.Close()
	if err := h.ns.Close(); err != nil {
		return fmt.Errorf("close netns %q: %w", h.name, err)
	}
	return nil
}

// inNetns runs f on an OS thread that is inside the host's namespace. Sockets
// and TUN devices belong to the namespace of the thread that creates them, so
// they must be created there (DESIGN.md, notes from the field). f runs on a
// goroutine of its own: if restoring the thread's namespace fails, that
// goroutine exits still locked and the runtime discards the thread instead
// of letting a thread in the wrong namespace run other goroutines.
func (h *Host) inNetns(f func() error) error {
	if h.name == "" {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %q: %w", h.name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns after %q: %w", h.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// sysctlPath maps "net/ipv4/ip_forward" or "net.ipv4.ip_forward" to its file
// under /proc/sys. Only net/ keys are namespaced; the rest would change the
// whole machine, so they are refused.
func sysctlPath(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	clean := filepath.Clean("/" + k)
	if clean != "/"+k || !strings.HasPrefix(clean, "/net/") {
		return "", fmt.Errorf("sysctl %q: only keys under net/ belong to a network namespace", key)
	}
	return "/proc/sys" + clean, nil
}

// Sysctl reads a sysctl of the namespace.
//
// Equivalent to: `ip netns exec $ns sysctl -n $key`
func (h *Host) Sysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = h.inNetns(func() error {
		var err error
		b, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("sysctl %s in netns %q: %w", key, h.name, notExist(err))
	}
	return strings.TrimSpace(string(b)), nil
}

// SetSysctl writes a sysctl of the namespace.
//
// Equivalent to: `ip netns exec $ns sysctl -w $key=$value`
func (h *Host) SetSysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	err = h.inNetns(func() error {
		// /proc/sys files are resolved against the opening thread's netns.
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(value); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return fmt.Errorf("sysctl -w %s=%s in netns %q: %w", key, value, h.name, notExist(err))
	}
	return nil
}

// Command prepares a program to run inside the namespace.
//
// Equivalent to: `ip netns exec $ns $name $args...` (plain exec for the
// current namespace).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if h.name == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.name, name}, args...)...)
}

// notExist wraps errors that mean "no such object" with engine.ErrNotExist,
// keeping the kernel's message.
func notExist(err error) error {
	if err == nil {
		return nil
	}
	var lnf netlink.LinkNotFoundError
	switch {
	case errors.Is(err, engine.ErrNotExist):
		return err
	case errors.As(err, &lnf),
		errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH),
		errors.Is(err, unix.ENODEV), errors.Is(err, unix.EADDRNOTAVAIL),
		errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", engine.ErrNotExist, err)
	}
	return err
}

// retryDump repeats a netlink dump the kernel interrupted because the table
// changed meanwhile (NLM_F_DUMP_INTR); after a few tries the partial result
// is better than nothing.
func retryDump[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, nil
}
