//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runtimeAuditView is the part of GET /api/v1/audits/runtime/* the tests read.
type runtimeAuditView struct {
	ID          string `json:"_id"`
	ContainerID string `json:"containerId"`
	ImageName   string `json:"imageName"`
	Msg         string `json:"msg"`
	RuleName    string `json:"ruleName"`
	Effect      string `json:"effect"`
	AttackType  string `json:"attackType"`
	Prevented   bool   `json:"prevented"`
	Event       struct {
		Process struct {
			Exe string `json:"exe"`
		} `json:"process"`
	} `json:"event"`
}

type modelView struct {
	ID        string `json:"_id"`
	Image     string `json:"image"`
	State     string `json:"state"`
	Processes []struct {
		Path string `json:"path"`
	} `json:"processes"`
}

func (c *consoleProc) audits(t *testing.T, containerID string) []runtimeAuditView {
	t.Helper()
	var as []runtimeAuditView
	c.api(t, "GET", "/api/v1/audits/runtime/container?type=audit&limit=1000&container="+containerID, "", &as)
	return as
}

// TestLearnedModelFlagsUnseenProcess: a model learns a real runc
// container's normal processes; after its window, an unseen process is
// audited, and so are drift, a package manager, a shell on a socket and a
// read of /etc/shadow in the container, grouped into one incident with the
// container's forensic record.
func TestLearnedModelFlagsUnseenProcess(t *testing.T) {
	needPrivileges(t)
	c := startConsole(t, t.TempDir(), freePort(t), freePort(t))
	const window = 5 * time.Second
	_, state := startSensingDefender(t, c, "modeller", "--learning-window", window.String(), "--model-report-interval", "200ms")

	const image = "registry.local/learned:1"
	ctr := runContainer(t, map[string]string{"io.bulwark.image": image}, "id", "chmod", "dpkg", "mkdir")
	for name, content := range map[string]string{"motd": "welcome\n", "shadow": "root:*:19000:0:99999:7:::\n"} {
		if err := os.WriteFile(filepath.Join(ctr.Rootfs, "etc", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What the container normally does, while the model learns.
	learningEnds := time.Now().Add(window)
	for time.Now().Before(learningEnds.Add(-time.Second)) {
		ctr.Exec(t, "/bin/cat", "/etc/motd")
		ctr.Exec(t, "/bin/sh", "-c", "true")
		time.Sleep(300 * time.Millisecond)
	}
	var models []modelView
	waitFor(t, "the learned model at the Console", 30*time.Second, func() bool {
		c.api(t, "GET", "/api/v1/profiles/container?image="+image, "", &models)
		return len(models) == 1 && models[0].State == "active"
	})
	var learned []string
	for _, p := range models[0].Processes {
		learned = append(learned, p.Path)
	}
	if !slices.Contains(learned, "/bin/cat") || slices.Contains(learned, "/bin/id") {
		t.Fatalf("learned processes = %v, want /bin/cat and not /bin/id", learned)
	}
	if as := c.audits(t, ctr.ID); len(as) != 0 {
		t.Fatalf("audits while the model learned: %+v", as)
	}

	ctr.Exec(t, "/bin/cat", "/etc/motd") // learned: quiet
	ctr.Exec(t, "/bin/id")               // unseen
	var as []runtimeAuditView
	waitFor(t, "the audit of the unseen process", 20*time.Second, func() bool {
		as = c.audits(t, ctr.ID)
		return len(as) > 0
	})
	if len(as) != 1 || as[0].AttackType != "unexpectedProcess" || as[0].Event.Process.Exe != "/bin/id" || as[0].ImageName != image ||
		as[0].Effect != "alert" || as[0].Prevented {
		t.Fatalf("audits after learning = %+v, want one unexpectedProcess of /bin/id", as)
	}

	// The built-in detections, in the same container.
	ctr.Exec(t, "/bin/sh", "-c", "mkdir -p /tmp/x && cat /bin/busybox > /tmp/x/busybox && chmod +x /tmp/x/busybox && /tmp/x/busybox true")
	_, _ = ctr.TryExec(t, "/bin/dpkg", "-l")
	ctr.Exec(t, "/bin/cat", "/etc/shadow")
	ctr.Exec(t, "/bin/sh", "-c", "nc -l -p 9123 -e /bin/sh & sleep 0.3; echo 'sleep 0.5' | nc 127.0.0.1 9123; wait")
	want := []string{"modifiedProcess", "packageManagerProcess", "secretFileAccess", "reverseShell"}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		as = c.audits(t, ctr.ID)
		var missing []string
		for _, w := range want {
			if !slices.ContainsFunc(as, func(a runtimeAuditView) bool { return a.AttackType == w }) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, a := range as {
				t.Logf("audit: %s %s", a.AttackType, a.Msg)
			}
			t.Fatalf("no audit of %v", missing)
		}
	}
	for _, a := range as {
		if a.AttackType == "modifiedProcess" && a.Event.Process.Exe != "/tmp/x/busybox" {
			t.Errorf("drift audit of %q, want /tmp/x/busybox", a.Event.Process.Exe)
		}
		if a.Prevented || a.RuleName != "Default - alert on suspicious runtime behavior" {
			t.Errorf("audit %+v: want the default rule, not prevented", a)
		}
	}

	for _, a := range as {
		t.Logf("audit: %s %s", a.AttackType, a.Msg)
	}
	// One incident: the audits of the container, the most severe category,
	// and the container's forensic record.
	var incs []struct {
		ID          string   `json:"_id"`
		Category    string   `json:"category"`
		ContainerID string   `json:"containerID"`
		AuditCount  int      `json:"auditCount"`
		Detections  []string `json:"detections"`
	}
	waitFor(t, "the incident", 20*time.Second, func() bool {
		c.api(t, "GET", "/api/v1/audits/incidents?containerID="+ctr.ID, "", &incs)
		return len(incs) == 1 && incs[0].AuditCount >= len(want)+1
	})
	if incs[0].Category != "reverseShell" || incs[0].ContainerID != ctr.ID {
		t.Errorf("incident = %+v, want category reverseShell for the container", incs[0])
	}
	var detail struct {
		Audits    []runtimeAuditView `json:"audits"`
		Forensics []struct {
			Processes []struct {
				Exe  string   `json:"exe"`
				Argv []string `json:"argv"`
			} `json:"processes"`
			Events []struct {
				Kind string `json:"kind"`
				Exe  string `json:"exe"`
			} `json:"events"`
		} `json:"forensics"`
	}
	c.api(t, "GET", "/api/v1/audits/incidents/"+incs[0].ID, "", &detail)
	if len(detail.Audits) != incs[0].AuditCount || len(detail.Forensics) == 0 {
		t.Fatalf("incident detail: %d audits (want %d), %d forensic records", len(detail.Audits), incs[0].AuditCount, len(detail.Forensics))
	}
	var seen []string
	for _, p := range detail.Forensics[0].Processes {
		seen = append(seen, p.Exe)
	}
	if !slices.Contains(seen, "/bin/id") || !slices.Contains(seen, "/bin/cat") {
		t.Errorf("forensic processes = %v, want the container's cat and id", seen)
	}

	// The Defender reports how it prevents each kind of action.
	var ds []struct {
		ID     string `json:"_id"`
		Sensor *struct {
			Enforcement []struct {
				Kind      string `json:"kind"`
				Mechanism string `json:"mechanism"`
			} `json:"enforcement"`
		} `json:"sensor"`
	}
	c.api(t, "GET", "/api/v1/defenders", "", &ds)
	if len(ds) != 1 || ds[0].Sensor == nil || len(ds[0].Sensor.Enforcement) != 4 {
		t.Errorf("GET /api/v1/defenders = %+v, want the mechanism of each of the 4 kinds", ds)
	}
	// status.json is rewritten every 2 s.
	waitFor(t, "the audits in status.json", 10*time.Second, func() bool {
		st := status(t, state)
		return st.Runtime != nil && st.Runtime.Models >= 1 && st.Runtime.Audits > 0
	})
}

// TestStoredRuntimePolicyWithoutConsole: a Defender restarted while the
// Console is down judges the container with the runtime policy it stored,
// and the audit reaches the Console once it is back.
func TestStoredRuntimePolicyWithoutConsole(t *testing.T) {
	needPrivileges(t)
	dataDir := t.TempDir()
	apiPort, chPort := freePort(t), freePort(t)
	c := startConsole(t, dataDir, apiPort, chPort)
	c.api(t, "PUT", "/api/v1/policies/runtime/container",
		`{"rules":[{"name":"no telnet","processes":{"deniedList":{"effect":"alert","paths":["telnet"]}}}]}`, nil)
	b := c.bundle(t, "offline")
	state := t.TempDir()
	d := start(t, nil, "bulwark-defender", "--bundle", b, "--state-dir", state)
	waitFor(t, "the defender to take the policy", 30*time.Second, func() bool {
		v := c.defender(t, "offline")
		return v.Connected && v.PolicyRevision >= 1
	})
	c.kill(syscall.SIGTERM)
	d.kill(syscall.SIGTERM)

	start(t, nil, "bulwark-defender", "--bundle", b, "--state-dir", state) // killed when the test ends
	waitFor(t, "the restarted defender to run its sensor", 30*time.Second, func() bool {
		st := status(t, state)
		return st.PolicySource == "disk" && st.Sensor != nil && !st.Connected
	})
	ctr := runContainer(t, map[string]string{"io.bulwark.image": "registry.local/offline:1"}, "telnet")
	_, _ = ctr.TryExec(t, "/bin/telnet", "127.0.0.1", "1")
	waitFor(t, "the audit in the spool", 20*time.Second, func() bool {
		st := status(t, state)
		return st.Runtime != nil && st.Runtime.Audits > 0
	})

	c = startConsole(t, dataDir, apiPort, chPort)
	var as []runtimeAuditView
	waitFor(t, "the audit at the Console", 30*time.Second, func() bool {
		as = c.audits(t, ctr.ID)
		return slices.ContainsFunc(as, func(a runtimeAuditView) bool { return a.AttackType == "explicitlyDeniedProcess" })
	})
	for _, a := range as {
		if a.AttackType == "explicitlyDeniedProcess" && (a.RuleName != "no telnet" || !strings.Contains(a.Msg, "/bin/telnet")) {
			t.Errorf("audit = %+v, want rule no telnet on /bin/telnet", a)
		}
	}
}
