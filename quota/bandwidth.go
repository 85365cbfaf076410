package quota

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/berthhq/berth/internal/units"
)

// ifbAliasPrefix marks the ifb devices this package made; the rest of the
// alias is the veth they shape, so PruneBandwidth can tell orphans.
const ifbAliasPrefix = "berth-bw:"

// IFBName returns the name of the ifb device that shapes traffic out of the
// container behind hostVeth: "ifb" and 12 hex digits of a hash of the veth
// name, always 15 characters, so cleanup can find it from the veth name.
func IFBName(hostVeth string) string {
	sum := sha256.Sum256([]byte(hostVeth))
	return "ifb" + hex.EncodeToString(sum[:6])
}

// checkRate refuses rates outside what units.ParseRate accepts; zero
// means "no cap".
func checkRate(bits uint64) error {
	if bits != 0 && (bits < uint64(units.MinRate) || bits > uint64(units.MaxRate)) {
		return fmt.Errorf("check rate %d bit/s: must be 0 (no cap) or between %s and %s: %w", bits, units.FormatRate(units.MinRate), units.FormatRate(units.MaxRate), ErrInvalidRate)
	}
	return nil
}
