package quota

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Token bucket shaping parameters. The bucket (burst) holds 20 ms of
// traffic, at least 32 KiB so a few full-size segments pass back to back
// at low rates; the queue holds 50 ms of traffic behind it, enough for TCP
// to keep the link full without building a long delay.
const (
	burstMillis   = 20
	minBurstBytes = 32 << 10
	latencyMillis = 50
)

// tbf returns a token bucket filter qdisc at the root of link, capping its
// transmit rate to bits per second.
func tbf(linkIndex int, bits uint64) *netlink.Tbf {
	rate := bits / 8
	burst := max(rate*burstMillis/1000, minBurstBytes)
	limit := rate*latencyMillis/1000 + burst
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: linkIndex,
			Handle:    netlink.MakeHandle(1, 0),
			Parent:    netlink.HANDLE_ROOT,
		},
		Rate:   rate,
		Limit:  uint32(min(limit, 1<<31)),
		Buffer: netlink.Xmittime(rate, uint32(min(burst, 1<<31))),
	}
}

// SetBandwidth caps the traffic of the container behind hostVeth, the
// host-side end of its veth pair, in the calling thread's network
// namespace. ingress caps traffic into the container and egress traffic out
// of it, in bits per second; zero removes that direction's cap.
//
// Traffic into the container leaves the host through hostVeth, so a tbf at
// its root shapes it. Traffic out of the container arrives on hostVeth,
// where the kernel cannot queue it, so an ingress qdisc redirects it to an
// ifb device (named IFBName(hostVeth)) whose root tbf shapes it, as the CNI
// bandwidth plugin does. Calling it again replaces the caps.
func SetBandwidth(hostVeth string, ingress, egress uint64) error {
	if err := checkRate(ingress); err != nil {
		return fmt.Errorf("set bandwidth on %s: %w", hostVeth, err)
	}
	if err := checkRate(egress); err != nil {
		return fmt.Errorf("set bandwidth on %s: %w", hostVeth, err)
	}
	link, err := netlink.LinkByName(hostVeth)
	if err != nil {
		return fmt.Errorf("set bandwidth on %s: %w", hostVeth, err)
	}
	idx := link.Attrs().Index
	if ingress > 0 {
		if err := netlink.QdiscReplace(tbf(idx, ingress)); err != nil {
			return fmt.Errorf("set bandwidth into %s: replace tbf: %w", hostVeth, err)
		}
	} else if err := delRootTbf(link); err != nil {
		return fmt.Errorf("set bandwidth into %s: %w", hostVeth, err)
	}
	if egress == 0 {
		if err := delIngress(link); err != nil {
			return fmt.Errorf("set bandwidth out of %s: %w", hostVeth, err)
		}
		if err := delIFB(hostVeth); err != nil {
			return fmt.Errorf("set bandwidth out of %s: %w", hostVeth, err)
		}
		return nil
	}
	ifb, err := ensureIFB(hostVeth, link.Attrs().MTU)
	if err != nil {
		return fmt.Errorf("set bandwidth out of %s: %w", hostVeth, err)
	}
	if err := netlink.QdiscReplace(tbf(ifb.Attrs().Index, egress)); err != nil {
		return fmt.Errorf("set bandwidth out of %s: replace tbf on %s: %w", hostVeth, ifb.Attrs().Name, err)
	}
	// A fresh ingress qdisc drops any old redirect filter with it, so the
	// single match-all filter below is the only one.
	if err := delIngress(link); err != nil {
		return fmt.Errorf("set bandwidth out of %s: %w", hostVeth, err)
	}
	ingressQdisc := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: idx,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
	if err := netlink.QdiscAdd(ingressQdisc); err != nil {
		return fmt.Errorf("set bandwidth out of %s: add ingress qdisc: %w", hostVeth, err)
	}
	// A u32 filter with no selector matches every packet.
	redirect := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: idx,
			Parent:    ingressQdisc.Handle,
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(ifb.Attrs().Index)},
	}
	if err := netlink.FilterAdd(redirect); err != nil {
		return fmt.Errorf("set bandwidth out of %s: add redirect to %s: %w", hostVeth, ifb.Attrs().Name, err)
	}
	return nil
}

