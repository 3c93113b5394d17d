// Package runtimepolicy holds Bulwark's runtime defense rules and learned
// models: the Prisma-shaped rules of /api/v1/policies/runtime/container and
// /host (ordered, the first rule whose collections match decides), the
// built-in detections (drift, reverse shells, crypto miners, package
// managers and admin tools in containers, writes to binary directories,
// privilege escalation, sensitive file reads), per-image models learned
// during a window, the evaluation of one runtime event against a rule and a
// model (Evaluate), the kernel enforcement a rule asks for (Compile), and
// the grouping of audits into incidents.
//
// It is pure: the Defender feeds it events and the facts it found on the
// host, and carries out what it decides.
package runtimepolicy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"bulwark/internal/collection"
)

// Effect is what a rule does when it matches an action.
type Effect string

// The effects, weakest first. Prevent denies the action in the kernel
// before it happens, where the Defender has a mechanism for it; block also
// stops the container. EffectNone in a rule means the field was not set.
const (
	EffectNone    Effect = ""
	EffectDisable Effect = "disable"
	EffectAlert   Effect = "alert"
	EffectPrevent Effect = "prevent"
	EffectBlock   Effect = "block"
)

// Active reports whether e does anything.
func (e Effect) Active() bool { return e == EffectAlert || e == EffectPrevent || e == EffectBlock }

// Prevents reports whether e asks to deny the action before it happens.
func (e Effect) Prevents() bool { return e == EffectPrevent || e == EffectBlock }

func (e Effect) valid() bool {
	switch e {
	case EffectNone, EffectDisable, EffectAlert, EffectPrevent, EffectBlock:
		return true
	}
	return false
}

func (e Effect) rank() int {
	switch e {
	case EffectAlert:
		return 1
	case EffectPrevent:
		return 2
	case EffectBlock:
		return 3
	}
	return 0
}

// Kind says which resources a policy scopes.
type Kind string

// The two runtime policies.
const (
	Container Kind = "container"
	Host      Kind = "host"
)

// PolicyType is the policy's key in the Console's policy snapshot and its
// path under /api/v1/policies/.
func (k Kind) PolicyType() string { return "runtime/" + string(k) }

// Policy is a runtime policy in Prisma's shape: ordered rules; the first
// enabled rule whose collections match a container (or host) decides.
type Policy struct {
	ID string `json:"_id,omitempty"` // containerRuntime, hostRuntime
	// LearningDisabled stops learning models: no new models, no relearning;
	// models already learned keep being used.
	LearningDisabled bool   `json:"learningDisabled,omitempty"`
	Rules            []Rule `json:"rules"`
}

// Rule is one runtime rule. A section's effects apply to what the section
// watches; an effect left empty takes the section's Effect, and an empty
// Effect there disables it.
type Rule struct {
	Name         string                  `json:"name"`
	PreviousName string                  `json:"previousName,omitempty"`
	Disabled     bool                    `json:"disabled,omitempty"`
	Collections  []collection.Collection `json:"collections,omitempty"`
	// Effect (Bulwark) is a rule-wide effect: it fills each section's
	// Effect that is not set, and the rule's Kubernetes effect.
	Effect     Effect     `json:"effect,omitempty"`
	Processes  Processes  `json:"processes"`
	Network    Network    `json:"network"`
	Filesystem Filesystem `json:"filesystem"`
	// KubernetesEnforcementEffect applies to kubectl run inside a container.
	KubernetesEnforcementEffect Effect `json:"kubernetesEnforcementEffect,omitempty"`

	// Kept as written for Prisma clients that send them; Bulwark does not act
	// on them yet.
	AdvancedProtectionEffect       Effect          `json:"advancedProtectionEffect,omitempty"`
	CloudMetadataEnforcementEffect Effect          `json:"cloudMetadataEnforcementEffect,omitempty"`
	WildFireAnalysis               Effect          `json:"wildFireAnalysis,omitempty"`
	SkipExecSessions               bool            `json:"skipExecSessions,omitempty"`
	DNS                            json.RawMessage `json:"dns,omitempty"`
	CustomRules                    json.RawMessage `json:"customRules,omitempty"`
	Notes                          string          `json:"notes,omitempty"`
	Owner                          string          `json:"owner,omitempty"`
	Modified                       string          `json:"modified,omitempty"`
}

