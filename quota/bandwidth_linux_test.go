package quota

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/units"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nsPair is two network namespaces the test made, standing in for the
// host and a container, joined by a veth pair.
type nsPair struct {
	host, ctr     netns.NsHandle
	hh, ch        *netlink.Handle
	hostVeth      string
	hostIP, ctrIP net.IP
}

// inNS runs fn with the calling goroutine's thread in ns. Sockets and
// netlink requests made by fn belong to ns.
func inNS(t *testing.T, ns netns.NsHandle, fn func() error) error {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter netns: %v", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the goroutine instead of
		// running other goroutines in the wrong namespace.
		t.Fatalf("leave netns: %v", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// newNSPair makes the two namespaces and the veth pair; they vanish with
// the namespaces when the test ends, ifb devices inside included.
func newNSPair(t *testing.T) *nsPair {
	t.Helper()
	requireRoot(t)
	p := &nsPair{hostVeth: "vhost" + strconv.Itoa(os.Getpid()%100000), hostIP: net.IPv4(10, 213, 0, 1), ctrIP: net.IPv4(10, 213, 0, 2)}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	p.host, err = netns.New()
	if err == nil {
		p.ctr, err = netns.New()
	}
	if serr := netns.Set(orig); serr != nil {
		t.Fatalf("leave netns: %v", serr)
	}
	orig.Close()
	runtime.UnlockOSThread()
	if err != nil {
		skipOrFail(t, "create network namespace: "+err.Error())
	}
	t.Cleanup(func() { p.host.Close(); p.ctr.Close() })
	if p.hh, err = netlink.NewHandleAt(p.host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.hh.Close)
	if p.ch, err = netlink.NewHandleAt(p.ctr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.ch.Close)

	attrs := netlink.NewLinkAttrs()
	attrs.Name = p.hostVeth
	if err := p.hh.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(p.ctr))}); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		ip   net.IP
	}{{p.hh, p.hostVeth, p.hostIP}, {p.ch, "eth0", p.ctrIP}} {
		link, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := side.h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: side.ip, Mask: net.CIDRMask(30, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := side.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// throughput sends n bytes over TCP from a socket in ns from to a listener
// at ip in ns to, and returns the rate the receiver saw in bits per second,
// from its first byte to the last.
func throughput(t *testing.T, from, to netns.NsHandle, ip net.IP, n int64) float64 {
	t.Helper()
	var ln net.Listener
	if err := inNS(t, to, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		bytes int64
		dur   time.Duration
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		// The clock starts at the first byte, so the handshake and the
		// sender's start-up are not counted.
		if _, err := c.Read(buf); err != nil {
			done <- result{err: err}
			return
		}
		start := time.Now()
		rest, err := io.CopyBuffer(io.Discard, c, buf)
		done <- result{bytes: rest, dur: time.Since(start), err: err}
	}()
	var conn net.Conn
	if err := inNS(t, from, func() (err error) {
		conn, err = net.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < n; {
		k, err := conn.Write(buf[:min(int64(len(buf)), n-sent)])
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		sent += int64(k)
	}
	conn.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("receive: %v", r.err)
	}
	return float64(r.bytes*8) / r.dur.Seconds()
}

// rates measures both directions: into the container (host to container,
// leaving through the host veth) and out of it.
func (p *nsPair) rates(t *testing.T, n int64) (in, out float64) {
	t.Helper()
	in = throughput(t, p.host, p.ctr, p.ctrIP, n)
	out = throughput(t, p.ctr, p.host, p.hostIP, n)
	t.Logf("into container %.2f mbit/s, out of container %.2f mbit/s", in/1e6, out/1e6)
	return in, out
}

// shaping reports what SetBandwidth left on the host side.
func (p *nsPair) shaping(t *testing.T) (rootTbf, ingress, ifb bool) {
	t.Helper()
	link, err := p.hh.LinkByName(p.hostVeth)
	if err != nil {
		t.Fatal(err)
	}
	qdiscs, err := p.hh.QdiscList(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qdiscs {
		switch {
		case q.Type() == "tbf" && q.Attrs().Parent == netlink.HANDLE_ROOT:
			rootTbf = true
		case q.Type() == "ingress":
			ingress = true
		}
	}
	_, err = p.hh.LinkByName(IFBName(p.hostVeth))
	return rootTbf, ingress, err == nil
}

func TestBandwidthCap(t *testing.T) {
	p := newNSPair(t)
	const limit = 10_000_000 // 10mbit
	const n = 3 << 20

	in, out := p.rates(t, 16<<20)
	if in < 5*float64(limit) || out < 5*float64(limit) {
		t.Fatalf("uncapped veth carries only %.1f / %.1f mbit/s; cannot tell a cap from the link", in/1e6, out/1e6)
	}

	if err := inNS(t, p.host, func() error { return SetBandwidth(p.hostVeth, limit, limit) }); err != nil {
		t.Fatal(err)
	}
	if tbf, ingress, ifb := p.shaping(t); !tbf || !ingress || !ifb {
		t.Fatalf("after SetBandwidth: root tbf %v, ingress qdisc %v, ifb %v; want all", tbf, ingress, ifb)
	}
	// Setting it again replaces, not stacks.
	if err := inNS(t, p.host, func() error { return SetBandwidth(p.hostVeth, limit, limit) }); err != nil {
		t.Fatalf("SetBandwidth again: %v", err)
	}
	in, out = p.rates(t, n)
	for _, r := range []struct {
		dir  string
		rate float64
	}{{"into the container", in}, {"out of the container", out}} {
		if r.rate < 0.8*float64(limit) || r.rate > 1.2*float64(limit) {
			t.Errorf("%s: %.2f mbit/s, want within 20%% of %s", r.dir, r.rate/1e6, units.FormatRate(limit))
		}
	}

	// Only one direction capped: the ifb goes.
	if err := inNS(t, p.host, func() error { return SetBandwidth(p.hostVeth, limit, 0) }); err != nil {
		t.Fatal(err)
	}
	if tbf, ingress, ifb := p.shaping(t); !tbf || ingress || ifb {
		t.Fatalf("after removing the egress cap: root tbf %v, ingress qdisc %v, ifb %v; want only the tbf", tbf, ingress, ifb)
	}

	if err := inNS(t, p.host, func() error { return ClearBandwidth(p.hostVeth) }); err != nil {
		t.Fatal(err)
	}
	if tbf, ingress, ifb := p.shaping(t); tbf || ingress || ifb {
		t.Fatalf("after ClearBandwidth: root tbf %v, ingress qdisc %v, ifb %v; want none", tbf, ingress, ifb)
	}
	if err := inNS(t, p.host, func() error { return ClearBandwidth(p.hostVeth) }); err != nil {
		t.Fatalf("ClearBandwidth twice: %v", err)
	}
	in, out = p.rates(t, 16<<20)
	if in < 5*float64(limit) || out < 5*float64(limit) {
		t.Fatalf("after ClearBandwidth still %.1f / %.1f mbit/s", in/1e6, out/1e6)
	}
}

func TestPruneBandwidth(t *testing.T) {
	p := newNSPair(t)
	if err := inNS(t, p.host, func() error { return SetBandwidth(p.hostVeth, 0, 10_000_000) }); err != nil {
		t.Fatal(err)
	}
	link, err := p.hh.LinkByName(p.hostVeth)
	if err != nil {
		t.Fatal(err)
	}
	// The container's veth dies (as when a container is removed while the
	// daemon is down); its ifb stays until pruned.
	if err := p.hh.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	if _, err := p.hh.LinkByName(IFBName(p.hostVeth)); err != nil {
		t.Fatalf("ifb gone with its veth already: %v", err)
	}
	var pruned []string
	if err := inNS(t, p.host, func() (err error) { pruned, err = PruneBandwidth(); return err }); err != nil {
		t.Fatal(err)
	}
	if len(pruned) != 1 || pruned[0] != IFBName(p.hostVeth) {
		t.Fatalf("PruneBandwidth = %v, want [%s]", pruned, IFBName(p.hostVeth))
	}
	if _, err := p.hh.LinkByName(IFBName(p.hostVeth)); err == nil {
		t.Fatal("ifb still there after PruneBandwidth")
	}
	// ClearBandwidth of a vanished veth is not an error.
	if err := inNS(t, p.host, func() error { return ClearBandwidth(p.hostVeth) }); err != nil {
		t.Fatal(err)
	}
}

func TestSetBandwidthRefuses(t *testing.T) {
	p := newNSPair(t)
	tests := []struct {
		name        string
		veth        string
		in, out     uint64
		wantInvalid bool
	}{
		{name: "rate too low", veth: p.hostVeth, in: 100, wantInvalid: true},
		{name: "rate absurd", veth: p.hostVeth, out: uint64(units.MaxRate) + 1, wantInvalid: true},
		{name: "no such veth", veth: "nosuchveth0", in: 10_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := inNS(t, p.host, func() error { return SetBandwidth(tt.veth, tt.in, tt.out) })
			if err == nil {
				t.Fatal("SetBandwidth succeeded")
			}
			if errors.Is(err, ErrInvalidRate) != tt.wantInvalid {
				t.Fatalf("SetBandwidth error %v: ErrInvalidRate = %v, want %v", err, !tt.wantInvalid, tt.wantInvalid)
			}
		})
	}
	if len(IFBName("a-very-long-veth-name")) > 15 || IFBName("a") == IFBName("b") {
		t.Fatal("ifb names must fit IFNAMSIZ and differ per veth")
	}
}
