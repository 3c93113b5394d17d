package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"bulwark/api"
)

// bundleFiles are the names a bundle may hold; anything else is refused, so a
// hostile answer cannot write outside the directory.
var bundleFiles = map[string]os.FileMode{"ca.pem": 0o644, "defender.pem": 0o644, "defender-key.pem": 0o600, "bundle.json": 0o644}

// writeBundle writes b into dir (created 0700), the key 0600. It refuses to
// overwrite an existing bundle.
func writeBundle(dir string, b api.Bundle) error {
	if _, err := os.Stat(filepath.Join(dir, "bundle.json")); err == nil {
		return usagef("%s already holds a bundle; choose another --out or remove it", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for name, content := range b.Files {
		mode, ok := bundleFiles[name]
		if !ok {
			return fmt.Errorf("the Console's bundle has an unexpected file %q", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	for name := range bundleFiles {
		if _, ok := b.Files[name]; !ok {
			return fmt.Errorf("the Console's bundle lacks %s", name)
		}
	}
	return nil
}

func (a *app) defenderCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "defender",
		Aliases: []string{"defenders"},
		Short:   "Install, list, revoke and renew Defenders",
		Long: `Manage Defenders. 'bundle' registers a Defender and writes its install bundle:
the Console CA, a client certificate for the Defender (its only credential on
the mutual-TLS channel) and the channel address. Run the Defender from it with
'bulwark-defender --bundle DIR'.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var id, out string
	bundleCmd := &cobra.Command{
		Use:   "bundle --out DIR [--id ID]",
		Short: "Register a Defender and write its install bundle",
		Long: `Register a Defender and write its install bundle into DIR: ca.pem,
defender.pem, defender-key.pem (mode 0600) and bundle.json. The private key
exists only in this bundle; keep it like a password.`,
		Example: `  bulwarkctl defender bundle --id web-01 --out /etc/bulwark/defender
  bulwark-defender --bundle /etc/bulwark/defender`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if out == "" {
				return usagef("--out DIR is required")
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var b api.Bundle
			if err := c.do(ctx, http.MethodPost, "/api/v1/defenders/bundle", nil, map[string]string{"id": id}, &b); err != nil {
				return fmt.Errorf("issue bundle: %w", err)
			}
			if err := writeBundle(out, b); err != nil {
				return err
			}
			return a.reportBundle(b, out)
		}),
	}
	bundleCmd.Flags().StringVar(&id, "id", "", "the Defender's ID (1-64 of letters, digits, . _ -; default: a random one)")
	bundleCmd.Flags().StringVar(&out, "out", "", "directory to write the bundle to (created 0700)")
	cmd.AddCommand(bundleCmd)

	var renewOut string
	renew := &cobra.Command{
		Use:   "renew ID --out DIR",
		Short: "Issue a new certificate for a Defender and write a new bundle",
		Long:  "Issue a new certificate for an existing Defender before its old one expires. The old certificate stays valid until it expires or the Defender is revoked.",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			if renewOut == "" {
				return usagef("--out DIR is required")
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var b api.Bundle
			if err := c.do(ctx, http.MethodPost, "/api/v1/defenders/"+url.PathEscape(args[0])+"/renew", nil, nil, &b); err != nil {
				return fmt.Errorf("renew %s: %w", args[0], err)
			}
			if err := writeBundle(renewOut, b); err != nil {
				return err
			}
			return a.reportBundle(b, renewOut)
		}),
	}
	renew.Flags().StringVar(&renewOut, "out", "", "directory to write the new bundle to (created 0700)")
	cmd.AddCommand(renew)

	cmd.AddCommand(&cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a Defender: its connection closes and its certificates are refused",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			if err := c.do(ctx, http.MethodPost, "/api/v1/defenders/"+url.PathEscape(args[0])+"/revoke", nil, nil, nil); err != nil {
				return fmt.Errorf("revoke %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]string{"revoked": args[0]})
			}
			fmt.Fprintf(a.stdout, "Revoked defender %s\n", args[0])
			return nil
		}),
	})

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List Defenders and their state",
		Args:    args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			ds, err := getList[api.Defender](ctx, c, "/api/v1/defenders", nil)
			if err != nil {
				return fmt.Errorf("list defenders: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, ds)
			}
			t := newTable(a.stdout, "ID", "HOSTNAME", "NET", "VERSION", "STATE", "LAST SEEN", "POLICY", "SPOOL", "DROPPED", "CERT EXPIRES")
			for _, d := range ds {
				state := "disconnected"
				switch {
				case d.Revoked:
					state = "revoked"
				case d.Connected:
					state = "connected"
				}
				net := "pod"
				if d.HostNetwork {
					net = "host"
				}
				t.row(d.ID, d.Hostname, net, d.Version, state, timeCell(d.LastSeen), strconv.FormatInt(d.PolicyRevision, 10),
					strconv.FormatUint(d.SpoolDepth, 10), strconv.FormatUint(d.EventsDropped, 10), timeCell(d.CertExpiration))
			}
			return t.flush()
		}),
	}
	cmd.AddCommand(list)

	cmd.AddCommand(&cobra.Command{
		Use:   "summary",
		Short: "Count Defenders by state",
		Args:  args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var s map[string]any
			if err := c.do(ctx, http.MethodGet, "/api/v1/defenders/summary", nil, nil, &s); err != nil {
				return fmt.Errorf("defender summary: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, s)
			}
			t := newTable(a.stdout, "TOTAL", "CONNECTED", "DISCONNECTED", "REVOKED", "EXPIRING SOON", "SPOOLED", "DROPPED")
			f := func(k string) string { return fmt.Sprint(s[k]) }
			t.row(f("total"), f("connected"), f("disconnected"), f("revoked"), f("expiringSoon"), f("spoolDepth"), f("eventsDropped"))
			return t.flush()
		}),
	})
	return cmd
}

func (a *app) reportBundle(b api.Bundle, dir string) error {
	if a.output == "json" {
		return writeJSON(a.stdout, map[string]any{"defenderID": b.DefenderID, "consoleURL": b.ConsoleURL, "notAfter": b.NotAfter, "dir": dir})
	}
	fmt.Fprintf(a.stdout, "Wrote the bundle of defender %s to %s (certificate valid until %s).\nRun: bulwark-defender --bundle %s\n",
		b.DefenderID, dir, timeCell(b.NotAfter), dir)
	return nil
}

func (a *app) policyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "policy",
		Aliases: []string{"policies"},
		Short:   "Read and replace policies",
		Long: `Read and replace the Console's policies. TYPE is one of runtime/container,
runtime/host, compliance/container, compliance/host, vulnerability/images,
vulnerability/host, firewall/app/container, cnns/container, admission. A
policy is a JSON object with an ordered "rules" array; a new one is pushed to
every connected Defender. The admission policy also has mode (audit or
enforce), exemptNamespaces, pssLevel and pssVersion; fields left out keep their
defaults.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "get TYPE",
		Short: "Print the policy of one type as JSON",
		Args:  args("TYPE"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var doc json.RawMessage
			if err := c.do(ctx, http.MethodGet, "/api/v1/policies/"+strings.Trim(args[0], "/"), nil, nil, &doc); err != nil {
				return fmt.Errorf("get policy %s: %w", args[0], err)
			}
			return writeJSON(a.stdout, doc)
		}),
	})
	var file string
	set := &cobra.Command{
		Use:     "set TYPE --file FILE|-",
		Short:   "Replace the policy of one type",
		Example: `  bulwarkctl policy set runtime/container --file runtime.json`,
		Args:    args("TYPE"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			if file == "" {
				return usagef("--file FILE (or - for standard input) is required")
			}
			var raw []byte
			var err error
			if file == "-" {
				raw, err = io.ReadAll(io.LimitReader(a.stdin, 1<<20))
			} else {
				raw, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("read policy: %w", err)
			}
			var doc json.RawMessage
			if err := json.Unmarshal(raw, &doc); err != nil {
				return usagef("%s is not JSON: %v", file, err)
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var res struct {
				Revision int64 `json:"revision"`
			}
			if err := c.do(ctx, http.MethodPut, "/api/v1/policies/"+strings.Trim(args[0], "/"), nil, doc, &res); err != nil {
				return fmt.Errorf("set policy %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "Stored %s policy; the policy revision is now %d\n", args[0], res.Revision)
			return nil
		}),
	}
	set.Flags().StringVarP(&file, "file", "f", "", "the policy JSON, or - for standard input")
	cmd.AddCommand(set)
	return cmd
}
