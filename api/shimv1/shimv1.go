// Package shimv1 is version 1 of the contract between bulwark-shim, which
// stands in place of runc, and the local Defender.
//
// On `runc create`, `runc run` and `runc restore` the shim sends one Request
// (the bundle's config.json and the container's facts) over the Defender's
// unix socket, half-closes its side, and reads one Decision. Allowed: it
// execs the original runc; blocked: it exits non-zero with Decision.Message.
// When the Defender cannot be reached or does not answer within
// Settings.Timeout, the shim fails open, or closed when the rule that decides
// for the container says FailClosed, and leaves an Audit record in the audit
// directory for the Defender to send on.
//
// Files: Manifest (written by install next to the shim, `<runc>.bulwark.json`)
// names the original runc and where the socket, the settings and the audit
// directory are; Settings (written by the Defender on every policy change)
// hold the timeout and the rules the shim needs to decide alone.
//
// The shim imports only the standard library and this package, so nothing
// here may pull in more.
package shimv1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the version of every message and file of this contract.
const Version = 1

// DefaultTimeout is how long the shim waits for a decision before it fails
// open (or closed), when the Settings do not say.
const DefaultTimeout = 60 * time.Second

// MaxTimeout bounds the configurable timeout: a container engine waits for
// runc, and nobody waits an hour.
const MaxTimeout = time.Hour

// Files next to the shim: the original runc moved aside, and the manifest.
const (
	OriginalSuffix = ".bulwark-orig"
	ManifestSuffix = ".bulwark.json"
)

// Where the shim looks for the Defender when no manifest says (the
// Defender's default state dir is /var/lib/bulwark-defender; its shim dir
// holds the socket, the settings and the audit directory).
const (
	DefaultDir   = "/var/lib/bulwark-defender/shim"
	SocketName   = "shim.sock"
	SettingsName = "settings.json"
	AuditDirName = "audit"
)

// Bounds on what each side reads.
const (
	MaxRequestBytes  = 8 << 20  // config.json plus facts
	MaxDecisionBytes = 64 << 10 // one decision
	MaxFileBytes     = 1 << 20  // manifest, settings, one audit record
)

// Commands the shim asks about; every other runc subcommand passes through.
const (
	CommandCreate  = "create"
	CommandRun     = "run"
	CommandRestore = "restore" // creates a container from a checkpoint and a bundle
)

// Decides reports whether the runc subcommand creates a container, so that
// the shim must ask before it runs.
func Decides(subcommand string) bool {
	return subcommand == CommandCreate || subcommand == CommandRun || subcommand == CommandRestore
}

// Verdicts of a decision, as Decisions and audit events name them.
const (
	VerdictAllowed = "allowed"
	VerdictBlocked = "blocked"
	// The Defender did not answer within the timeout.
	VerdictFailOpenTimeout   = "fail-open-timeout"
	VerdictFailClosedTimeout = "fail-closed-timeout"
	// The socket is absent or refuses connections (Defender down).
	VerdictFailOpenUnreachable   = "fail-open-unreachable"
	VerdictFailClosedUnreachable = "fail-closed-unreachable"
	// The exchange broke, or the Defender could not evaluate the container.
	VerdictFailOpenError   = "fail-open-error"
	VerdictFailClosedError = "fail-closed-error"
)

// Allows reports whether a verdict lets the container be created.
func Allows(verdict string) bool {
	switch verdict {
	case VerdictAllowed, VerdictFailOpenTimeout, VerdictFailOpenUnreachable, VerdictFailOpenError:
		return true
	}
	return false
}

func knownVerdict(v string) bool {
	switch v {
	case VerdictAllowed, VerdictBlocked, VerdictFailOpenTimeout, VerdictFailClosedTimeout,
		VerdictFailOpenUnreachable, VerdictFailClosedUnreachable, VerdictFailOpenError, VerdictFailClosedError:
		return true
	}
	return false
}

