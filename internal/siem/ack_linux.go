//go:build linux

package siem

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ackSupported reports whether waitAcked sees the collector's TCP
// acknowledgements; where it does not, a batch counts as delivered once
// written and the connection is probed before each batch as well.
const ackSupported = true

// tcpEstablished is TCP_ESTABLISHED (include/net/tcp_states.h).
const tcpEstablished = 1

// Polling of the send queue: from ackPollMin doubling to ackPollMax.
const (
	ackPollMin = 50 * time.Microsecond
	ackPollMax = 10 * time.Millisecond
)

// tcpState returns the bytes c has sent (or queued) that the peer has not
// acknowledged (SIOCOUTQ), or an error if the connection is no longer
// ESTABLISHED: the collector closed it or reset it.
func tcpState(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		info       *unix.TCPInfo
		queued     int
		ierr, qerr error
	)
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	}); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, fmt.Errorf("TCP_INFO: %w", ierr)
	}
	if info.State != tcpEstablished {
		return 0, fmt.Errorf("collector closed the connection (TCP state %d)", info.State)
	}
	if qerr != nil {
		return 0, fmt.Errorf("SIOCOUTQ: %w", qerr)
	}
	return queued, nil
}

// waitAcked waits until the peer has acknowledged every byte written to
// c, failing after limit, when the connection ends, or when ctx ends.
func waitAcked(ctx context.Context, c syscall.Conn, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pause := ackPollMin
	for {
		queued, err := tcpState(c)
		if err != nil {
			return err
		}
		if queued == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("collector has not acknowledged %d bytes after %v", queued, limit)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		pause = min(pause*2, ackPollMax)
	}
}
