package console_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"bulwark/api"
	"bulwark/internal/console/consoletest"
	"bulwark/internal/defender"
	"bulwark/internal/event"
	rp "bulwark/internal/runtimepolicy"
)

func TestRuntimePolicyAPI(t *testing.T) {
	c := consoletest.Start(t)
	for _, k := range []rp.Kind{rp.Container, rp.Host} {
		path := "/api/v1/policies/" + k.PolicyType()
		var p rp.Policy
		getInto(t, c, path, &p)
		if len(p.Rules) != 2 || p.Rules[0].Name != rp.RuleIgnoreBulwark {
			t.Errorf("GET %s before any PUT = %+v, want the default policy", path, p)
		}
	}
	bad := []struct{ body, want string }{
		{`{"rules":[{"name":"r","processes":{"cryptoMinersEffect":"kill"}}]}`, `rules[0] ("r").processes.cryptoMinersEffect: "kill" is not alert, prevent, block or disable`},
		{`{"rules":[{"name":"r","network":{"deniedIPs":["nope"]}}]}`, `network.deniedIPs[0]: "nope" is not an IP address or CIDR`},
		{`{"rules":[{"name":"r","proceses":{}}]}`, `unknown field "proceses"`},
	}
	for _, tc := range bad {
		r := mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/runtime/container", body: tc.body}), 400)
		if msg := r.errMsg(t); !strings.Contains(msg, tc.want) {
			t.Errorf("PUT %s = %q, want it to say %q", tc.body, msg, tc.want)
		}
	}
	doc := `{"rules":[{"name":"deny nc","collections":[{"name":"web","images":["web:*"]}],"processes":{"deniedList":{"effect":"prevent","paths":["nc"]}}}]}`
	r := mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/policies/runtime/container", body: doc}), 200)
	var rev struct{ Revision int64 }
	if err := json.Unmarshal(r.body, &rev); err != nil || rev.Revision < 1 {
		t.Fatalf("PUT answer %s", r.body)
	}
	var p rp.Policy
	getInto(t, c, "/api/v1/policies/runtime/container", &p)
	if len(p.Rules) != 1 || p.Rules[0].Name != "deny nc" || p.Rules[0].Processes.DeniedList.Paths[0] != "nc" {
		t.Errorf("GET after PUT = %+v", p)
	}
	// The host policy is still the default; the models' overrides are no
	// policy type of the generic endpoint.
	getInto(t, c, "/api/v1/policies/runtime/host", &p)
	if p.ID != "hostRuntime" {
		t.Errorf("host policy = %+v, want the default", p)
	}
	mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/policies/runtime/models"}), 400)
	// Every change is in the management audit log.
	var audits []struct{ Diff string }
	getInto(t, c, "/api/v1/audits/mgmt", &audits)
	if !slices.ContainsFunc(audits, func(a struct{ Diff string }) bool {
		return strings.Contains(a.Diff, "replaced the container runtime policy")
	}) {
		t.Errorf("no audit record of the PUT: %+v", audits)
	}
}