// Request asks whether a container may be created.
type Request struct {
	V       int    `json:"v"`
	Command string `json:"command"` // CommandCreate, CommandRun, CommandRestore
	// ID is the container ID runc was given.
	ID string `json:"id"`
	// Bundle is the bundle directory (runc's --bundle, else its working
	// directory); Root is runc's --root, which tells the engine apart
	// (containerd: /run/containerd/runc/<namespace>, docker:
	// /run/docker/runtime-runc/moby).
	Bundle string `json:"bundle"`
	Root   string `json:"root,omitempty"`
	// Container holds the facts the shim read from the annotations.
	Container Container `json:"container"`
	// Config is the bundle's config.json as read by the shim.
	Config json.RawMessage `json:"config"`
	// PID is the shim's process ID (it becomes runc's when allowed).
	PID int `json:"pid,omitempty"`
}

// Container is what the annotations of a bundle say about its container.
type Container struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	Image     string `json:"image,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// ContainerFrom returns the facts of container id from its OCI annotations
// (CRI, CRI-O and Kubernetes keys; io.bulwark.image for plain runc), the
// first key present winning.
func ContainerFrom(id string, annotations map[string]string) Container {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := annotations[k]; v != "" {
				return v
			}
		}
		return ""
	}
	return Container{
		ID:        id,
		Name:      first("io.kubernetes.cri.container-name", "io.kubernetes.container.name"),
		Image:     first("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "io.bulwark.image", "org.opencontainers.image.ref.name"),
		Pod:       first("io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"),
		Namespace: first("io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"),
	}
}

// Decision answers a Request.
type Decision struct {
	V       int    `json:"v"`
	Verdict string `json:"verdict"`
	// Rule is the rule that decided ("" when none did).
	Rule string `json:"rule,omitempty"`
	// Message is the one line the shim prints when the container is
	// refused, e.g. `bulwark: blocked by rule "prod-strict": 5515 - Do not
	// share the host's process namespace`.
	Message string `json:"message,omitempty"`
}

// Allowed reports whether the decision lets the container be created.
func (d Decision) Allowed() bool { return Allows(d.Verdict) }

// Manifest is written by install next to the shim (`<runc>.bulwark.json`):
// what was moved aside and where the shim finds the Defender.
type Manifest struct {
	V int `json:"v"`
	// Path is where runc was and the shim now is; Original is where runc
	// went (Path + OriginalSuffix).
	Path     string `json:"path"`
	Original string `json:"original"`
	// SHA256, Mode, UID and GID describe the original runc, so that
	// uninstall can verify it before it puts it back.
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"` // permission and setuid/setgid/sticky bits
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	// RuncVersion is the first line of `runc --version`.
	RuncVersion string `json:"runcVersion,omitempty"`
	// ShimSHA256 is the shim binary that was put in place.
	ShimSHA256 string `json:"shimSha256"`
	// Socket, Settings and AuditDir are the Defender's decision socket, its
	// settings file for the shim and the directory for audit records.
	Socket      string    `json:"socket"`
	Settings    string    `json:"settings"`
	AuditDir    string    `json:"auditDir"`
	InstalledAt time.Time `json:"installedAt"`
}

// Settings are what the shim needs to decide alone: how long to wait, and
// the rules whose FailClosed refuses a container when the Defender cannot be
// asked. The Defender rewrites them on every policy change.
type Settings struct {
	V int `json:"v"`
	// TimeoutMS is how long to wait for a decision; 0 means DefaultTimeout.
	TimeoutMS      int64 `json:"timeoutMs,omitempty"`
	PolicyRevision int64 `json:"policyRevision,omitempty"`
	// Host and Cluster are this host's, for collections.
	Host    string `json:"host,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Rules are the compliance rules in order, up to the last one that is
	// FailClosed (the rest cannot matter); the first that matches decides.
	Rules []Rule `json:"rules,omitempty"`
}

// Timeout is how long the shim waits for a decision.
func (s Settings) Timeout() time.Duration {
	if s.TimeoutMS <= 0 || s.TimeoutMS > MaxTimeout.Milliseconds() {
		return DefaultTimeout
	}
	return time.Duration(s.TimeoutMS) * time.Millisecond
}

// Rule is the part of a compliance rule the shim needs.
type Rule struct {
	Name       string `json:"name"`
	FailClosed bool   `json:"failClosed,omitempty"`
	// Collections scope the rule as in the compliance policy: none means
	// every container.
	Collections []Collection `json:"collections,omitempty"`
}

// Collection is a set of containers given by globs, as in the compliance
// policy ("*" matches any string, "?" one character; an empty list matches
// everything; labels are "key:value" globs).
type Collection struct {
	Images     []string `json:"images,omitempty"`
	Containers []string `json:"containers,omitempty"`
	Hosts      []string `json:"hosts,omitempty"`
	Labels     []string `json:"labels,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	Clusters   []string `json:"clusters,omitempty"`
}

