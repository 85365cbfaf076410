//go:build !linux

package quota

import (
	"errors"
	"fmt"
)

// SetBandwidth caps a container's veth; it needs Linux tc.
func SetBandwidth(hostVeth string, ingress, egress uint64) error {
	return fmt.Errorf("set bandwidth on %s: %w", hostVeth, errors.ErrUnsupported)
}

// ClearBandwidth removes a container's veth caps; it needs Linux tc.
func ClearBandwidth(hostVeth string) error {
	return fmt.Errorf("clear bandwidth of %s: %w", hostVeth, errors.ErrUnsupported)
}

// PruneBandwidth deletes orphaned ifb devices; it needs Linux.
func PruneBandwidth() ([]string, error) {
	return nil, fmt.Errorf("prune bandwidth: %w", errors.ErrUnsupported)
}
