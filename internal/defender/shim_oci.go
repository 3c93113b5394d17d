package defender

import (
	"bulwark/internal/compliance"
	"bulwark/internal/workload"
)

// fromOCI turns a bundle's config.json into a Workload for the shim's
// decisions.
func fromOCI(spec []byte, engine string) (compliance.Workload, error) {
	return workload.FromOCI(spec, engine)
}
