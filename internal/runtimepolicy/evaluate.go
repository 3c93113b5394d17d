package runtimepolicy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"bulwark/internal/collection"
	"bulwark/internal/event"
)

// Facts is one runtime event and what the Defender found out about it on
// the host beyond the event itself.
type Facts struct {
	Kind    string // event.KindProcessExec, …
	Runtime event.Runtime
	// Drift: the executed binary was written after its container started.
	Drift bool
	// StdioSockets: the executed process's standard input and output are
	// sockets.
	StdioSockets bool
	// SetuidRoot: the exec made a process of another user root (a
	// setuid-root binary): real user not root, effective user root.
	SetuidRoot bool
}

// Categories of findings, as Prisma's audit types group them.
const (
	CategoryProcesses  = "processes"
	CategoryNetwork    = "network"
	CategoryFilesystem = "filesystem"
	CategoryKubernetes = "kubernetes"
)

// Detections: Prisma's runtime audit (attack) types where it has one.
const (
	DetectDeniedProcess     = "explicitlyDeniedProcess"
	DetectUnexpectedProcess = "unexpectedProcess"
	DetectDrift             = "modifiedProcess"
	DetectCryptoMiner       = "cryptoMinerProcess"
	DetectLateralMovement   = "lateralMovementProcess"
	DetectKubectl           = "kubectlSpawned"
	DetectPackageManager    = "packageManagerProcess"
	DetectReverseShell      = "reverseShell"
	DetectSuidBinary        = "suidBinaries"
	DetectPrivEscalation    = "privilegeEscalation"
	DetectDeniedFile        = "explicitlyDeniedFile"
	DetectUnexpectedWrite   = "unexpectedFileWrite"
	DetectAlteredBinary     = "alteredBinary"
	DetectAdminAccount      = "administrativeAccount"
	DetectSSHAccess         = "sshAccess"
	DetectSecretFile        = "secretFileAccess"
	DetectDeniedIP          = "explicitlyDeniedIP"
	DetectDeniedOutbound    = "explicitlyDeniedOutboundPort"
	DetectUnexpectedOut     = "unexpectedOutboundPort"
	DetectDeniedListen      = "explicitlyDeniedListeningPort"
	DetectUnexpectedListen  = "unexpectedListeningPort"
)

// Kernel enforcement kinds: what a prevented action is, for the mechanism
// that can deny it.
const (
	EnforceExec    = "exec"
	EnforceWrite   = "file-write"
	EnforceConnect = "connect"
	EnforceListen  = "listen"
)

// Finding is what a rule says about one event.
type Finding struct {
	Rule      string `json:"rule"`
	Effect    Effect `json:"effect"`
	Category  string `json:"category"`
	Detection string `json:"detection"`
	Message   string `json:"message"`
	// Enforce names the kernel mechanism kind that prevents the action
	// when the effect is prevent or block and Compile put it into kernel
	// state; "" when the action can only be seen after it happened.
	Enforce string `json:"enforce,omitempty"`
	ModelID string `json:"modelId,omitempty"`
}

// Built-in lists of the detections. Names are executables' base names.
var (
	// minerNames are crypto miners seen in container attacks.
	minerNames = []string{"xmrig", "xmrig-*", "minerd", "cpuminer", "cpuminer-*", "xmr-stak", "xmr-stak-*", "ccminer", "ethminer",
		"nbminer", "t-rex", "cgminer", "bfgminer", "sgminer", "lolminer", "phoenixminer", "nanominer", "kdevtmpfsi", "kinsing"}
	// minerArgs mark a process talking to a mining pool.
	minerArgs = []string{"stratum+tcp://", "stratum+ssl://", "stratum2+tcp://", "--donate-level", "--coin=monero"}
	// minerPorts are common mining pool ports.
	minerPorts = []uint16{3333, 3334, 5555, 7777, 14433, 14444, 45560, 45700}
	// packageManagers install software at runtime.
	packageManagers = []string{"apt", "apt-get", "aptitude", "dpkg", "yum", "dnf", "microdnf", "rpm", "zypper", "apk", "pacman",
		"pip", "pip2", "pip3", "pip3.*", "npm", "yarn", "gem", "cargo", "conda", "easy_install"}
	// lateralTools reach other machines.
	lateralTools = []string{"ssh", "scp", "sftp", "telnet", "rsh", "rlogin", "rcp", "sshpass"}
	kubectlNames = []string{"kubectl", "oc"}
	// shells are interpreters a reverse shell runs.
	shells = []string{"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish"}
	// multiCall binaries are many programs, chosen by argv[0] ("nc") or by
	// their first argument ("busybox nc").
	multiCall = []string{"busybox", "toybox"}
	// binaryDirs hold executables and libraries: writes there alter binaries.
	binaryDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
		"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/libexec"}
	// adminFiles are account files: writes there create or change accounts.
	adminFiles = []string{"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d",
		"/etc/ld.so.preload", "/etc/crontab", "/etc/cron.d", "/var/spool/cron", "/etc/pam.d"}
	// sshFiles grant remote access.
	sshFiles = []string{"/root/.ssh", "/home/*/.ssh/authorized_keys*", "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d"}
	// secretFiles hold credentials; reading them is how attackers harvest
	// them. Few and precise: the sensor reports reads of these only.
	secretFiles = []string{"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/security/opasswd",
		"/etc/ssh/ssh_host_*_key", "/root/.ssh/id_*"}
)