// TestLearnedModelFlagsUnseenProcess runs the acceptance line through a
// real Console and Defender: a model learns a container's processes, then
// an unseen process produces an audit, an incident with the container's
// forensic record, and the model can be read, edited and relearned.
func TestLearnedModelFlagsUnseenProcess(t *testing.T) {
	c := consoletest.Start(t)
	const window = 1500 * time.Millisecond
	d, _ := startDefender(t, bundle(t, c, "learner"), func(cfg *defender.Config) {
		cfg.LearningWindow = window
		cfg.ModelReportInterval = 100 * time.Millisecond
	})
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["learner"].Connected })

	web := &event.Container{ID: "feedfacecafe0123456789", Name: "web-0", Image: "registry.local/web:1", Namespace: "prod"}
	pid := uint32(1 << 30) // no such process: the Defender's /proc reads find nothing
	run := func(exe string) {
		t.Helper()
		rt := event.Runtime{Process: event.Process{PID: pid, PPID: 1, Exe: exe, Argv: []string{exe}, StartTime: time.Now().Add(-time.Minute)}, Container: web}
		pid++
		if err := d.Observe(event.KindProcessExec, time.Now(), rt); err != nil {
			t.Fatal(err)
		}
	}
	run("/usr/sbin/nginx")
	run("/bin/sh")

	// The Console shows the model learning, then learned.
	var models []rp.Model
	waitFor(t, "the learned model at the console", 20*time.Second, func() bool {
		getInto(t, c, "/api/v1/profiles/container?image=registry.local/web:1", &models)
		return len(models) == 1 && models[0].State == rp.StateActive
	})
	m := models[0]
	if m.ID != rp.ModelID(web.Image) || !m.HasProcess(event.Process{Exe: "/bin/sh"}) || !m.HasProcess(event.Process{Exe: "/usr/sbin/nginx"}) || len(m.Hosts) != 1 {
		t.Fatalf("model = %+v", m)
	}

	run("/bin/sh")         // learned
	run("/usr/bin/whoami") // unseen
	var as []runtimeAuditRow
	waitFor(t, "the audit of the unseen process", 20*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/runtime/container?type=audit", &as)
		return len(as) > 0
	})
	if len(as) != 1 {
		t.Fatalf("audits = %+v, want only whoami's", as)
	}
	a := as[0]
	if a.AttackType != rp.DetectUnexpectedProcess || a.RuleName != rp.RuleDefault || a.Effect != "alert" || a.Prevented ||
		a.ContainerID != web.ID || a.ImageName != web.Image || a.Type != "processes" || !strings.Contains(a.Msg, "/usr/bin/whoami") {
		t.Errorf("audit = %+v", a)
	}

	// The audit opened an incident with the container's forensic record.
	var incs []api.Incident
	waitFor(t, "the incident", 10*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/incidents", &incs)
		return len(incs) == 1
	})
	inc := incs[0]
	if inc.Type != "container" || inc.ContainerID != web.ID || inc.Category != rp.IncidentUnexpectedBehavior || inc.AuditCount != 1 || inc.Acknowledged || inc.DefenderID != "learner" {
		t.Errorf("incident = %+v", inc)
	}
	var detail api.Incident
	waitFor(t, "the incident's forensic record", 10*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/incidents/"+inc.ID, &detail)
		return len(detail.Forensics) > 0
	})
	if len(detail.Audits) != 1 || detail.Audits[0].ID != a.ID {
		t.Errorf("incident audits = %+v, want %s", detail.Audits, a.ID)
	}
	var exes []string
	for _, p := range detail.Forensics[0].Processes {
		exes = append(exes, p.Exe)
	}
	if !slices.Contains(exes, "/usr/bin/whoami") || !slices.Contains(exes, "/usr/sbin/nginx") {
		t.Errorf("forensic processes = %v, want nginx and whoami", exes)
	}
	r := mustStatus(t, c, admin(call{method: "PATCH", path: "/api/v1/audits/incidents/acknowledge/" + inc.ID, body: `{"acknowledged":true}`}), 200)
	var acked api.Incident
	_ = json.Unmarshal(r.body, &acked)
	if !acked.Acknowledged || acked.AcknowledgedBy != "admin" {
		t.Errorf("acknowledged incident = %+v", acked)
	}
	getInto(t, c, "/api/v1/audits/incidents?acknowledged=false", &incs)
	if len(incs) != 0 {
		t.Errorf("unacknowledged incidents = %+v, want none", incs)
	}

	// Another audit soon after joins the incident.
	run("/usr/bin/id")
	waitFor(t, "the second audit to join the incident", 10*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/incidents/"+inc.ID, &detail)
		return detail.AuditCount == 2
	})

	// Edit the model: id becomes normal; every Defender adopts the edit.
	edited := m
	edited.Processes = append(edited.Processes, rp.ModelProcess{Path: "/usr/bin/id"})
	body, _ := json.Marshal(edited)
	r = mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/profiles/container/" + m.ID, body: string(body)}), 200)
	var after rp.Model
	_ = json.Unmarshal(r.body, &after)
	if after.State != rp.StateManualActive || after.Generation != m.Generation+1 {
		t.Errorf("edited model = %+v", after)
	}
	rev := policyRevision(t, c)
	waitFor(t, "the defender to take the edit", 10*time.Second, func() bool { return d.PolicyRevision() == rev })
	run("/usr/bin/id")
	run("/bin/ls")
	waitFor(t, "the audit of ls", 10*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/runtime/container?type=audit", &as)
		return len(as) == 3
	})
	if got := as[2].Event; !strings.Contains(string(got), `"/bin/ls"`) {
		t.Errorf("third audit = %s, want the one of /bin/ls (id is in the edited model)", got)
	}
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/profiles/container/" + m.ID, body: `{"processes":[{"path":""}]}`}), 400)
	mustStatus(t, c, admin(call{method: "PUT", path: "/api/v1/profiles/container/nope", body: `{"processes":[]}`}), 404)

	// Relearn: the model forgets and learns again; nothing is audited
	// while it learns.
	r = mustStatus(t, c, admin(call{method: "POST", path: "/api/v1/profiles/container/learn"}), 200)
	if !strings.Contains(string(r.body), `"relearning":1`) {
		t.Errorf("POST learn = %s", r.body)
	}
	rev = policyRevision(t, c)
	waitFor(t, "the defender to take the relearn", 10*time.Second, func() bool { return d.PolicyRevision() == rev })
	run("/usr/bin/top")
	waitFor(t, "the relearned model", 20*time.Second, func() bool {
		getInto(t, c, "/api/v1/profiles/container/"+m.ID, &m)
		return m.State == rp.StateActive && m.HasProcess(event.Process{Exe: "/usr/bin/top"})
	})
	if m.HasProcess(event.Process{Exe: "/usr/bin/id"}) || m.Generation != after.Generation+1 {
		t.Errorf("relearned model = %+v, want only what ran since, at generation %d", m, after.Generation+1)
	}
	getInto(t, c, "/api/v1/audits/runtime/container?type=audit", &as)
	if len(as) != 3 {
		t.Errorf("%d audits after relearning, want still 3", len(as))
	}
}

