package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"bulwark/api"
	"bulwark/internal/event"
)

// Runtime audit page sizes.
const (
	defaultRuntimeAuditLimit = 100
	maxRuntimeAuditLimit     = 1000
	minContainerPrefix       = 12 // a Docker short ID
)

// nextHeader carries the cursor of the page's last event: pass it as
// ?after= for the next page.
const nextHeader = "X-Bulwark-Next"

// Runtime audit types, as Prisma names them, and the event kinds of each.
// Kinds ending in "." are prefixes.
var runtimeAuditKinds = map[string][]string{
	"processes":  {event.KindProcessExec, event.KindProcessExit, event.KindProcessFork},
	"network":    {"network."},
	"filesystem": {"file."},
	"kernel":     {"privilege.", "namespace.", "kernel.", event.KindPtrace},
	// Verdicts of runtime rules and models; each lists under its own
	// category (processes, network, filesystem, kubernetes).
	"audit": {event.KindRuntimeAudit},
}

// runtimeAuditTypeParams maps ?type= to an audit type; Prisma's singular
// spelling is accepted too.
var runtimeAuditTypeParams = map[string]string{
	"process": "processes", "processes": "processes",
	"network": "network", "filesystem": "filesystem", "kernel": "kernel",
	"audit": "audit",
}

// auditType returns the audit type of a kind, "" when it is no runtime kind.
func auditType(kind string) string {
	for typ, kinds := range runtimeAuditKinds {
		for _, k := range kinds {
			if kind == k || strings.HasSuffix(k, ".") && strings.HasPrefix(kind, k) {
				return typ
			}
		}
	}
	return ""
}

// allRuntimeKinds selects every runtime kind and no other (synthetic,
// sensor.loss…).
func allRuntimeKinds() []string {
	var all []string
	for _, typ := range []string{"processes", "network", "filesystem", "kernel", "audit"} {
		all = append(all, runtimeAuditKinds[typ]...)
	}
	return all
}

// encodeCursor makes the opaque ?after= value of a position.
func encodeCursor(c event.Cursor) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d.%s", c.Time.UnixNano(), c.Seq, c.DefenderID))
}

func decodeCursor(s string) (*event.Cursor, error) {
	bad := badRequest("query parameter after=%q is not a cursor from the %s header", s, nextHeader)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	ns, rest, ok1 := strings.Cut(string(b), ".")
	seq, id, ok2 := strings.Cut(rest, ".")
	t, err1 := strconv.ParseInt(ns, 10, 64)
	n, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || id == "" {
		return nil, bad
	}
	return &event.Cursor{Time: time.Unix(0, t).UTC(), DefenderID: id, Seq: n}, nil
}

// listContainerAudits answers GET /api/v1/audits/runtime/container.
func (s *Server) listContainerAudits(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.listRuntimeAudits(w, r, true)
}

// listHostAudits answers GET /api/v1/audits/runtime/host.
func (s *Server) listHostAudits(w http.ResponseWriter, r *http.Request, _ principal) error {
	return s.listRuntimeAudits(w, r, false)
}

