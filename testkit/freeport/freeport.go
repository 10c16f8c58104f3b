// Package freeport finds loopback TCP ports that are free right now, for the processes the tests, the
// demo and the benchmarks start. A port found free can be taken by another process before it is used:
// callers that can, retry a start that fails to listen.
package freeport

import (
	"fmt"
	"net"
)

// Ports returns n distinct loopback ports that are free now. The listeners are held until all n are
// found, so the same port is never returned twice.
func Ports(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Addr returns "127.0.0.1:<port>" with a port free now.
func Addr() (string, error) {
	ports, err := Ports(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
}