// Processes is the process section of a rule.
type Processes struct {
	Disabled bool `json:"disabled,omitempty"`
	// Effect is the section-wide effect (Prisma's older shape): it fills
	// every effect below that is not set.
	Effect Effect `json:"effect,omitempty"`
	// DefaultEffect applies to a process the image's model has not learned
	// and AllowedList does not name.
	DefaultEffect Effect `json:"defaultEffect,omitempty"`
	// AllowedList adds to the model: these run without model, drift,
	// package manager, lateral movement or crypto miner audits. DeniedList
	// wins over it. Entries with a "/" are globs over the executable's path,
	// others over its base name.
	AllowedList []string   `json:"allowedList,omitempty"`
	DeniedList  DeniedList `json:"deniedList"`
	// ModifiedProcessEffect applies to the exec of a binary written after
	// the container started (drift).
	ModifiedProcessEffect Effect `json:"modifiedProcessEffect,omitempty"`
	CryptoMinersEffect    Effect `json:"cryptoMinersEffect,omitempty"`
	// LateralMovementEffect applies to ssh, scp, telnet and similar tools
	// run inside a container.
	LateralMovementEffect Effect `json:"lateralMovementEffect,omitempty"`
	// ReverseShellEffect applies to a shell whose standard input and output
	// are sockets, and to a shell that connects out.
	ReverseShellEffect Effect `json:"reverseShellEffect,omitempty"`
	// SuidBinariesEffect applies to privilege escalation: the exec of a
	// setuid-root binary by another user, and setuid to root by a non-root
	// process.
	SuidBinariesEffect Effect `json:"suidBinariesEffect,omitempty"`
	// PackageManagersEffect (Bulwark) applies to apt, yum, apk, pip and
	// other package managers run inside a container.
	PackageManagersEffect Effect `json:"packageManagersEffect,omitempty"`
	CheckParentChild      bool   `json:"checkParentChild,omitempty"` // kept; not acted on
}

// DeniedList names what a rule denies and the effect of doing it.
type DeniedList struct {
	Effect Effect   `json:"effect,omitempty"`
	Paths  []string `json:"paths,omitempty"`
}

// Network is the network section of a rule.
type Network struct {
	Disabled bool   `json:"disabled,omitempty"`
	Effect   Effect `json:"effect,omitempty"`
	// DefaultEffect applies to listening and outbound ports the model has
	// not learned and the lists do not allow.
	DefaultEffect Effect `json:"defaultEffect,omitempty"`
	// AllowedIPs and DeniedIPs are addresses or CIDRs of outbound
	// connections.
	AllowedIPs      []string `json:"allowedIPs,omitempty"`
	DeniedIPs       []string `json:"deniedIPs,omitempty"`
	DeniedIPsEffect Effect   `json:"deniedIPsEffect,omitempty"`
	// ListeningPorts: a non-empty Allowed list makes listening on any other
	// port (not learned either) a violation with its Effect.
	ListeningPorts Ports `json:"listeningPorts"`
	OutboundPorts  Ports `json:"outboundPorts"`

	ModifiedProcEffect Effect `json:"modifiedProcEffect,omitempty"` // kept; not acted on
	PortScanEffect     Effect `json:"portScanEffect,omitempty"`     // kept; not acted on
	RawSocketsEffect   Effect `json:"rawSocketsEffect,omitempty"`   // kept; not acted on
}

