// Package engine runs berth's containers directly on Linux namespaces, cgroups, overlayfs and veth networking.
package engine