// FailClosed returns the rule that decides for c and whether it refuses c
// when the Defender cannot be asked.
func (s Settings) FailClosed(c Container) (rule string, closed bool) {
	for _, r := range s.Rules {
		if len(r.Collections) == 0 || anyCollection(r.Collections, c, s.Host, s.Cluster) {
			return r.Name, r.FailClosed
		}
	}
	return "", false
}

func anyCollection(cs []Collection, c Container, host, cluster string) bool {
	for _, col := range cs {
		if anyGlob(col.Images, c.Image) && anyGlob(col.Containers, c.Name) && anyGlob(col.Hosts, host) &&
			anyGlob(col.Namespaces, c.Namespace) && anyGlob(col.Clusters, cluster) && labelsMatch(col.Labels) {
			return true
		}
	}
	return false
}

// labelsMatch: the shim knows no labels, so only a list that is empty or
// holds "*" matches, as the compliance engine decides for a container
// without labels.
func labelsMatch(globs []string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if g == "*" {
			return true
		}
	}
	return false
}

func anyGlob(globs []string, s string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if Glob(g, s) {
			return true
		}
	}
	return false
}

// Glob reports whether s matches pattern: "*" matches any sequence of
// characters (slashes too), "?" any one character. It agrees with the
// compliance engine's Glob (a test compares them).
func Glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Audit is what the shim records when it decided without the Defender
// (timeout, unreachable, error): one JSON file per decision in the audit
// directory, which the Defender sends on as a shim.decision event.
type Audit struct {
	V         int       `json:"v"`
	Time      time.Time `json:"time"`
	Verdict   string    `json:"verdict"`
	Command   string    `json:"command"`
	Bundle    string    `json:"bundle,omitempty"`
	Root      string    `json:"root,omitempty"`
	Container Container `json:"container"`
	// Rule is the rule that decided for the container in the Settings (its
	// FailClosed made the verdict), "" when none matched.
	Rule string `json:"rule,omitempty"`
	// Error says why the Defender could not decide.
	Error     string `json:"error,omitempty"`
	ElapsedMS int64  `json:"elapsedMs"`
	PID       int    `json:"pid,omitempty"`
}

// ErrInvalid marks a message or file that breaks this contract.
var ErrInvalid = errors.New("invalid shim message")