// Ports lists allowed and denied ports and the effect of a denied one.
type Ports struct {
	Allowed []PortRange `json:"allowed,omitempty"`
	Denied  []PortRange `json:"denied,omitempty"`
	Effect  Effect      `json:"effect,omitempty"`
}

// PortRange is Start..End inclusive; End 0 means Start alone. Deny is
// Prisma's per-entry flag, kept as written.
type PortRange struct {
	Start int  `json:"start"`
	End   int  `json:"end,omitempty"`
	Deny  bool `json:"deny,omitempty"`
}

// Contains reports whether port is in the range.
func (p PortRange) Contains(port uint16) bool {
	end := p.End
	if end == 0 {
		end = p.Start
	}
	return int(port) >= p.Start && int(port) <= end
}

func (p PortRange) String() string {
	if p.End == 0 || p.End == p.Start {
		return fmt.Sprint(p.Start)
	}
	return fmt.Sprintf("%d-%d", p.Start, p.End)
}

func inRanges(rs []PortRange, port uint16) bool {
	return slices.ContainsFunc(rs, func(r PortRange) bool { return r.Contains(port) })
}

// Filesystem is the file system section of a rule.
type Filesystem struct {
	Disabled bool   `json:"disabled,omitempty"`
	Effect   Effect `json:"effect,omitempty"`
	// DefaultEffect applies to a write in a directory the model has not
	// learned and AllowedList does not name.
	DefaultEffect Effect `json:"defaultEffect,omitempty"`
	// AllowedList adds to the model and silences writes to binary
	// directories under it. Entries are path prefixes or globs.
	AllowedList []string `json:"allowedList,omitempty"`
	// DeniedList paths may not be written (prefixes or globs).
	DeniedList DeniedList `json:"deniedList"`
	// BackdoorFilesEffect applies to writes to account and SSH access files
	// (/etc/passwd, /etc/shadow, sudoers, authorized_keys, …).
	BackdoorFilesEffect Effect `json:"backdoorFilesEffect,omitempty"`
	// NewFilesEffect applies to writes to binary directories (/bin, /usr/bin,
	// /lib, …): altered binaries.
	NewFilesEffect Effect `json:"newFilesEffect,omitempty"`
	// SensitiveFilesEffect (Bulwark) applies to reads of secrets such as
	// /etc/shadow and SSH host keys.
	SensitiveFilesEffect Effect `json:"sensitiveFilesEffect,omitempty"`

	EncryptedBinariesEffect    Effect `json:"encryptedBinariesEffect,omitempty"`    // kept; not acted on
	SuspiciousElfHeadersEffect Effect `json:"suspiciousElfHeadersEffect,omitempty"` // kept; not acted on
}

// Names of the built-in rules.
const (
	RuleIgnoreBulwark = "Default - ignore Bulwark components"
	RuleDefault       = "Default - alert on suspicious runtime behavior"
)