// SensitiveReadPaths are the files whose reads the sensor must report for
// the secret file detection (absolute prefixes; globs cut at their first
// wildcard).
func SensitiveReadPaths() []string {
	var out []string
	for _, p := range secretFiles {
		if i := strings.IndexAny(p, "*?"); i >= 0 {
			p = path.Dir(p[:i] + "x") // the directory the glob is in
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// WatchedWritePaths are directories whose writes the detections need the
// sensor to report, beyond what it always reports.
func WatchedWritePaths() []string {
	return []string{"/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/lib64", "/usr/lib64", "/usr/libexec"}
}

// ResourceOf is what collections match for a runtime event: its container
// (image, name, namespace) and host.
func ResourceOf(rt event.Runtime) collection.Resource {
	r := collection.Resource{Host: rt.Host}
	if c := rt.Container; c != nil {
		r.Image, r.Container, r.Namespace = c.Image, c.Name, c.Namespace
		if r.Container == "" {
			r.Container = c.ID
		}
	}
	return r
}

// baseName is a process's executable name.
func baseName(p event.Process) string {
	if p.Exe != "" {
		return path.Base(p.Exe)
	}
	return p.Comm
}

// applet is the program a multi-call binary runs as, "" for any other.
func applet(p event.Process) string {
	if !slices.Contains(multiCall, baseName(p)) || len(p.Argv) == 0 {
		return ""
	}
	a := path.Base(p.Argv[0])
	if slices.Contains(multiCall, a) {
		if len(p.Argv) < 2 || strings.HasPrefix(p.Argv[1], "-") {
			return ""
		}
		a = path.Base(p.Argv[1])
	}
	if a == "." || a == "/" || a == baseName(p) {
		return ""
	}
	return a
}

// ProgramName is what a process runs as: its executable's base name, or
// the applet of a multi-call binary such as busybox, which shells run as
// /proc/self/exe with the applet's name as argv[0].
func ProgramName(p event.Process) string {
	if a := applet(p); a != "" {
		return a
	}
	return baseName(p)
}

// IsShell reports whether p runs a shell.
func IsShell(p event.Process) bool { return slices.Contains(shells, ProgramName(p)) }

// matchProcess reports whether a list entry names p: entries with a "/" are
// globs over its path, others over its base name.
func matchProcess(entry string, p event.Process) bool {
	if strings.Contains(entry, "/") {
		return collection.Glob(entry, p.Exe)
	}
	return collection.Glob(entry, ProgramName(p))
}

func anyProcess(entries []string, p event.Process) (string, bool) {
	for _, e := range entries {
		if matchProcess(e, p) {
			return e, true
		}
	}
	return "", false
}

func nameIn(names []string, p event.Process) bool {
	n := ProgramName(p)
	return slices.ContainsFunc(names, func(g string) bool { return collection.Glob(g, n) })
}

// matchPath reports whether entry names p: a glob when it has wildcards,
// else a prefix at a path boundary.
func matchPath(entry, p string) bool {
	if strings.ContainsAny(entry, "*?") {
		return collection.Glob(entry, p) || collection.Glob(entry+"/*", p)
	}
	entry = strings.TrimSuffix(entry, "/")
	return entry == "" || p == entry || strings.HasPrefix(p, entry+"/")
}

func anyPath(entries []string, p string) (string, bool) {
	for _, e := range entries {
		if matchPath(e, p) {
			return e, true
		}
	}
	return "", false
}

func anyIP(entries []string, addr string) (string, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", false
	}
	a = a.Unmap()
	for _, e := range entries {
		if p, err := parsePrefix(e); err == nil && p.Contains(a) {
			return e, true
		}
	}
	return "", false
}

// writtenPaths are the paths a file event changes.
func writtenPaths(kind string, f *event.File) []string {
	if f == nil {
		return nil
	}
	switch kind {
	case event.KindFileWrite, event.KindFileCreate, event.KindFileUnlink, event.KindFileChmod:
		return []string{f.Path}
	case event.KindFileRename:
		return []string{f.Path, f.NewPath}
	}
	return nil
}

// evaluation collects the findings of one event under one rule.
type evaluation struct {
	r   *Rule
	out []Finding
}

func (ev *evaluation) add(e Effect, category, detection, enforce, msg string) {
	if !e.Active() {
		return
	}
	f := Finding{Rule: ev.r.Name, Effect: e, Category: category, Detection: detection, Message: msg}
	if e.Prevents() {
		f.Enforce = enforce
	}
	ev.out = append(ev.out, f)
}

// Evaluate is what rule r says about one event, given the model learned
// for the event's image (nil when there is none, or for a host). A model
// still learning raises no deviation. Findings come in a fixed order:
// denied lists, detections, model deviations.
func Evaluate(r Rule, m *Model, f Facts) []Finding {
	ev := evaluation{r: &r}
	rt := &f.Runtime
	inContainer := rt.Container != nil
	active := m != nil && m.Active()
	switch f.Kind {
	case event.KindProcessExec:
		if rt.Existing {
			return nil // running before the Defender: not an action it saw
		}
		if !r.Processes.Disabled {
			ev.exec(m, active, inContainer, f)
		}
	case event.KindSetuid:
		if !r.Processes.Disabled && rt.Setuid != nil && rt.Setuid.UID == 0 && rt.Process.UID != 0 && rt.Result == 0 &&
			strings.Contains(rt.Setuid.Call, "uid") {
			ev.add(r.Processes.SuidBinariesEffect, CategoryProcesses, DetectPrivEscalation, "",
				fmt.Sprintf("%s raised user %d to root with %s", procName(rt.Process), rt.Process.UID, rt.Setuid.Call))
		}
	case event.KindFileWrite, event.KindFileCreate, event.KindFileUnlink, event.KindFileRename, event.KindFileChmod:
		if !r.Filesystem.Disabled {
			for _, p := range writtenPaths(f.Kind, rt.File) {
				ev.write(m, active, inContainer, p, f)
			}
		}
	case event.KindFileRead:
		if !r.Filesystem.Disabled && rt.File != nil {
			if hit, ok := anyPath(secretFiles, rt.File.Path); ok {
				ev.add(r.Filesystem.SensitiveFilesEffect, CategoryFilesystem, DetectSecretFile, "",
					fmt.Sprintf("%s read %s (sensitive: %s)", procName(rt.Process), rt.File.Path, hit))
			}
		}
	case event.KindNetConnect:
		if rt.Net != nil {
			ev.connect(m, active, f)
		}
	case event.KindNetListen:
		if !r.Network.Disabled && rt.Net != nil {
			ev.listen(m, active, inContainer, f)
		}
	}
	for i := range ev.out {
		if m != nil && strings.HasPrefix(ev.out[i].Detection, "unexpected") {
			ev.out[i].ModelID = m.ID
		}
	}
	return ev.out
}

func procName(p event.Process) string {
	return fmt.Sprintf("%s (pid %d)", processKey(p), p.PID)
}

func (ev *evaluation) exec(m *Model, active, inContainer bool, f Facts) {
	r, p := ev.r, f.Runtime.Process
	ps := &r.Processes
	name := procName(p)
	if entry, ok := anyProcess(ps.DeniedList.Paths, p); ok {
		ev.add(ps.DeniedList.Effect, CategoryProcesses, DetectDeniedProcess, EnforceExec,
			fmt.Sprintf("%s is denied by rule %q (%s)", name, r.Name, entry))
	}
	_, allowed := anyProcess(ps.AllowedList, p)
	if f.Drift && inContainer && !allowed {
		ev.add(ps.ModifiedProcessEffect, CategoryProcesses, DetectDrift, "",
			fmt.Sprintf("%s was written after the container started", name))
	}
	argv := strings.Join(p.Argv, " ")
	if !allowed && (nameIn(minerNames, p) || slices.ContainsFunc(minerArgs, func(a string) bool { return strings.Contains(argv, a) })) {
		ev.add(ps.CryptoMinersEffect, CategoryProcesses, DetectCryptoMiner, enforceIfName(minerNames, p),
			fmt.Sprintf("%s looks like a crypto miner", name))
	}
	if f.StdioSockets && nameIn(shells, p) {
		ev.add(ps.ReverseShellEffect, CategoryProcesses, DetectReverseShell, "",
			fmt.Sprintf("shell %s has sockets for standard input and output", name))
	}
	if f.SetuidRoot {
		ev.add(ps.SuidBinariesEffect, CategoryProcesses, DetectSuidBinary, "",
			fmt.Sprintf("%s made user %d root (setuid binary)", name, p.UID))
	}
	if inContainer && !allowed {
		switch {
		case nameIn(packageManagers, p):
			ev.add(ps.PackageManagersEffect, CategoryProcesses, DetectPackageManager, EnforceExec,
				fmt.Sprintf("package manager %s ran in a container", name))
		case nameIn(lateralTools, p):
			ev.add(ps.LateralMovementEffect, CategoryProcesses, DetectLateralMovement, EnforceExec,
				fmt.Sprintf("remote access tool %s ran in a container", name))
		case nameIn(kubectlNames, p):
			ev.add(r.KubernetesEnforcementEffect, CategoryKubernetes, DetectKubectl, EnforceExec,
				fmt.Sprintf("%s ran in a container", name))
		}
	}
	if active && !allowed && !m.HasProcess(p) {
		ev.add(ps.DefaultEffect, CategoryProcesses, DetectUnexpectedProcess, "",
			fmt.Sprintf("%s is not in the model of %s", name, m.Image))
	}
}

// enforceIfName: miners are denied at exec by name only; an argument match
// is seen after the fact.
func enforceIfName(names []string, p event.Process) string {
	if nameIn(names, p) {
		return EnforceExec
	}
	return ""
}

func (ev *evaluation) write(m *Model, active, inContainer bool, p string, f Facts) {
	r := ev.r
	fs := &r.Filesystem
	name := procName(f.Runtime.Process)
	verb := strings.TrimPrefix(f.Kind, "file.")
	if entry, ok := anyPath(fs.DeniedList.Paths, p); ok {
		ev.add(fs.DeniedList.Effect, CategoryFilesystem, DetectDeniedFile, enforceWrite(f.Kind, entry),
			fmt.Sprintf("%s: %s %s is denied by rule %q (%s)", name, verb, p, r.Name, entry))
	}
	if hit, ok := anyPath(adminFiles, p); ok {
		ev.add(fs.BackdoorFilesEffect, CategoryFilesystem, DetectAdminAccount, enforceWrite(f.Kind, hit),
			fmt.Sprintf("%s: %s %s (account files)", name, verb, p))
	} else if hit, ok := anyPath(sshFiles, p); ok {
		ev.add(fs.BackdoorFilesEffect, CategoryFilesystem, DetectSSHAccess, enforceWrite(f.Kind, hit),
			fmt.Sprintf("%s: %s %s (SSH access)", name, verb, p))
	}
	_, allowed := anyPath(fs.AllowedList, p)
	if hit, ok := anyPath(binaryDirs, p); ok && inContainer && !allowed {
		ev.add(fs.NewFilesEffect, CategoryFilesystem, DetectAlteredBinary, enforceWrite(f.Kind, hit),
			fmt.Sprintf("%s: %s %s (binary directory %s)", name, verb, p, hit))
	}
	if active && !allowed && !m.HasPath(p) {
		ev.add(fs.DefaultEffect, CategoryFilesystem, DetectUnexpectedWrite, "",
			fmt.Sprintf("%s: %s %s, a directory not in the model of %s", name, verb, p, m.Image))
	}
}

// enforceWrite: the kernel denies opens for writing (and creates) under a
// prefix; unlink, rename and chmod are seen after the fact, and so are glob
// entries.
func enforceWrite(kind, entry string) string {
	if (kind == event.KindFileWrite || kind == event.KindFileCreate) && !strings.ContainsAny(entry, "*?") {
		return EnforceWrite
	}
	return ""
}

func (ev *evaluation) connect(m *Model, active bool, f Facts) {
	r, rt := ev.r, &f.Runtime
	n := rt.Net
	name := procName(rt.Process)
	dst := hostPort(n.DstAddr, n.DstPort)
	if !r.Processes.Disabled {
		if nameIn(shells, rt.Process) && !isLoopback(n.DstAddr) {
			ev.add(r.Processes.ReverseShellEffect, CategoryProcesses, DetectReverseShell, "",
				fmt.Sprintf("shell %s connected to %s", name, dst))
		}
		if slices.Contains(minerPorts, n.DstPort) {
			if _, allowed := anyProcess(r.Processes.AllowedList, rt.Process); !allowed {
				ev.add(r.Processes.CryptoMinersEffect, CategoryProcesses, DetectCryptoMiner, "",
					fmt.Sprintf("%s connected to %s, a mining pool port", name, dst))
			}
		}
	}
	if r.Network.Disabled {
		return
	}
	nw := &r.Network
	if entry, ok := anyIP(nw.DeniedIPs, n.DstAddr); ok {
		ev.add(nw.DeniedIPsEffect, CategoryNetwork, DetectDeniedIP, EnforceConnect,
			fmt.Sprintf("%s connected to %s, denied by rule %q (%s)", name, dst, r.Name, entry))
	}
	if inRanges(nw.OutboundPorts.Denied, n.DstPort) {
		ev.add(nw.OutboundPorts.Effect, CategoryNetwork, DetectDeniedOutbound, EnforceConnect,
			fmt.Sprintf("%s connected to %s: port %d is denied by rule %q", name, dst, n.DstPort, r.Name))
	}
	_, ipAllowed := anyIP(nw.AllowedIPs, n.DstAddr)
	if active && rt.Container != nil && !ipAllowed && !inRanges(nw.OutboundPorts.Allowed, n.DstPort) && !m.HasOutboundPort(n.DstPort) {
		ev.add(nw.DefaultEffect, CategoryNetwork, DetectUnexpectedOut, "",
			fmt.Sprintf("%s connected to %s: port %d is not in the model of %s", name, dst, n.DstPort, m.Image))
	}
}

func (ev *evaluation) listen(m *Model, active, inContainer bool, f Facts) {
	r, rt := ev.r, &f.Runtime
	nw := &r.Network
	port := rt.Net.SrcPort
	name := procName(rt.Process)
	learned := active && m.HasListeningPort(port)
	switch {
	case inRanges(nw.ListeningPorts.Denied, port):
		ev.add(nw.ListeningPorts.Effect, CategoryNetwork, DetectDeniedListen, EnforceListen,
			fmt.Sprintf("%s listens on port %d, denied by rule %q", name, port, r.Name))
	case len(nw.ListeningPorts.Allowed) > 0:
		if !inRanges(nw.ListeningPorts.Allowed, port) && !learned {
			ev.add(nw.ListeningPorts.Effect, CategoryNetwork, DetectDeniedListen, EnforceListen,
				fmt.Sprintf("%s listens on port %d, which rule %q does not allow", name, port, r.Name))
		}
	case active && inContainer && !learned:
		// Compile lets only the learned ports be bound when the default
		// effect prevents.
		ev.add(nw.DefaultEffect, CategoryNetwork, DetectUnexpectedListen, EnforceListen,
			fmt.Sprintf("%s listens on port %d, which is not in the model of %s", name, port, m.Image))
	}
}

func isLoopback(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && a.Unmap().IsLoopback()
}

func hostPort(addr string, port uint16) string {
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

// Strongest is the strongest effect among fs (EffectNone when empty).
func Strongest(fs []Finding) Effect {
	e := EffectNone
	for _, f := range fs {
		if f.Effect.rank() > e.rank() {
			e = f.Effect
		}
	}
	return e
}