// DecodeRequest parses and checks a Request.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if len(b) > MaxRequestBytes {
		return r, fmt.Errorf("%w: request of %d bytes is over the %d-byte limit", ErrInvalid, len(b), MaxRequestBytes)
	}
	if err := decodeStrict(b, &r); err != nil {
		return Request{}, fmt.Errorf("%w: request: %v", ErrInvalid, err) //nolint:errorlint // one error kind for callers
	}
	var problems []string
	if r.V != Version {
		problems = append(problems, fmt.Sprintf("version %d, want %d", r.V, Version))
	}
	if !Decides(r.Command) {
		problems = append(problems, fmt.Sprintf("command %q is not create, run or restore", truncate(r.Command, 32)))
	}
	if r.ID == "" || len(r.ID) > 1024 {
		problems = append(problems, "container id empty or over 1024 bytes")
	}
	if r.Bundle == "" {
		problems = append(problems, "bundle empty")
	}
	if len(bytes.TrimSpace(r.Config)) == 0 || bytes.TrimSpace(r.Config)[0] != '{' {
		problems = append(problems, "config is not a JSON object")
	}
	if len(problems) > 0 {
		return Request{}, fmt.Errorf("%w: request: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return r, nil
}

// DecodeDecision parses and checks a Decision.
func DecodeDecision(b []byte) (Decision, error) {
	var d Decision
	if len(b) > MaxDecisionBytes {
		return d, fmt.Errorf("%w: decision of %d bytes is over the %d-byte limit", ErrInvalid, len(b), MaxDecisionBytes)
	}
	if err := decodeStrict(b, &d); err != nil {
		return Decision{}, fmt.Errorf("%w: decision: %v", ErrInvalid, err) //nolint:errorlint // one error kind for callers
	}
	switch {
	case d.V != Version:
		return Decision{}, fmt.Errorf("%w: decision version %d, want %d", ErrInvalid, d.V, Version)
	case !knownVerdict(d.Verdict):
		return Decision{}, fmt.Errorf("%w: unknown verdict %q", ErrInvalid, truncate(d.Verdict, 32))
	}
	return d, nil
}

// DecodeManifest parses and checks a Manifest.
func DecodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := decodeFile(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrInvalid, err) //nolint:errorlint // one error kind for callers
	}
	switch {
	case m.V != Version:
		return Manifest{}, fmt.Errorf("%w: manifest version %d, want %d", ErrInvalid, m.V, Version)
	case m.Path == "" || m.Original == "":
		return Manifest{}, fmt.Errorf("%w: manifest without path or original", ErrInvalid)
	case len(m.SHA256) != 64:
		return Manifest{}, fmt.Errorf("%w: manifest sha256 %q is not 64 hex digits", ErrInvalid, truncate(m.SHA256, 70))
	}
	return m, nil
}

// DecodeSettings parses and checks Settings.
func DecodeSettings(b []byte) (Settings, error) {
	var s Settings
	if err := decodeFile(b, &s); err != nil {
		return Settings{}, fmt.Errorf("%w: settings: %v", ErrInvalid, err) //nolint:errorlint // one error kind for callers
	}
	switch {
	case s.V != Version:
		return Settings{}, fmt.Errorf("%w: settings version %d, want %d", ErrInvalid, s.V, Version)
	case s.TimeoutMS < 0 || s.TimeoutMS > MaxTimeout.Milliseconds():
		return Settings{}, fmt.Errorf("%w: timeout %d ms is not within 0..%d", ErrInvalid, s.TimeoutMS, MaxTimeout.Milliseconds())
	}
	return s, nil
}

// DecodeAudit parses and checks an Audit record.
func DecodeAudit(b []byte) (Audit, error) {
	var a Audit
	if err := decodeFile(b, &a); err != nil {
		return Audit{}, fmt.Errorf("%w: audit record: %v", ErrInvalid, err) //nolint:errorlint // one error kind for callers
	}
	switch {
	case a.V != Version:
		return Audit{}, fmt.Errorf("%w: audit record version %d, want %d", ErrInvalid, a.V, Version)
	case !knownVerdict(a.Verdict):
		return Audit{}, fmt.Errorf("%w: audit record with unknown verdict %q", ErrInvalid, truncate(a.Verdict, 32))
	case a.Container.ID == "":
		return Audit{}, fmt.Errorf("%w: audit record without a container id", ErrInvalid)
	}
	return a, nil
}

func decodeFile(b []byte, v any) error {
	if len(b) > MaxFileBytes {
		return fmt.Errorf("%d bytes is over the %d-byte limit", len(b), MaxFileBytes)
	}
	return decodeStrict(b, v)
}

// decodeStrict decodes one JSON value into v; data after it is an error.
// Unknown fields are accepted so that a newer Defender or shim can add some.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return errors.New("data after the JSON value")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