// DefaultPolicy is the policy in force before anybody sets one. Bulwark's
// own components come first with everything disabled; then containers
// alert on every detection and on deviations from their learned model, and
// hosts alert on what is never normal on a host (miners, reverse shells,
// backdoor files). Nothing is prevented until a user asks for it.
func DefaultPolicy(k Kind) Policy {
	ignore := Rule{
		Name: RuleIgnoreBulwark,
		Collections: []collection.Collection{
			{Name: "Bulwark images", Images: []string{"*bulwark-defender*", "*bulwark/defender*", "*bulwark-console*", "*bulwark/console*"}},
			{Name: "Bulwark containers", Containers: []string{"bulwark-defender*", "bulwark-console*"}},
		},
		Processes:  Processes{Disabled: true},
		Network:    Network{Disabled: true},
		Filesystem: Filesystem{Disabled: true},
	}
	if k == Host {
		ignore.Collections = []collection.Collection{{Name: "Bulwark hosts", Hosts: []string{"bulwark-console*"}}}
		return Policy{ID: "hostRuntime", Rules: []Rule{ignore, {
			Name:        RuleDefault,
			Collections: []collection.Collection{{Name: "All"}},
			Processes:   Processes{CryptoMinersEffect: EffectAlert, ReverseShellEffect: EffectAlert},
			Filesystem:  Filesystem{BackdoorFilesEffect: EffectAlert},
		}}}
	}
	return Policy{ID: "containerRuntime", Rules: []Rule{ignore, {
		Name:        RuleDefault,
		Collections: []collection.Collection{{Name: "All"}},
		Processes: Processes{
			DefaultEffect: EffectAlert, ModifiedProcessEffect: EffectAlert, CryptoMinersEffect: EffectAlert,
			LateralMovementEffect: EffectAlert, ReverseShellEffect: EffectAlert, SuidBinariesEffect: EffectAlert,
			PackageManagersEffect: EffectAlert,
		},
		Network: Network{DefaultEffect: EffectAlert},
		Filesystem: Filesystem{
			DefaultEffect: EffectAlert, BackdoorFilesEffect: EffectAlert, NewFilesEffect: EffectAlert, SensitiveFilesEffect: EffectAlert,
		},
		KubernetesEnforcementEffect: EffectAlert,
	}}}
}

// ErrInvalidPolicy marks a policy document that ParsePolicy refuses.
var ErrInvalidPolicy = errors.New("invalid runtime policy")

// ParsePolicy decodes and validates a policy document, and fills every
// effect left empty from its section's Effect. Unknown fields, unnamed or
// duplicate rules, unknown effects, bad ports, addresses and paths are
// refused with an error that names the rule and the field.
func ParsePolicy(doc []byte) (Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrInvalidPolicy, err) //nolint:errorlint // the cause is a message for the user
	}
	if dec.More() {
		return Policy{}, fmt.Errorf("%w: data after the policy object", ErrInvalidPolicy)
	}
	if p.Rules == nil {
		return Policy{}, fmt.Errorf("%w: \"rules\" array is missing", ErrInvalidPolicy)
	}
	var problems []string
	seen := map[string]bool{}
	for i := range p.Rules {
		r := &p.Rules[i]
		at := fmt.Sprintf("rules[%d]", i)
		if strings.TrimSpace(r.Name) == "" {
			problems = append(problems, at+": name is empty")
		} else {
			at = fmt.Sprintf("rules[%d] (%q)", i, r.Name)
			if seen[r.Name] {
				problems = append(problems, at+": a rule of that name comes earlier")
			}
			seen[r.Name] = true
		}
		problems = append(problems, r.validate(at)...)
		r.fill()
	}
	if len(problems) > 0 {
		return Policy{}, fmt.Errorf("%w: %s", ErrInvalidPolicy, strings.Join(problems, "; "))
	}
	return p, nil
}

// effectField is one effect of a rule and its JSON path.
type effectField struct {
	path string
	e    *Effect
}

