package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"bulwark/api"
)

const customPath = "/api/v1/custom-compliance"

// maxScriptBytes is what set reads of a script; the Console refuses more
// than 64 KiB, and says so.
const maxScriptBytes = 1 << 20

func (a *app) customComplianceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "custom-compliance",
		Aliases: []string{"custom"},
		Short:   "List, write and delete custom compliance checks (Rego)",
		Long: `Manage custom compliance checks: Rego v1 modules whose deny set yields
findings, evaluated on every workload like the catalog's checks. Each check has
an ID from 9000 to 9999, by which compliance rules enable it
(condition.vulnerabilities[].id), and a name that rules may use in "checks".
The Console compiles a check before it stores it and pushes the checks to every
Defender. The module's input is the workload; see docs/custom-compliance.md.

Reading needs the read permission; writing needs write-policy (admin, operator).`,
		Example: `  bulwarkctl custom-compliance set --file no-docker-hub.rego --severity high --title "Images come from our registries"
  bulwarkctl custom-compliance list
  bulwarkctl custom-compliance set --id 9000 --severity critical
  bulwarkctl custom-compliance get 9000 -o json
  bulwarkctl custom-compliance delete 9000`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}

	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List custom checks: ID NAME TITLE SEVERITY STATE OWNER MODIFIED",
		Args:    args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			cl, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			checks, err := customChecks(ctx, cl)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return writeJSON(a.stdout, checks)
			}
			t := newTable(a.stdout, "ID", "NAME", "TITLE", "SEVERITY", "STATE", "OWNER", "MODIFIED")
			for _, c := range checks {
				t.row(strconv.Itoa(c.ID), c.Name, c.Title, c.Severity, customState(c), c.Owner, timeCell(c.Modified))
			}
			return t.flush()
		}),
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "get ID",
		Short: "Print one custom check and its Rego module",
		Long:  "Print one custom check: its fields, then its Rego module as stored. With -o json, the check as the API returns it.",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			id, err := customID(args[0])
			if err != nil {
				return err
			}
			cl, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			checks, err := customChecks(ctx, cl)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(checks, func(c api.CustomComplianceCheck) bool { return c.ID == id })
			if i < 0 {
				return fmt.Errorf("no custom compliance check %d", id)
			}
			c := checks[i]
			if a.output == "json" {
				return writeJSON(a.stdout, c)
			}
			for _, f := range [][2]string{
				{"ID", strconv.Itoa(c.ID)}, {"Name", c.Name}, {"Title", c.Title}, {"Severity", c.Severity}, {"State", customState(c)},
				{"Type", c.Type}, {"Description", c.Description}, {"Remediation", c.Remediation}, {"Notes", c.Notes},
				{"Owner", c.Owner}, {"Modified", timeCell(c.Modified)},
			} {
				fmt.Fprintf(a.stdout, "%-12s %s\n", f[0]+":", cell(f[1]))
			}
			fmt.Fprintf(a.stdout, "\n%s", c.Script)
			if !strings.HasSuffix(c.Script, "\n") {
				fmt.Fprintln(a.stdout)
			}
			return nil
		}),
	})

	cmd.AddCommand(a.customSetCommand())

	cmd.AddCommand(&cobra.Command{
		Use:   "delete ID",
		Short: "Delete a custom check",
		Long:  "Delete a custom check. The Console refuses while a compliance rule names it; change the rule first.",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			id, err := customID(args[0])
			if err != nil {
				return err
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			if err := c.do(ctx, http.MethodDelete, customPath+"/"+strconv.Itoa(id), nil, nil, nil); err != nil {
				return fmt.Errorf("delete custom compliance check %d: %w", id, err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]int{"deleted": id})
			}
			fmt.Fprintf(a.stdout, "Deleted custom compliance check %d\n", id)
			return nil
		}),
	})
	return cmd
}

// customSet holds the flags of `custom-compliance set`.
type customSet struct {
	file, name, title, severity, description, remediation, notes string
	id                                                           int
	disabled                                                     bool
}