// listRuntimeAudits lists runtime events in containers, or on hosts outside
// any container, oldest first, a page at a time: the answer's X-Bulwark-Next
// header is the ?after= of the next page.
func (s *Server) listRuntimeAudits(w http.ResponseWriter, r *http.Request, containers bool) error {
	q := r.URL.Query()
	f := event.Filter{OrderByTime: true, InContainer: containers, HostOnly: !containers, Host: q.Get("hostname")}
	switch typ := q.Get("type"); {
	case typ == "":
		f.Kinds = allRuntimeKinds()
	case runtimeAuditTypeParams[typ] != "":
		f.Kinds = runtimeAuditKinds[runtimeAuditTypeParams[typ]]
	case auditType(typ) != "":
		f.Kind = typ
	default:
		return badRequest("query parameter type=%q must be process, network, filesystem, kernel, audit or a runtime event kind", typ)
	}
	if c := q.Get("container"); c != "" {
		if !containers {
			return badRequest("query parameter container applies to container audits")
		}
		if len(c) < minContainerPrefix {
			return badRequest("query parameter container=%q must be a container ID or a prefix of at least %d characters", c, minContainerPrefix)
		}
		f.ContainerID = c
	}
	if f.Image = q.Get("image"); f.Image != "" && !containers {
		return badRequest("query parameter image applies to container audits")
	}
	var err error
	if f.Since, err = parseTimeParam(q.Get("from"), "from"); err != nil {
		return err
	}
	if f.Until, err = parseTimeParam(q.Get("to"), "to"); err != nil {
		return err
	}
	if f.Limit, err = parseIntParam(q.Get("limit"), "limit", 0, maxRuntimeAuditLimit); err != nil {
		return err
	}
	if f.Limit == 0 {
		f.Limit = defaultRuntimeAuditLimit
	}
	after := q.Get("after")
	if after != "" {
		if f.After, err = decodeCursor(after); err != nil {
			return err
		}
	}

	events, err := s.store.Events(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list runtime audits: %w", err)
	}
	hostnames := map[string]string{} // Defender ID → hostname, for events that do not name their host
	out := make([]api.RuntimeAudit, 0, len(events))
	for _, e := range events {
		a, rt := toRuntimeAudit(e)
		if rt.Host == "" {
			if err := s.defenderHostnames(r, hostnames); err != nil {
				return err
			}
			a.Hostname = hostnames[e.DefenderID]
		}
		out = append(out, a)
	}
	if n := len(events); n > 0 {
		last := events[n-1]
		after = encodeCursor(event.Cursor{Time: last.Time, DefenderID: last.DefenderID, Seq: last.Seq})
	}
	if after != "" {
		w.Header().Set(nextHeader, after)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// defenderHostnames fills m, when empty, with every Defender's hostname.
func (s *Server) defenderHostnames(r *http.Request, m map[string]string) error {
	if len(m) > 0 {
		return nil
	}
	ds, err := s.store.Defenders(r.Context())
	if err != nil {
		return fmt.Errorf("list runtime audits: hostnames: %w", err)
	}
	for _, d := range ds {
		m[d.ID] = d.Hostname
	}
	m[""] = "" // looked up, even when there are none
	return nil
}

// toRuntimeAudit renders an event; data that is not a Runtime leaves the
// fields it would fill empty.
func toRuntimeAudit(e event.Event) (api.RuntimeAudit, event.Runtime) {
	var rt event.Runtime
	_ = json.Unmarshal(e.Data, &rt) // the store holds what Defenders sent; show what can be read
	a := api.RuntimeAudit{
		ID:       e.DefenderID + ":" + strconv.FormatUint(e.Seq, 10),
		Time:     e.Time,
		Hostname: rt.Host,
		PID:      rt.Process.PID,
		User:     strconv.FormatUint(uint64(rt.Process.UID), 10),
		Type:     auditType(e.Kind),
		Msg:      auditMsg(e.Kind, &rt),
		Kind:     e.Kind,
		Event:    json.RawMessage(e.Data),
	}
	if !json.Valid(e.Data) {
		a.Event = json.RawMessage("null")
	}
	if c := rt.Container; c != nil {
		a.ContainerID, a.ContainerName, a.ImageName = c.ID, c.Name, c.Image
	}
	if e.Kind == event.KindRuntimeAudit {
		auditFields(&a, e.Data)
	}
	return a, rt
}

// auditMsg is the one-line description of a runtime event.
func auditMsg(kind string, rt *event.Runtime) string {
	p := &rt.Process
	by := fmt.Sprintf("by pid %d (parent %d)", p.PID, p.PPID)
	_, verb, _ := strings.Cut(kind, ".")
	switch {
	case kind == event.KindProcessExec:
		what := strings.Join(p.Argv, " ")
		if p.Exe != "" && (what == "" || !strings.HasPrefix(p.Argv[0], "/")) {
			what = strings.TrimSpace(p.Exe + " " + strings.Join(p.Argv[min(1, len(p.Argv)):], " "))
		}
		if p.Truncated {
			what += " …"
		}
		return fmt.Sprintf("exec %s %s", what, by)
	case kind == event.KindProcessExit && rt.Exit != nil:
		if rt.Exit.Signal != 0 {
			return fmt.Sprintf("exit pid %d by signal %d", p.PID, rt.Exit.Signal)
		}
		return fmt.Sprintf("exit pid %d code %d", p.PID, rt.Exit.Code)
	case kind == event.KindProcessFork && rt.Child != nil:
		return fmt.Sprintf("fork pid %d -> %d", p.PID, rt.Child.PID)
	case strings.HasPrefix(kind, "file.") && rt.File != nil:
		switch {
		case rt.File.NewPath != "":
			return fmt.Sprintf("%s %s -> %s", verb, rt.File.Path, rt.File.NewPath)
		case kind == event.KindFileChmod:
			return fmt.Sprintf("chmod %s %#o", rt.File.Path, rt.File.Mode)
		}
		return fmt.Sprintf("%s %s", verb, rt.File.Path)
	case strings.HasPrefix(kind, "network.") && rt.Net != nil:
		n := rt.Net
		src, dst := hostPort(n.SrcAddr, n.SrcPort), hostPort(n.DstAddr, n.DstPort)
		if kind == event.KindNetListen {
			return fmt.Sprintf("listen %s %s", n.Protocol, src)
		}
		return fmt.Sprintf("%s %s %s -> %s", verb, n.Protocol, src, dst)
	case kind == event.KindSetuid && rt.Setuid != nil:
		return fmt.Sprintf("%s uid %d gid %d %s", rt.Setuid.Call, rt.Setuid.UID, rt.Setuid.GID, by)
	case strings.HasPrefix(kind, "namespace.") && rt.Ns != nil:
		return fmt.Sprintf("%s flags %#x %s", verb, rt.Ns.Flags, by)
	case kind == event.KindPtrace && rt.Ptrace != nil:
		return fmt.Sprintf("ptrace request %d on pid %d %s", rt.Ptrace.Request, rt.Ptrace.TargetPID, by)
	case kind == event.KindModuleLoad && rt.Module != nil:
		return fmt.Sprintf("load module %s %s", rt.Module.Name, by)
	}
	return fmt.Sprintf("%s %s", kind, by)
}

func hostPort(addr string, port uint16) string {
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	return addr + ":" + strconv.Itoa(int(port))
}
