package runtimepolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Enforcement is what one rule asks the kernel to deny before it happens
// in the resources it decides for. The Defender maps it onto its enforcer's
// targets (one per container cgroup, or the host's). Every entry names the
// rule and detection, so that a prevented action's audit can say why.
type Enforcement struct {
	Rule string
	// Exec denies executing these binaries.
	Exec []ExecDeny
	// Drift, when set, asks to deny the exec of files written after the
	// container started: the Defender adds each such file to Exec as it
	// sees the write (or the mechanism judges by inode change time).
	Drift *Deny
	// Write denies opening for writing (or creating) under these paths.
	Write []PathDeny
	// Connect denies outbound connections to these ports or networks.
	ConnectPorts []PortDeny
	ConnectCIDRs []CIDRDeny
	// ListenAllowed, when not nil, are the only ports that may be bound
	// for listening; ListenRule names the rule that says so.
	ListenAllowed []PortRange
	ListenRule    Deny
	ListenDenied  []PortDeny
	// Unenforced lists what the rule asks to prevent that no kernel
	// mechanism can stop before it happens; those actions are audited
	// (and blocked, for block) after the fact, never called prevented.
	Unenforced []string
	// Block lists the detections whose effect is block: the container is
	// stopped when one happens.
	Block []string
}

// Deny says which rule and detection deny something.
type Deny struct {
	Rule      string
	Detection string
}

// ExecDeny is one denied executable: Path is an absolute path (possibly a
// glob), Name a base name (possibly a glob) in any directory.
type ExecDeny struct {
	Path string
	Name string
	Deny
}

// PathDeny is a denied path prefix.
type PathDeny struct {
	Prefix string
	Deny
}

// PortDeny is a denied port range.
type PortDeny struct {
	Ports PortRange
	Deny
}

// CIDRDeny is a denied network.
type CIDRDeny struct {
	Prefix netip.Prefix
	Deny
}

// Empty reports whether e denies nothing in the kernel.
func (e Enforcement) Empty() bool {
	return len(e.Exec) == 0 && e.Drift == nil && len(e.Write) == 0 && len(e.ConnectPorts) == 0 && len(e.ConnectCIDRs) == 0 &&
		e.ListenAllowed == nil && len(e.ListenDenied) == 0
}