func (r *Rule) effects() []effectField {
	p, n, f := &r.Processes, &r.Network, &r.Filesystem
	return []effectField{
		{"effect", &r.Effect},
		{"processes.effect", &p.Effect}, {"processes.defaultEffect", &p.DefaultEffect},
		{"processes.deniedList.effect", &p.DeniedList.Effect}, {"processes.modifiedProcessEffect", &p.ModifiedProcessEffect},
		{"processes.cryptoMinersEffect", &p.CryptoMinersEffect}, {"processes.lateralMovementEffect", &p.LateralMovementEffect},
		{"processes.reverseShellEffect", &p.ReverseShellEffect}, {"processes.suidBinariesEffect", &p.SuidBinariesEffect},
		{"processes.packageManagersEffect", &p.PackageManagersEffect},
		{"network.effect", &n.Effect}, {"network.defaultEffect", &n.DefaultEffect}, {"network.deniedIPsEffect", &n.DeniedIPsEffect},
		{"network.listeningPorts.effect", &n.ListeningPorts.Effect}, {"network.outboundPorts.effect", &n.OutboundPorts.Effect},
		{"network.modifiedProcEffect", &n.ModifiedProcEffect}, {"network.portScanEffect", &n.PortScanEffect},
		{"network.rawSocketsEffect", &n.RawSocketsEffect},
		{"filesystem.effect", &f.Effect}, {"filesystem.defaultEffect", &f.DefaultEffect},
		{"filesystem.deniedList.effect", &f.DeniedList.Effect}, {"filesystem.backdoorFilesEffect", &f.BackdoorFilesEffect},
		{"filesystem.newFilesEffect", &f.NewFilesEffect}, {"filesystem.sensitiveFilesEffect", &f.SensitiveFilesEffect},
		{"filesystem.encryptedBinariesEffect", &f.EncryptedBinariesEffect}, {"filesystem.suspiciousElfHeadersEffect", &f.SuspiciousElfHeadersEffect},
		{"kubernetesEnforcementEffect", &r.KubernetesEnforcementEffect}, {"advancedProtectionEffect", &r.AdvancedProtectionEffect},
		{"cloudMetadataEnforcementEffect", &r.CloudMetadataEnforcementEffect}, {"wildFireAnalysis", &r.WildFireAnalysis},
	}
}

// Limits on what one rule may list, so that a policy stays small enough to
// push to every Defender and to compile into kernel maps.
const (
	maxListEntries = 1024
	maxEntryLen    = 4096
)

func (r *Rule) validate(at string) []string {
	var problems []string
	for _, f := range r.effects() {
		if !f.e.valid() {
			problems = append(problems, fmt.Sprintf("%s.%s: %q is not alert, prevent, block or disable", at, f.path, *f.e))
		}
	}
	for j, c := range r.Collections {
		if strings.TrimSpace(c.Name) == "" && len(c.Images)+len(c.Containers)+len(c.Hosts)+len(c.Labels)+len(c.Namespaces)+len(c.Clusters) == 0 {
			problems = append(problems, fmt.Sprintf("%s.collections[%d]: neither a name nor any glob", at, j))
		}
	}
	lists := []struct {
		path  string
		items []string
		check func(string) string
	}{
		{"processes.allowedList", r.Processes.AllowedList, checkProcessEntry},
		{"processes.deniedList.paths", r.Processes.DeniedList.Paths, checkProcessEntry},
		{"filesystem.allowedList", r.Filesystem.AllowedList, checkPathEntry},
		{"filesystem.deniedList.paths", r.Filesystem.DeniedList.Paths, checkPathEntry},
		{"network.allowedIPs", r.Network.AllowedIPs, checkIPEntry},
		{"network.deniedIPs", r.Network.DeniedIPs, checkIPEntry},
	}
	for _, l := range lists {
		if len(l.items) > maxListEntries {
			problems = append(problems, fmt.Sprintf("%s.%s: %d entries, at most %d", at, l.path, len(l.items), maxListEntries))
			continue
		}
		for j, s := range l.items {
			if msg := l.check(s); msg != "" {
				problems = append(problems, fmt.Sprintf("%s.%s[%d]: %q %s", at, l.path, j, truncate(s, 80), msg))
			}
		}
	}
	ports := []struct {
		path string
		rs   []PortRange
	}{
		{"network.listeningPorts.allowed", r.Network.ListeningPorts.Allowed},
		{"network.listeningPorts.denied", r.Network.ListeningPorts.Denied},
		{"network.outboundPorts.allowed", r.Network.OutboundPorts.Allowed},
		{"network.outboundPorts.denied", r.Network.OutboundPorts.Denied},
	}
	for _, l := range ports {
		if len(l.rs) > maxListEntries {
			problems = append(problems, fmt.Sprintf("%s.%s: %d entries, at most %d", at, l.path, len(l.rs), maxListEntries))
			continue
		}
		for j, pr := range l.rs {
			if pr.Start < 1 || pr.Start > 65535 || pr.End != 0 && (pr.End < pr.Start || pr.End > 65535) {
				problems = append(problems, fmt.Sprintf("%s.%s[%d]: port range %d-%d is not within 1-65535 with start <= end", at, l.path, j, pr.Start, pr.End))
			}
		}
	}
	if len(r.DNS) > 0 && !json.Valid(r.DNS) || len(r.CustomRules) > 0 && !json.Valid(r.CustomRules) {
		problems = append(problems, at+": dns or customRules is not JSON")
	}
	return problems
}

