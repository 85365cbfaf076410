package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// network is the engine's bridge, its NAT rules and its IP allocator.
type network struct {
	root   string
	bridge string
	subnet *net.IPNet
	gw     net.IP
	log    *slog.Logger

	mu    sync.Mutex
	ready bool // bridge and rules exist
	brIdx int  // the bridge's interface index and MTU, valid while ready
	brMTU int
}

func newNetwork(root, bridge, subnet string, log *slog.Logger) (*network, error) {
	sn, err := parseSubnet(subnet)
	if err != nil {
		return nil, err
	}
	return &network{root: root, bridge: bridge, subnet: sn, gw: nthIP(sn, 1), log: log}, nil
}

// parseSubnet accepts an IPv4 CIDR with room for at least two containers.
func parseSubnet(s string) (*net.IPNet, error) {
	ip, sn, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("parse subnet %q: %w", s, err)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("subnet %q is not IPv4", s)
	}
	if ones, _ := sn.Mask.Size(); ones > 29 {
		return nil, fmt.Errorf("subnet %q is smaller than a /29", s)
	}
	return sn, nil
}

func nthIP(sn *net.IPNet, n uint32) net.IP {
	base := uint32FromIP(sn.IP)
	return ipFromUint32(base + n)
}

func uint32FromIP(ip net.IP) uint32 {
	ip = ip.To4()
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

func ipFromUint32(v uint32) net.IP {
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
}

func overlaps(a, b *net.IPNet) bool {
	return a.Contains(b.IP) || b.Contains(a.IP)
}

// checkSubnet refuses a subnet that overlaps a route of the host other
// than the engine's own bridge.
func checkSubnet(bridge, subnet string) error {
	sn, err := parseSubnet(subnet)
	if err != nil {
		return err
	}
	own := -1
	if l, err := netlink.LinkByName(bridge); err == nil {
		own = l.Attrs().Index
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == own {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue // a default route covers everything and is no collision
		}
		if overlaps(r.Dst, sn) {
			dev := strconv.Itoa(r.LinkIndex)
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			return fmt.Errorf("%w: %s overlaps the route to %s on %s; choose another engine subnet (Config.Subnet)", ErrSubnetCollision, sn, r.Dst, dev)
		}
	}
	return nil
}

// ensure creates the bridge, its address and the NAT rules if missing,
// and returns the bridge's index and MTU.
func (n *network) ensure() (index, mtu int, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ready {
		if err := n.setUp(); err != nil {
			return 0, 0, err
		}
	}
	return n.brIdx, n.brMTU, nil
}

// forget makes the next ensure look at the bridge again (someone may have
// deleted it).
func (n *network) forget() {
	n.mu.Lock()
	n.ready = false
	n.mu.Unlock()
}

// bridgeMAC is the bridge's fixed address: locally administered, unicast,
// derived from its name and subnet so that it is the same after a restart.
func (n *network) bridgeMAC() net.HardwareAddr {
	h := sha256.Sum256([]byte(n.bridge + " " + n.subnet.String()))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// setUp does ensure's work; n.mu is held.
func (n *network) setUp() error {
	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("find bridge %s: %w", n.bridge, err)
		}
		if err := checkSubnet(n.bridge, n.subnet.String()); err != nil {
			return err
		}
		la := netlink.NewLinkAttrs()
		la.Name = n.bridge
		la.HardwareAddr = n.bridgeMAC()
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.bridge, err)
		}
		if br, err = netlink.LinkByName(n.bridge); err != nil {
			return fmt.Errorf("find bridge %s: %w", n.bridge, err)
		}
	}
	// A bridge whose address was never set takes the lowest of its ports'
	// addresses, so it changes as veths come and go; containers that knew
	// the old one could not answer the host until their ARP entry expired
	// (about 5 s: health checks timed out). A set address stays.
	if mac := n.bridgeMAC(); !bytes.Equal(br.Attrs().HardwareAddr, mac) {
		if err := netlink.LinkSetHardwareAddr(br, mac); err != nil {
			return fmt.Errorf("set bridge %s address: %w", n.bridge, err)
		}
	}
	ones, _ := n.subnet.Mask.Size()
	addr, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", n.gw, ones))
	if err := netlink.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("set bridge address: %w", err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring bridge up: %w", err)
	}
	ipt, err := iptables.New()
	if err != nil {
		return fmt.Errorf("open iptables: %w", err)
	}
	err = withForwarding(func() error {
		// NAT for egress needs forwarding; turn it on only if it is off,
		// and record that berth did.
		on, err := os.ReadFile(ipForwardPath)
		if err != nil {
			return fmt.Errorf("read ip forwarding: %w", err)
		}
		if strings.TrimSpace(string(on)) != "1" {
			if err := os.WriteFile(ipForwardMark, []byte("berth turned on net.ipv4.ip_forward for its bridges; the last bridge removed turns it off\n"), 0o644); err != nil {
				n.log.Warn("cannot record that berth turns on IPv4 forwarding; it will stay on", "err", err)
			}
			if err := os.WriteFile(ipForwardPath, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("enable ip forwarding: %w", err)
			}
			n.log.Info("turned on IPv4 forwarding for the container bridge; it is turned off again when the last berth bridge is removed", "mark", ipForwardMark)
		}
		for _, r := range n.rules() {
			if err := ipt.AppendUnique(r.table, r.chain, r.spec...); err != nil {
				return fmt.Errorf("add iptables rule %v: %w", r.spec, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.brIdx, n.brMTU = br.Attrs().Index, br.Attrs().MTU
	n.ready = true
	return nil
}

type iptRule struct {
	table, chain string
	spec         []string
}

func (n *network) rules() []iptRule {
	c := []string{"-m", "comment", "--comment", "berth:" + n.bridge}
	return []iptRule{
		{"nat", "POSTROUTING", append([]string{"-s", n.subnet.String(), "!", "-o", n.bridge, "-j", "MASQUERADE"}, c...)},
		{"filter", "FORWARD", append([]string{"-i", n.bridge, "-j", "ACCEPT"}, c...)},
		{"filter", "FORWARD", append([]string{"-o", n.bridge, "-j", "ACCEPT"}, c...)},
	}
}

// created reports whether the bridge exists.
func (n *network) created() bool {
	_, err := netlink.LinkByName(n.bridge)
	return err == nil
}

// remove deletes the bridge and NAT rules if no address is allocated.
func (n *network) remove() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var inUse int
	if err := n.withIPAM(func(s *ipamState) bool { inUse = len(s.Allocated); return false }); err != nil {
		return err
	}
	if inUse > 0 {
		return fmt.Errorf("remove bridge %s: %d addresses still allocated", n.bridge, inUse)
	}
	if ipt, err := iptables.New(); err == nil {
		err := withForwarding(func() error {
			for _, r := range n.rules() {
				_ = ipt.DeleteIfExists(r.table, r.chain, r.spec...)
			}
			return restoreForwarding(ipt)
		})
		if err != nil {
			n.log.Warn("restore IPv4 forwarding", "err", err)
		}
	}
	removeLink(n.bridge)
	n.ready = false
	return nil
}

const (
	ipForwardPath = "/proc/sys/net/ipv4/ip_forward"
	// ipForwardMark records, for the whole host (every engine and Root),
	// that berth turned forwarding on; /run is empty after a reboot, when
	// forwarding is back to its configured value anyway.
	ipForwardMark = "/run/berth-ip-forward"
	ipForwardLock = "/run/berth-ip-forward.lock"
)

// withForwarding runs fn under a host-wide lock, so that one engine's
// removal of the last bridge and another's new bridge do not interleave
// between the forwarding setting and the bridges' rules.
func withForwarding(fn func() error) error {
	lock, err := lockFile(ipForwardLock)
	if errors.Is(err, os.ErrNotExist) {
		return fn() // no /run: nothing to coordinate through
	}
	if err != nil {
		return fmt.Errorf("ip forwarding: %w", err)
	}
	defer lock.Close()
	return fn()
}

// lockFile opens path, creating it, and takes an exclusive lock on it,
// which lasts until the file is closed.
func lockFile(path string) (*os.File, error) {
	return flockFile(path, unix.LOCK_EX)
}

// flockFile opens path, creating it, and flocks it with how (LOCK_EX,
// LOCK_SH, optionally LOCK_NB); closing the file releases the lock.
func flockFile(path string, how int) (*os.File, error) {
	lock, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), how); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return lock, nil
}

// restoreForwarding turns IPv4 forwarding off again if berth turned it on
// and no berth bridge is left (none of berth's FORWARD rules). Called
// under withForwarding.
func restoreForwarding(ipt *iptables.IPTables) error {
	if _, err := os.Stat(ipForwardMark); err != nil {
		return nil // berth did not turn it on
	}
	rules, err := ipt.List("filter", "FORWARD")
	if err != nil {
		return fmt.Errorf("list forward rules: %w", err)
	}
	for _, r := range rules {
		if strings.Contains(r, "berth:") {
			return nil // another bridge still needs it
		}
	}
	if err := os.WriteFile(ipForwardPath, []byte("0"), 0o644); err != nil {
		return fmt.Errorf("disable ip forwarding: %w", err)
	}
	return os.Remove(ipForwardMark)
}

func removeLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}