// ClearBandwidth removes the caps SetBandwidth put on hostVeth, including
// its ifb device. It succeeds when there is nothing to remove, and removes
// the ifb even when the veth is already gone (deleting a container's veth
// takes its qdiscs along, but not the ifb).
func ClearBandwidth(hostVeth string) error {
	var errs []error
	link, err := netlink.LinkByName(hostVeth)
	switch {
	case err == nil:
		if err := delRootTbf(link); err != nil {
			errs = append(errs, err)
		}
		if err := delIngress(link); err != nil {
			errs = append(errs, err)
		}
	case !isNotFound(err):
		errs = append(errs, err)
	}
	if err := delIFB(hostVeth); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clear bandwidth of %s: %w", hostVeth, err)
	}
	return nil
}

// PruneBandwidth deletes the ifb devices this package made for veths that
// no longer exist, e.g. after containers died while the daemon was down,
// and returns their names.
func PruneBandwidth() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("prune bandwidth: list links: %w", err)
	}
	var pruned []string
	var errs []error
	for _, l := range links {
		veth, ok := strings.CutPrefix(l.Attrs().Alias, ifbAliasPrefix)
		if !ok || l.Type() != "ifb" {
			continue
		}
		if _, err := netlink.LinkByName(veth); err == nil {
			continue
		} else if !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			continue
		}
		pruned = append(pruned, l.Attrs().Name)
	}
	if err := errors.Join(errs...); err != nil {
		return pruned, fmt.Errorf("prune bandwidth: %w", err)
	}
	return pruned, nil
}

// isNotFound reports whether a netlink error means "no such link/qdisc".
func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL)
}

// delRootTbf deletes link's root qdisc if it is a tbf (ours), restoring the
// kernel's default.
func delRootTbf(link netlink.Link) error {
	qdiscs, err := netlink.QdiscList(link)
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", link.Attrs().Name, err)
	}
	for _, q := range qdiscs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT && q.Type() == "tbf" {
			if err := netlink.QdiscDel(q); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete tbf of %s: %w", link.Attrs().Name, err)
			}
		}
	}
	return nil
}

// delIngress deletes link's ingress qdisc and with it the redirect filter.
func delIngress(link netlink.Link) error {
	qdiscs, err := netlink.QdiscList(link)
	if err != nil {
		return fmt.Errorf("list qdiscs of %s: %w", link.Attrs().Name, err)
	}
	for _, q := range qdiscs {
		if q.Type() == "ingress" {
			if err := netlink.QdiscDel(q); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete ingress qdisc of %s: %w", link.Attrs().Name, err)
			}
		}
	}
	return nil
}

// ensureIFB returns the ifb device of hostVeth, creating it if needed.
func ensureIFB(hostVeth string, mtu int) (netlink.Link, error) {
	name := IFBName(hostVeth)
	link, err := netlink.LinkByName(name)
	if err == nil {
		if link.Type() != "ifb" || link.Attrs().Alias != ifbAliasPrefix+hostVeth {
			return nil, fmt.Errorf("create ifb %s: a %s device of that name exists (alias %q) and is not ours", name, link.Type(), link.Attrs().Alias)
		}
		return link, nil
	}
	if !isNotFound(err) {
		return nil, fmt.Errorf("find ifb %s: %w", name, err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = mtu
	attrs.TxQLen = 1000
	if err := netlink.LinkAdd(&netlink.Ifb{LinkAttrs: attrs}); err != nil {
		return nil, fmt.Errorf("create ifb %s (is the kernel's ifb module available?): %w", name, err)
	}
	link, err = netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find ifb %s: %w", name, err)
	}
	if err := netlink.LinkSetAlias(link, ifbAliasPrefix+hostVeth); err != nil {
		netlink.LinkDel(link)
		return nil, fmt.Errorf("label ifb %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		netlink.LinkDel(link)
		return nil, fmt.Errorf("bring up ifb %s: %w", name, err)
	}
	return link, nil
}

// delIFB deletes hostVeth's ifb device if it exists and is ours.
func delIFB(hostVeth string) error {
	name := IFBName(hostVeth)
	link, err := netlink.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("find ifb %s: %w", name, err)
	}
	if link.Type() != "ifb" || link.Attrs().Alias != ifbAliasPrefix+hostVeth {
		return fmt.Errorf("delete ifb %s: device is not ours (type %s, alias %q)", name, link.Type(), link.Attrs().Alias)
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete ifb %s: %w", name, err)
	}
	return nil
}
