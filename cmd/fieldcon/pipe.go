package main

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
)

// closedPipe ends a command when its output's reader goes away:
// `fieldcon run -p X --lab --json | head -3` must undo its changes and remove
// its lab, not die of SIGPIPE with both left behind. main turns SIGPIPE into
// EPIPE errors (signal.Notify); the first one cancels the command's context,
// as Ctrl-C would, and later output is discarded.
type closedPipe struct {
	w      io.Writer
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
}

// guardPipe wraps w and returns the context a command runs under.
func guardPipe(ctx context.Context, w io.Writer) (context.Context, io.Writer, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	return ctx, &closedPipe{w: w, cancel: cancel}, cancel
}

func (p *closedPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return len(b), nil
	}
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.closed = true
		p.cancel()
		return len(b), nil
	}
	return n, err
}