// attachNetwork creates the container's veth pair with eth0 inside the
// init's network namespace and configures both ends.
func (e *Engine) attachNetwork(ctx context.Context, c *containerConfig, pid int) error {
	n, err := e.network()
	if err != nil {
		return err
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("open container network namespace: %w", err)
	}
	defer ns.Close()
	for attempt := 0; ; attempt++ {
		brIdx, brMTU, err := n.ensure()
		if err != nil {
			return err
		}
		la := netlink.NewLinkAttrs()
		la.Name = c.HostVeth
		la.MasterIndex = brIdx
		la.MTU = brMTU
		la.Flags = net.FlagUp // the host end comes up with its creation
		veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		err = netlink.LinkAdd(veth)
		if err != nil && attempt == 0 && errors.Is(err, unix.ENODEV) {
			n.forget() // the bridge went away: create it again
			continue
		}
		if err != nil {
			return fmt.Errorf("create veth %s: %w", c.HostVeth, err)
		}
		break
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in container: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find container lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring container lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find container eth0: %w", err)
	}
	ip := net.ParseIP(c.IP).To4()
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: n.subnet.Mask}}); err != nil {
		return fmt.Errorf("set container address: %w", err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring container eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: n.gw}); err != nil {
		return fmt.Errorf("add container default route: %w", err)
	}
	if e.cfg.Quota != nil {
		if err := e.cfg.Quota.AttachNetwork(ctx, c.ID, c.HostVeth, &c.Spec); err != nil {
			return fmt.Errorf("apply network quota: %w", err)
		}
	}
	return nil
}

