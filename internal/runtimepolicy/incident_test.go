package runtimepolicy_test

import (
	"testing"
	"time"

	rp "bulwark/internal/runtimepolicy"
)

func TestIncidentCategory(t *testing.T) {
	tests := []struct{ detection, want string }{
		{rp.DetectReverseShell, rp.IncidentReverseShell},
		{rp.DetectDrift, rp.IncidentAlteredBinary},
		{rp.DetectAlteredBinary, rp.IncidentAlteredBinary},
		{rp.DetectSSHAccess, rp.IncidentBackdoorSSH},
		{rp.DetectDeniedIP, rp.IncidentExplicitlyDenied},
		{rp.DetectUnexpectedProcess, rp.IncidentUnexpectedBehavior},
		{"somethingNew", rp.IncidentUnexpectedBehavior},
	}
	for _, tc := range tests {
		if got := rp.IncidentCategory(tc.detection); got != tc.want {
			t.Errorf("IncidentCategory(%q) = %q, want %q", tc.detection, got, tc.want)
		}
	}
	if !rp.MoreSevere(rp.IncidentReverseShell, rp.IncidentUnexpectedBehavior) || rp.MoreSevere(rp.IncidentPackageManager, rp.IncidentCryptoMiner) {
		t.Error("MoreSevere orders reverse shells above deviations and miners above package managers")
	}
}

func TestJoins(t *testing.T) {
	w := 10 * time.Minute
	first, last := t0, t0.Add(5*time.Minute)
	tests := []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {5 * time.Minute, true}, {15 * time.Minute, true}, {15*time.Minute + 1, false},
		{-10 * time.Minute, true}, {-10*time.Minute - 1, false},
	}
	for _, tc := range tests {
		if got := rp.Joins(first, last, t0.Add(tc.at), w); got != tc.want {
			t.Errorf("Joins(t0, t0+5m, t0%+v, 10m) = %v, want %v", tc.at, got, tc.want)
		}
	}
}

// TestDetectionCategory: every finding's category is its detection's.
func TestDetectionCategory(t *testing.T) {
	def := rp.DefaultPolicy(rp.Container).Rules[1]
	for _, f := range []rp.Facts{
		execIn(web, "/bin/xmrig"), execIn(web, "/usr/bin/kubectl"), execIn(web, "/usr/bin/apt"), fileIn(web, "file.write", "/etc/passwd"),
		fileIn(web, "file.read", "/etc/shadow"), fileIn(web, "file.create", "/usr/bin/x"), connectIn(web, "/bin/sh", "192.0.2.1", 4444),
		connectIn(web, "/app", "10.0.0.1", 9), listenIn(web, 9),
	} {
		for _, fd := range rp.Evaluate(def, learned(), f) {
			if got := rp.DetectionCategory(fd.Detection); got != fd.Category {
				t.Errorf("DetectionCategory(%q) = %q, but Evaluate says %q", fd.Detection, got, fd.Category)
			}
		}
	}
}