func (a *app) customSetCommand() *cobra.Command {
	var f customSet
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "set --file FILE.rego|- [--id N] [--name NAME] [--title T] [--severity S] [...]",
		Short: "Create a custom check, or change one",
		Long: `Create a custom check from a Rego module, or change the check with --id.

Creating: --file and --severity are required; the name defaults to the file's
base name without .rego, the title to the name, and the ID to the next free one
from 9000 (or --id N when no check has it).

Changing (--id of an existing check): only the flags given change; the rest,
the module included when --file is not given, stays as stored.

The Console compiles the module first and refuses one that does not compile,
naming the line.`,
		Example: `  bulwarkctl custom-compliance set --file no-docker-hub.rego --severity high
  bulwarkctl custom-compliance set --id 9000 --file no-docker-hub.rego
  bulwarkctl custom-compliance set --id 9000 --disabled`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			return a.customSet(ctx, f, cmd.Flags().Changed)
		}),
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the Rego module, or - for standard input")
	fl.IntVar(&f.id, "id", 0, "the check's ID, 9000-9999: the one to change, or the new check's (default: the next free one)")
	fl.StringVar(&f.name, "name", "", "the check's name: lowercase letters, digits, . _ - (default: the file's base name)")
	fl.StringVar(&f.title, "title", "", "the title findings show (default: the name)")
	fl.StringVar(&f.severity, "severity", "", "critical, high, medium, low or info")
	fl.StringVar(&f.description, "description", "", "what the check finds and why it matters")
	fl.StringVar(&f.remediation, "remediation", "", "how to fix a finding")
	fl.StringVar(&f.notes, "notes", "", "free-form notes")
	fl.BoolVar(&f.disabled, "disabled", false, "keep the check but do not evaluate it (--disabled=false enables it again)")
	return cmd
}

func (a *app) customSet(ctx context.Context, f customSet, changed func(string) bool) error {
	if changed("id") {
		if _, err := customID(strconv.Itoa(f.id)); err != nil {
			return err
		}
	}
	if changed("file") && f.file == "" {
		return usagef("--file needs a file name, or - for standard input")
	}
	var script string
	if f.file != "" {
		var raw []byte
		var err error
		if f.file == "-" {
			raw, err = io.ReadAll(io.LimitReader(a.stdin, maxScriptBytes+1))
		} else {
			raw, err = readLimited(f.file, maxScriptBytes+1)
		}
		if err != nil {
			return fmt.Errorf("read the Rego module: %w", err)
		}
		if len(raw) > maxScriptBytes {
			return usagef("%s is larger than %d bytes", f.file, maxScriptBytes)
		}
		script = string(raw)
	}
	c, err := a.authClient(ctx)
	if err != nil {
		return err
	}
	checks, err := customChecks(ctx, c)
	if err != nil {
		return err
	}
	var in api.CustomComplianceCheck
	verb := "Updated"
	if i := slices.IndexFunc(checks, func(c api.CustomComplianceCheck) bool { return f.id != 0 && c.ID == f.id }); i >= 0 {
		in = checks[i]
	} else {
		verb = "Created"
		if f.file == "" || f.severity == "" {
			if f.id != 0 {
				return usagef("no custom check has id %d; a new one needs --file and --severity", f.id)
			}
			return usagef("a new custom check needs --file and --severity (change one with --id)")
		}
		in = api.CustomComplianceCheck{ID: f.id, Type: api.CustomComplianceType}
		if !changed("name") {
			if f.file == "-" {
				return usagef("--name is required with --file -")
			}
			in.Name = strings.TrimSuffix(filepath.Base(f.file), ".rego")
		}
	}
	for _, s := range []struct {
		flag string
		dst  *string
		val  string
	}{
		{"name", &in.Name, f.name}, {"title", &in.Title, f.title}, {"severity", &in.Severity, f.severity},
		{"description", &in.Description, f.description}, {"remediation", &in.Remediation, f.remediation}, {"notes", &in.Notes, f.notes},
	} {
		if changed(s.flag) {
			*s.dst = s.val
		}
	}
	if changed("disabled") {
		in.Disabled = f.disabled
	}
	if f.file != "" {
		in.Script = script
	}
	var out api.CustomComplianceCheck
	if err := c.do(ctx, http.MethodPut, customPath, nil, in, &out); err != nil {
		return fmt.Errorf("store custom compliance check %s: %w", in.Name, err)
	}
	if a.output == "json" {
		return writeJSON(a.stdout, out)
	}
	fmt.Fprintf(a.stdout, "%s custom compliance check %d %s (%s, %s); Defenders receive it with the next policy push\n",
		verb, out.ID, cell(out.Name), out.Severity, customState(out))
	return nil
}

// customChecks lists the Console's custom checks.
func customChecks(ctx context.Context, c *client) ([]api.CustomComplianceCheck, error) {
	checks, err := getList[api.CustomComplianceCheck](ctx, c, customPath, nil)
	if err != nil {
		return nil, fmt.Errorf("list custom compliance checks: %w", err)
	}
	return checks, nil
}

func customID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 9000 || id > 9999 {
		return 0, usagef("custom check ID %q is not a number from 9000 to 9999", s)
	}
	return id, nil
}

func customState(c api.CustomComplianceCheck) string {
	if c.Disabled {
		return "disabled"
	}
	return "enabled"
}

func readLimited(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}