func checkProcessEntry(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "is empty"
	case len(s) > maxEntryLen:
		return "is too long"
	case strings.Contains(s, "/") && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "*"):
		return "is neither a name nor an absolute path (glob)"
	}
	return ""
}

func checkPathEntry(s string) string {
	switch {
	case len(s) > maxEntryLen:
		return "is too long"
	case !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "*"):
		return "is not an absolute path, prefix or glob"
	}
	return ""
}

func checkIPEntry(s string) string {
	if _, err := parsePrefix(s); err != nil {
		return "is not an IP address or CIDR"
	}
	return ""
}

// parsePrefix reads "10.0.0.0/8", "2001:db8::/32" or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// fill applies each section's Effect to the effects left empty.
func (r *Rule) fill() {
	set := func(def Effect, es ...*Effect) {
		if def == EffectNone {
			return
		}
		for _, e := range es {
			if *e == EffectNone {
				*e = def
			}
		}
	}
	p, n, f := &r.Processes, &r.Network, &r.Filesystem
	set(r.Effect, &p.Effect, &n.Effect, &f.Effect, &r.KubernetesEnforcementEffect)
	set(p.Effect, &p.DefaultEffect, &p.DeniedList.Effect, &p.ModifiedProcessEffect, &p.CryptoMinersEffect,
		&p.LateralMovementEffect, &p.ReverseShellEffect, &p.SuidBinariesEffect, &p.PackageManagersEffect)
	set(n.Effect, &n.DefaultEffect, &n.DeniedIPsEffect, &n.ListeningPorts.Effect, &n.OutboundPorts.Effect)
	set(f.Effect, &f.DefaultEffect, &f.DeniedList.Effect, &f.BackdoorFilesEffect, &f.NewFilesEffect, &f.SensitiveFilesEffect)
	// A list without an effect still says something: alert on it.
	for _, l := range []struct {
		n int
		e *Effect
	}{
		{len(p.DeniedList.Paths), &p.DeniedList.Effect}, {len(f.DeniedList.Paths), &f.DeniedList.Effect},
		{len(n.DeniedIPs), &n.DeniedIPsEffect}, {len(n.OutboundPorts.Denied), &n.OutboundPorts.Effect},
		{len(n.ListeningPorts.Denied) + len(n.ListeningPorts.Allowed), &n.ListeningPorts.Effect},
	} {
		if l.n > 0 {
			set(EffectAlert, l.e)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Matches reports whether the rule is enabled and scopes r.
func (r Rule) Matches(res collection.Resource) bool {
	return !r.Disabled && collection.Any(r.Collections, res)
}

// Decide returns the first enabled rule whose collections match res
// (Prisma semantics), and false when none does.
func Decide(rules []Rule, res collection.Resource) (Rule, bool) {
	for _, r := range rules {
		if r.Matches(res) {
			return r, true
		}
	}
	return Rule{}, false
}

// Prevents reports whether any enabled rule of p asks for prevention (or
// block), which is when the Defender needs a kernel mechanism.
func (p Policy) Prevents() bool {
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Disabled {
			continue
		}
		for _, f := range r.effects() {
			if f.e.Prevents() {
				return true
			}
		}
	}
	return false
}