// Compile is the kernel enforcement rule r asks for, given the model
// learned for the resource's image (nil for none or a host). It agrees
// with Evaluate: a finding with Enforce set is what Compile denies.
func Compile(r Rule, m *Model) Enforcement {
	e := Enforcement{Rule: r.Name}
	if r.Disabled {
		return e
	}
	deny := func(detection string) Deny { return Deny{Rule: r.Name, Detection: detection} }
	note := func(field, why string) { e.Unenforced = append(e.Unenforced, fmt.Sprintf("%s: %s", field, why)) }
	block := func(eff Effect, detection string) {
		if eff == EffectBlock && !slices.Contains(e.Block, detection) {
			e.Block = append(e.Block, detection)
		}
	}
	execNames := func(eff Effect, detection string, names []string) {
		block(eff, detection)
		if !eff.Prevents() {
			return
		}
		for _, n := range names {
			e.Exec = append(e.Exec, ExecDeny{Name: n, Deny: deny(detection)})
		}
	}

	if ps := &r.Processes; !ps.Disabled {
		block(ps.DeniedList.Effect, DetectDeniedProcess)
		if ps.DeniedList.Effect.Prevents() {
			for _, entry := range ps.DeniedList.Paths {
				if strings.Contains(entry, "/") {
					e.Exec = append(e.Exec, ExecDeny{Path: entry, Deny: deny(DetectDeniedProcess)})
				} else {
					e.Exec = append(e.Exec, ExecDeny{Name: entry, Deny: deny(DetectDeniedProcess)})
				}
			}
		}
		execNames(ps.CryptoMinersEffect, DetectCryptoMiner, minerNames)
		execNames(ps.PackageManagersEffect, DetectPackageManager, packageManagers)
		execNames(ps.LateralMovementEffect, DetectLateralMovement, lateralTools)
		block(ps.ModifiedProcessEffect, DetectDrift)
		if ps.ModifiedProcessEffect.Prevents() {
			d := deny(DetectDrift)
			e.Drift = &d
		}
		block(ps.ReverseShellEffect, DetectReverseShell)
		if ps.ReverseShellEffect.Prevents() {
			note("processes.reverseShellEffect", "a reverse shell is recognised once it runs; it is audited, not prevented")
		}
		block(ps.SuidBinariesEffect, DetectSuidBinary)
		block(ps.SuidBinariesEffect, DetectPrivEscalation)
		if ps.SuidBinariesEffect.Prevents() {
			note("processes.suidBinariesEffect", "privilege escalation is recognised once it happened; it is audited, not prevented")
		}
		block(ps.DefaultEffect, DetectUnexpectedProcess)
		if ps.DefaultEffect.Prevents() {
			note("processes.defaultEffect", "the kernel denies listed binaries only, not every binary outside a model; deviations are audited")
		}
	}
	execNames(r.KubernetesEnforcementEffect, DetectKubectl, kubectlNames)

	if fs := &r.Filesystem; !fs.Disabled {
		writes := func(eff Effect, detection string, paths []string, field string) {
			block(eff, detection)
			if !eff.Prevents() {
				return
			}
			for _, p := range paths {
				if strings.ContainsAny(p, "*?") {
					note(field, fmt.Sprintf("%q is a glob; writes there are audited, the kernel denies prefixes only", p))
					continue
				}
				e.Write = append(e.Write, PathDeny{Prefix: strings.TrimSuffix(p, "/"), Deny: deny(detection)})
			}
		}
		writes(fs.DeniedList.Effect, DetectDeniedFile, fs.DeniedList.Paths, "filesystem.deniedList")
		writes(fs.BackdoorFilesEffect, DetectAdminAccount, adminFiles, "filesystem.backdoorFilesEffect")
		writes(fs.BackdoorFilesEffect, DetectSSHAccess, sshFiles, "filesystem.backdoorFilesEffect")
		writes(fs.NewFilesEffect, DetectAlteredBinary, binaryDirs, "filesystem.newFilesEffect")
		block(fs.SensitiveFilesEffect, DetectSecretFile)
		if fs.SensitiveFilesEffect.Prevents() {
			note("filesystem.sensitiveFilesEffect", "the kernel denies writes, not reads; reads of secrets are audited")
		}
		block(fs.DefaultEffect, DetectUnexpectedWrite)
		if fs.DefaultEffect.Prevents() {
			note("filesystem.defaultEffect", "the kernel denies listed paths only, not every write outside a model; deviations are audited")
		}
		if (fs.DeniedList.Effect.Prevents() || fs.BackdoorFilesEffect.Prevents() || fs.NewFilesEffect.Prevents()) && len(e.Write) > 0 {
			note("filesystem", "unlink, rename and chmod under denied paths are audited; the kernel denies opening for writing and creating")
		}
	}

	if nw := &r.Network; !nw.Disabled {
		block(nw.DeniedIPsEffect, DetectDeniedIP)
		if nw.DeniedIPsEffect.Prevents() {
			for _, s := range nw.DeniedIPs {
				if p, err := parsePrefix(s); err == nil {
					e.ConnectCIDRs = append(e.ConnectCIDRs, CIDRDeny{Prefix: p, Deny: deny(DetectDeniedIP)})
				}
			}
		}
		block(nw.OutboundPorts.Effect, DetectDeniedOutbound)
		if nw.OutboundPorts.Effect.Prevents() {
			for _, pr := range nw.OutboundPorts.Denied {
				e.ConnectPorts = append(e.ConnectPorts, PortDeny{Ports: pr, Deny: deny(DetectDeniedOutbound)})
			}
		}
		block(nw.ListeningPorts.Effect, DetectDeniedListen)
		if nw.ListeningPorts.Effect.Prevents() {
			for _, pr := range nw.ListeningPorts.Denied {
				e.ListenDenied = append(e.ListenDenied, PortDeny{Ports: pr, Deny: deny(DetectDeniedListen)})
			}
			if len(nw.ListeningPorts.Allowed) > 0 {
				e.ListenAllowed = listenAllowed(nw.ListeningPorts.Allowed, m)
				e.ListenRule = deny(DetectDeniedListen)
			}
		}
		block(nw.DefaultEffect, DetectUnexpectedListen)
		block(nw.DefaultEffect, DetectUnexpectedOut)
		if nw.DefaultEffect.Prevents() {
			if m != nil && m.Active() && len(nw.ListeningPorts.Allowed) == 0 {
				e.ListenAllowed = listenAllowed(nw.ListeningPorts.Allowed, m)
				e.ListenRule = deny(DetectUnexpectedListen)
			}
			note("network.defaultEffect", "outbound connections outside a model are audited; the kernel denies listed ports and networks only")
		}
	}
	return e
}

// listenAllowed is the allowed ports plus the ports the model learned.
func listenAllowed(allowed []PortRange, m *Model) []PortRange {
	out := append([]PortRange{}, allowed...)
	if m != nil && m.Active() {
		for _, p := range m.Network.ListeningPorts {
			if !inRanges(out, p) {
				out = append(out, PortRange{Start: int(p)})
			}
		}
	}
	return out
}
