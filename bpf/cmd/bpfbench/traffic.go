package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sender and receiver sit on different CPUs, as on a node where the pod and
// the softirq of the receiving side are not the same core; the node's
// forwarding runs in the sender's softirq (veth).
const senderCPU, receiverCPU = 0, 1

// udpRate sends count datagrams of payload bytes from pod a to pod b over
// IPv4 and returns the node's forwarding rate: datagrams it forwarded per
// second of sending.
func (tp *topo) udpRate(count, payload int) (float64, error) {
	var ln *net.UDPConn
	if err := inNetns(nsPath(tp.b), -1, func() (err error) {
		ln, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(podB4+":9500")))
		return err
	}); err != nil {
		return 0, fmt.Errorf("listening in pod b: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// A reader keeps the socket draining like a real receiver; it ends
		// when ln is closed.
		_ = inNetns(nsPath(tp.b), receiverCPU, func() error {
			buf := make([]byte, 2048)
			for {
				if _, err := ln.Read(buf); err != nil {
					return nil
				}
			}
		})
	})
	defer wg.Wait()
	defer ln.Close()

	before, err := tp.forwarded()
	if err != nil {
		return 0, err
	}
	var elapsed time.Duration
	err = inNetns(nsPath(tp.a), senderCPU, func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(podB4+":9500")))
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, payload)
		start := time.Now()
		for range count {
			if _, err := c.Write(buf); err != nil && !errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("sending: %w", err)
			}
		}
		elapsed = time.Since(start)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sending udp from pod a: %w", err)
	}
	after, err := tp.settledForwarded()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / elapsed.Seconds(), nil
}

// tcpRate moves total bytes from pod a to pod b over one IPv4 (or IPv6)
// connection and returns bits per second from the first write to the
// receiver's end of stream.
func (tp *topo) tcpRate(v6 bool, total int) (float64, error) {
	network, dst := "tcp4", podB4
	if v6 {
		network, dst = "tcp6", podB6
	}
	var ln net.Listener
	if err := inNetns(nsPath(tp.b), -1, func() (err error) {
		ln, err = net.Listen(network, net.JoinHostPort(dst, "9501"))
		return err
	}); err != nil {
		return 0, fmt.Errorf("listening in pod b: %w", err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		end time.Time
		err error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		r.err = inNetns(nsPath(tp.b), receiverCPU, func() error {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			r.n, err = io.Copy(io.Discard, c)
			r.end = time.Now()
			return err
		})
		got <- r
	}()
	var start time.Time
	err := inNetns(nsPath(tp.a), senderCPU, func() error {
		c, err := net.DialTimeout(network, ln.Addr().String(), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		start = time.Now()
		for sent := 0; sent < total; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
		return c.(*net.TCPConn).CloseWrite()
	})
	if err != nil {
		ln.Close()
		<-got
		return 0, fmt.Errorf("sending tcp from pod a: %w", err)
	}
	select {
	case r := <-got:
		if r.err != nil || r.n < int64(total) {
			return 0, fmt.Errorf("receiver got %d of %d bytes: %v", r.n, total, r.err)
		}
		return float64(r.n) * 8 / r.end.Sub(start).Seconds(), nil
	case <-time.After(2 * time.Minute):
		ln.Close()
		return 0, errors.New("receiver did not finish within 2 minutes")
	}
}

// fillFlows sends one datagram from pod a to each of n distinct addresses in
// fd00:ff::/64, which the node routes to pod b (pod b drops them): n distinct
// flows pass the node's POST_ROUTING hook.
func (tp *topo) fillFlows(n int) error {
	err := inNetns(nsPath(tp.a), senderCPU, func() error {
		c, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("["+podA6+"]:0")))
		if err != nil {
			return err
		}
		defer c.Close()
		base := netip.MustParseAddr(manyPrefix).As16()
		buf := make([]byte, 18)
		for i := range n {
			a := base
			binary.BigEndian.PutUint32(a[12:], uint32(i)+1)
			dst := netip.AddrPortFrom(netip.AddrFrom16(a), 9600)
			for try := 0; ; try++ {
				_, err := c.WriteToUDPAddrPort(buf, dst)
				if err == nil {
					break
				}
				if !errors.Is(err, syscall.ENOBUFS) || try == 100 {
					return fmt.Errorf("datagram %d: %w", i, err)
				}
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("filling flows from pod a: %w", err)
	}
	_, err = tp.settledForwarded()
	return err
}

// forwarded reads the node's Ip:ForwDatagrams + Ip6OutForwDatagrams.
func (tp *topo) forwarded() (uint64, error) {
	var snmp, snmp6 []byte
	err := inNetns(nsPath(tp.node), -1, func() (err error) {
		// /proc/thread-self/net is the reading thread's namespace.
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading node counters: %w", err)
	}
	var header []string
	var v4, v6 uint64
	for line := range strings.Lines(string(snmp)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == "ForwDatagrams" && i < len(f) {
				v4, _ = strconv.ParseUint(f[i], 10, 64)
			}
		}
		break
	}
	for line := range strings.Lines(string(snmp6)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Ip6OutForwDatagrams" {
			v6, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return v4 + v6, nil
}

// settledForwarded waits (bounded) until the node stops forwarding, so
// packets still in a backlog are included.
func (tp *topo) settledForwarded() (uint64, error) {
	prev, err := tp.forwarded()
	if err != nil {
		return 0, err
	}
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		cur, err := tp.forwarded()
		if err != nil {
			return 0, err
		}
		if cur == prev {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}
