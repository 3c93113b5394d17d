package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestModuleLayers checks the real module with `go list`.
func TestModuleLayers(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), "go", "list", "-json=ImportPath,Imports", Module+"/...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []Package
	dec := json.NewDecoder(&out)
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	for _, v := range Check(pkgs) {
		t.Error(v)
	}
}

// TestCheckCatchesViolations proves the checker fails on each kind of break.
func TestCheckCatchesViolations(t *testing.T) {
	tests := []struct {
		name string
		pkg  Package
		want string // substring of the single violation; "" = none
	}{
		{"domain imports adapter", Package{"bulwark/internal/auth", []string{"bulwark/internal/sqlite"}}, "domain packages import only other domain packages"},
		{"domain imports os", Package{"bulwark/internal/policy", []string{"os"}}, "no I/O"},
		{"domain imports net/http", Package{"bulwark/internal/event", []string{"net/http"}}, "no I/O"},
		{"domain imports slog", Package{"bulwark/internal/store", []string{"log/slog"}}, "no I/O"},
		{"domain imports third party", Package{"bulwark/internal/store", []string{"github.com/x/y"}}, "standard library only"},
		{"adapter imports adapter", Package{"bulwark/internal/httpapi", []string{"bulwark/internal/sqlite"}}, "adapters do not import each other"},
		{"adapter imports assembly", Package{"bulwark/internal/sqlite", []string{"bulwark/internal/console"}}, "inward"},
		{"prod imports test helper", Package{"bulwark/internal/console", []string{"bulwark/internal/store/storetest"}}, "test helpers"},
		{"adapter imports runctest", Package{"bulwark/internal/enforcer", []string{"bulwark/internal/runtime/runctest"}}, "test helpers"},
		{"runctest imports its adapter", Package{"bulwark/internal/runtime/runctest", []string{"bulwark/internal/runtime", "bulwark/internal/event"}}, ""},
		{"adapter imports porttest", Package{"bulwark/internal/channel", []string{"bulwark/internal/porttest"}}, "test helpers"},
		{"bench imports porttest", Package{"bulwark/bench/internal/benchkit", []string{"bulwark/internal/porttest"}}, ""},
		{"unclassified package", Package{"bulwark/internal/misc", nil}, "not classified"},
		{"domain imports strings", Package{"bulwark/internal/auth", []string{"strings", "bulwark/internal/audit"}}, ""},
		{"adapter imports domain and api", Package{"bulwark/internal/httpapi", []string{"bulwark/internal/store", "bulwark/api", "net/http"}}, ""},
		{"assembly imports adapters", Package{"bulwark/internal/console", []string{"bulwark/internal/sqlite", "bulwark/internal/httpapi"}}, ""},
		{"adapter imports library", Package{"bulwark/internal/httpapi", []string{"bulwark/internal/credential"}}, ""},
		{"library imports adapter", Package{"bulwark/internal/credential", []string{"bulwark/internal/sqlite"}}, "library packages import only domain"},
		{"domain imports netip", Package{"bulwark/internal/policy", []string{"net/netip"}}, ""},
		{"command imports assembly", Package{"bulwark/cmd/bulwarkctl", []string{"bulwark/internal/cli"}}, ""},
		{"deploy tests reach across", Package{"bulwark/deploy", []string{"bulwark/internal/cli", "bulwark/internal/console/consoletest"}}, ""},
		{"assembly imports deploy", Package{"bulwark/internal/cli", []string{"bulwark/deploy"}}, "only tests and tooling"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Check([]Package{tc.pkg})
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("Check(%v) = %q, want no violation", tc.pkg, got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("Check(%v) = %q, want one violation containing %q", tc.pkg, got, tc.want)
			}
		})
	}
}
