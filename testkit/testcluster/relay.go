package testcluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/zonetoll/zonetoll/shared/netns"
)

// apiRelay makes the API server, which listens on the host's loopback, reachable from inside a network
// namespace at the same address: it listens on 127.0.0.1:<the API server's port> in the namespace and
// copies each connection to the real server, dialled from the caller's namespace. TLS passes through
// untouched, so a kubeconfig written for the host works unchanged in the namespace, and nothing links
// the namespace to the host's network.
type apiRelay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startAPIRelay(netnsPath, listen, target string) (*apiRelay, error) {
	// The socket stays in the node's namespace for its life, whichever thread later accepts on it.
	var ln net.Listener
	err := netns.Do(netnsPath, func() (err error) {
		ln, err = net.Listen("tcp", listen)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relaying the API server into %s: %w", netnsPath, err)
	}
	r := &apiRelay{ln: ln, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return // closed
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.pipe(in, target)
			}()
		}
	}()
	return r, nil
}

func (r *apiRelay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	if add {
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
	return true
}

func (r *apiRelay) pipe(in net.Conn, target string) {
	defer in.Close()
	out, err := net.Dial("tcp", target)
	if err != nil {
		return // the API server is down (a restart); the client retries
	}
	defer out.Close()
	if !r.track(in, true) || !r.track(out, true) {
		return
	}
	defer r.track(in, false)
	defer r.track(out, false)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done
	<-done
}

// close stops accepting, ends every relayed connection and waits for the copies.
func (r *apiRelay) close() error {
	err := r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
