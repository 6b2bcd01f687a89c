/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package realnode

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer opens connections from inside a network namespace: each dial runs
// on an OS thread that enters the namespace for the socket(2) and connect(2)
// and goes back to the process's own namespace afterwards. A socket stays in
// the namespace it was created in, so the connection can then be used from
// any goroutine. This is how the tests reach the API server, the Services
// and the pods, which exist only inside the node's namespace.
type Dialer struct {
	nsPath string
}

// NewDialer returns a Dialer for the network namespace at nsPath
// (/run/netns/NAME).
func NewDialer(nsPath string) *Dialer { return &Dialer{nsPath: nsPath} }

// DialContext dials network/addr inside the namespace.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := d.dialLocked(ctx, network, addr)
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

func (d *Dialer) dialLocked(ctx context.Context, network, addr string) (net.Conn, error) {
	target, err := os.Open(d.nsPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = target.Close() }()
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer func() { _ = own.Close() }()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", d.nsPath, err)
	}
	var nd net.Dialer
	conn, dialErr := nd.DialContext(ctx, network, addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: leave it locked, so that it
		// ends with this goroutine and nothing else runs on it.
		return conn, dialErr
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// Forward accepts connections on listen (an address on this machine, e.g.
// 127.0.0.1:8888) and connects each to target inside the namespace, until
// the listener is closed. It is how `make run NODE=1` lets kubectl and curl
// on the machine reach the API server and the auth Service.
func (d *Dialer) Forward(listen, target string) (net.Listener, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = in.Close() }()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				out, err := d.DialContext(ctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer func() { _ = out.Close() }()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); closeWrite(out); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return ln, nil
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