func policyRevision(t testing.TB, c *consoletest.Console) int64 {
	t.Helper()
	r := mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/policies/runtime/container"}), 200)
	var rev int64
	if _, err := fmt.Sscan(r.header.Get("X-Bulwark-Policy-Revision"), &rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

type runtimeAuditRow struct {
	api.RuntimeAudit
}

// TestPreventedAuditAndHostIncident: the enforcer's report reaches the
// Console as a prevented audit, by rule and mechanism; host audits form
// host incidents.
func TestPreventedAuditAndHostIncident(t *testing.T) {
	c := consoletest.Start(t)
	d, _ := startDefender(t, bundle(t, c, "guard"))
	waitFor(t, "the defender to connect", 10*time.Second, func() bool { return defenders(t, c)["guard"].Connected })
	d.Prevented(defender.Prevented{Time: time.Now(), Kind: rp.EnforceExec, PID: 7, Path: "/usr/bin/nc", Rule: "deny nc",
		Detection: rp.DetectDeniedProcess, Mechanism: "fanotify"})
	if err := d.Observe(event.KindProcessExec, time.Now(), event.Runtime{Process: event.Process{PID: 1 << 30, Exe: "/tmp/xmrig"}}); err != nil {
		t.Fatal(err)
	}
	var as []runtimeAuditRow
	waitFor(t, "two host audits", 10*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/runtime/host?type=audit", &as)
		return len(as) == 2
	})
	byType := map[string]runtimeAuditRow{}
	for _, a := range as {
		byType[a.AttackType] = a
	}
	nc, miner := byType[rp.DetectDeniedProcess], byType[rp.DetectCryptoMiner]
	if !nc.Prevented || nc.Mechanism != "fanotify" || nc.RuleName != "deny nc" || nc.Effect != "prevent" || !strings.Contains(nc.Msg, "prevented by fanotify") {
		t.Errorf("prevented audit = %+v", nc)
	}
	if miner.Prevented || miner.RuleName != rp.RuleDefault || miner.Effect != "alert" {
		t.Errorf("miner audit = %+v", miner)
	}
	var incs []api.Incident
	waitFor(t, "the host incident", 10*time.Second, func() bool {
		getInto(t, c, "/api/v1/audits/incidents?type=host", &incs)
		return len(incs) == 1 && incs[0].AuditCount == 2
	})
	if incs[0].Category != rp.IncidentCryptoMiner || incs[0].ContainerID != "" || incs[0].Type != "host" {
		t.Errorf("host incident = %+v, want category cryptoMiner", incs[0])
	}
	getInto(t, c, "/api/v1/audits/incidents?type=container", &incs)
	if len(incs) != 0 {
		t.Errorf("container incidents = %+v, want none", incs)
	}
	mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/incidents?type=pod"}), 400)
	mustStatus(t, c, admin(call{method: "GET", path: "/api/v1/audits/incidents?acknowledged=maybe"}), 400)
}