// ipamState is ipam.json: the persisted allocations of one bridge subnet.
type ipamState struct {
	Subnet    string            `json:"subnet"`
	Last      string            `json:"last,omitempty"`
	Allocated map[string]string `json:"allocated"` // IP -> container ID
}

// withIPAM runs fn on the allocations under an exclusive file lock, so
// several processes on one Root never hand out one address twice; fn
// returns whether to save.
func (n *network) withIPAM(fn func(*ipamState) bool) error {
	lock, err := lockFile(filepath.Join(n.root, "ipam.lock"))
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer lock.Close()
	path := filepath.Join(n.root, "ipam.json")
	var s ipamState
	if err := readJSON(path, &s); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read ipam state: %w", err)
	}
	if s.Subnet != "" && s.Subnet != n.subnet.String() && len(s.Allocated) > 0 {
		return fmt.Errorf("ipam state is for subnet %s, engine uses %s; delete the containers first", s.Subnet, n.subnet)
	}
	s.Subnet = n.subnet.String()
	if s.Allocated == nil {
		s.Allocated = map[string]string{}
	}
	if fn(&s) {
		if err := writeJSON(path, &s); err != nil {
			return fmt.Errorf("write ipam state: %w", err)
		}
	}
	return nil
}

// allocate hands out the next free address after the last one handed out,
// so a just-released address is not reused at once.
func (n *network) allocate(id string) (net.IP, error) {
	var ip net.IP
	err := n.withIPAM(func(s *ipamState) bool {
		ones, bits := n.subnet.Mask.Size()
		size := uint32(1) << (bits - ones)
		base := uint32FromIP(n.subnet.IP)
		start := uint32(1)
		if last := net.ParseIP(s.Last); last != nil && n.subnet.Contains(last) {
			start = uint32FromIP(last) - base
		}
		for i := uint32(1); i < size; i++ {
			off := (start + i) % size
			if off <= 1 || off == size-1 { // network, gateway, broadcast
				continue
			}
			cand := ipFromUint32(base + off)
			if _, used := s.Allocated[cand.String()]; used {
				continue
			}
			s.Allocated[cand.String()] = id
			s.Last = cand.String()
			ip = cand
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if ip == nil {
		return nil, fmt.Errorf("allocate address in %s: %w", n.subnet, ErrAddressesExhausted)
	}
	return ip, nil
}

// release frees the addresses of a container.
func (n *network) release(id string) error {
	return n.withIPAM(func(s *ipamState) bool {
		changed := false
		for ip, owner := range s.Allocated {
			if owner == id {
				delete(s.Allocated, ip)
				changed = true
			}
		}
		return changed
	})
}

// releaseUnknown frees addresses whose container no longer exists.
func (n *network) releaseUnknown(exists func(id string) bool) error {
	return n.withIPAM(func(s *ipamState) bool {
		changed := false
		for ip, owner := range s.Allocated {
			if !exists(owner) {
				delete(s.Allocated, ip)
				changed = true
			}
		}
		return changed
	})
}
