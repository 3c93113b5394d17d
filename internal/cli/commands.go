package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"bulwark/internal/auth"
)

const rootLong = `bulwarkctl manages a Bulwark Console from the command line: log in, list
and manage users and access keys, and read the management audit log, as
tables or as JSON for scripts. 'bulwarkctl scan' checks Kubernetes manifests
offline, without a Console.

Where settings come from, strongest first: a flag, its environment variable,
the saved login (written by 'bulwarkctl login' to <config-dir>/config.json,
mode 0600), the default. The saved token, CA and --insecure apply only to the
Console they were saved for.

Exit codes: 0 success, 1 the command failed (the Console refused, network,
files), 2 bad flags or arguments. 'bulwarkctl scan' exits 1 on findings at or
above its threshold and 2 on manifests it cannot read.`

const rootExample = `  # Log in once; later commands use the saved token
  bulwarkctl --console https://console.example:8083 --ca-cert ca.pem login
  bulwarkctl users
  bulwarkctl users create alice --role auditor

  # Scripts and CI: an access key over HTTP Basic, no saved login
  export BULWARK_CONSOLE=https://console.example:8083 BULWARK_CA_CERT=ca.pem
  export BULWARK_USERNAME=<access key ID> BULWARK_PASSWORD=<secret>
  bulwarkctl audits --type users --limit 20 -o json`

func roleList() string {
	rs := auth.Roles()
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "bulwarkctl",
		Short:         "Command-line client of the Bulwark Console",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			err := a.resolve()
			var ue *usageError
			if err != nil && !errors.As(err, &ue) {
				return &runError{err: err}
			}
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	a.root = root
	defaultDir := "<user config dir>/bulwark"
	if d, err := os.UserConfigDir(); err == nil {
		defaultDir = filepath.Join(d, "bulwark")
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.flagConsole, "console", "", "Console URL, https://HOST:PORT (env "+envConsole+"; default: the saved login's Console, else "+DefaultConsole+")")
	pf.StringVar(&a.flagCACert, "ca-cert", "", "PEM file of the CA to trust for the Console's certificate, usually the Console's own CA, <data-dir>/pki/ca.pem on its host (env "+envCACert+"; default: the saved login's, else the system roots)")
	pf.BoolVar(&a.flagInsecure, "insecure", false, "do not verify the Console's TLS certificate; for tests only, prints a warning (no environment variable, on purpose)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json (scan also writes sarif and junit)")
	pf.StringVar(&a.flagUsername, "username", "", "user name, or access key ID, to authenticate with HTTP Basic instead of the saved login (env "+envUsername+")")
	pf.StringVar(&a.flagPassword, "password", "", "password, or access key secret, for --username; prefer the environment variable or the prompt, as arguments are visible to other local users (env "+envPassword+")")
	pf.StringVar(&a.flagConfigDir, "config-dir", "", "directory of the saved login, config.json (env "+envConfigDir+"; default "+defaultDir+")")

	root.AddCommand(a.loginCommand(), a.logoutCommand(), a.versionCommand(), a.usersCommand(), a.keysCommand(), a.auditsCommand(), a.defenderCommand(), a.policyCommand(), a.eventsCommand(),
		a.complianceCommand(), a.customComplianceCommand(), a.admissionCommand(), a.scanCommand(), a.runtimeCommand())
	return root
}

func (a *app) loginCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "Log in to a Console and save the token for later commands",
		Long: `Log in to a Console with a user name and password (or an access key ID and
secret) and save the Console URL, --ca-cert, --insecure, the user name and the
token to <config-dir>/config.json (mode 0600). Later commands use them unless
flags or environment variables say otherwise.

The user name and password come from --username/--password or
BULWARK_USERNAME/BULWARK_PASSWORD; when missing, they are asked for (the
password without echo on a terminal) or read as lines from stdin.

A token expires (60 minutes by default, set on the Console); log in again then.`,
		Example: `  bulwarkctl --console https://console.example:8083 --ca-cert ca.pem login
  printf 'admin\n%s\n' "$PW" | bulwarkctl login`,
		Args: args(),
		RunE: a.run(a.login),
	}
}

func (a *app) login(ctx context.Context, _ []string) error {
	username := a.username
	if username == "" {
		u, err := a.prompt("Username: ")
		if err != nil {
			return err
		}
		username = strings.TrimSpace(u)
	}
	if username == "" {
		return errors.New("the user name is empty")
	}
	password := a.password
	if password == "" {
		var err error
		if password, err = a.readSecret(ctx, "Password: "); err != nil {
			return err
		}
	}
	c, err := a.newClient()
	if err != nil {
		return err
	}
	tok, err := c.authenticate(ctx, username, password)
	if err != nil {
		return fmt.Errorf("log in to %s: %w", a.console, err)
	}
	caCert := a.caCert
	if caCert != "" {
		if caCert, err = filepath.Abs(caCert); err != nil {
			return fmt.Errorf("resolve CA certificate path: %w", err)
		}
	}
	cfg := savedConfig{Console: a.console, CACert: caCert, Insecure: a.insecure, Token: tok, Username: username}
	if err := saveConfig(a.configDir, cfg); err != nil {
		return err
	}
	if a.output == "json" {
		return writeJSON(a.stdout, map[string]string{"console": a.console, "username": username})
	}
	fmt.Fprintf(a.stdout, "Logged in to %s as %s\n", a.console, username)
	return nil
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Remove the saved token",
		Long: `Remove the saved token from <config-dir>/config.json; the Console URL and CA
stay saved for the next login. The token is deleted from this machine only: it
stays valid on the Console until it expires or the password is changed.`,
		Args: args(),
		RunE: a.run(func(context.Context, []string) error {
			if a.saved.Token == "" {
				fmt.Fprintln(a.stdout, "Not logged in")
				return nil
			}
			cfg := a.saved
			cfg.Token = ""
			if err := saveConfig(a.configDir, cfg); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Logged out of %s\n", cfg.Console)
			return nil
		}),
	}
}

// versions is the output of `bulwarkctl version`.
type versions struct {
	Client string `json:"client"`
	Server string `json:"server,omitempty"`
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client version and, when logged in, the Console's",
		Long: `Print bulwarkctl's version and, when credentials exist (a saved login or
--username/--password) and the Console answers, the Console's version.
A Console that cannot be asked is reported on stderr; the command still succeeds.`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			v := versions{Client: a.version}
			if a.hasCredentials() {
				if s, err := a.serverVersion(ctx); err != nil {
					if errors.Is(err, context.Canceled) {
						return err
					}
					fmt.Fprintf(a.stderr, "bulwarkctl: server version: %v\n", err)
				} else {
					v.Server = s
				}
			}
			if a.output == "json" {
				return writeJSON(a.stdout, v)
			}
			fmt.Fprintf(a.stdout, "Client: %s\n", v.Client)
			if v.Server != "" {
				fmt.Fprintf(a.stdout, "Server: %s (%s)\n", v.Server, a.console)
			}
			return nil
		}),
	}
}

func (a *app) serverVersion(ctx context.Context) (string, error) {
	c, err := a.authClient(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.version(ctx)
}

func (a *app) usersCommand() *cobra.Command {
	list := func(ctx context.Context, _ []string) error {
		c, err := a.authClient(ctx)
		if err != nil {
			return err
		}
		users, err := c.users(ctx)
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		if a.output == "json" {
			return writeJSON(a.stdout, users)
		}
		return writeUsers(a.stdout, users)
	}
	users := &cobra.Command{
		Use:   "users",
		Short: "List and manage Console users (alone: list them)",
		Long: `List and manage the Console's users. Without a subcommand, list them.
Managing users needs a role with the manage-users permission (admin).`,
		Args: args(),
		RunE: a.run(list),
	}
	users.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List users: USERNAME ROLE AUTH LAST MODIFIED",
		Args:    args(),
		RunE:    a.run(list),
	})

	var role string
	var passwordStdin bool
	create := &cobra.Command{
		Use:   "create NAME --role ROLE [--password-stdin]",
		Short: "Create a user",
		Long: `Create a user with a role and a password. The password is asked for twice
without echo, or with --password-stdin read from the first line of stdin.
(--password is the caller's own password, not the new user's.)

Roles: ` + roleList() + `.`,
		Example: `  bulwarkctl users create alice --role auditor
  printf '%s\n' "$NEW_PW" | bulwarkctl users create ci --role ci-user --password-stdin`,
		Args: args("NAME"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var pw string
			if passwordStdin {
				pw, err = a.readLine("password")
				if err == nil && pw == "" {
					err = errors.New("the password on stdin is empty")
				}
			} else {
				pw, err = a.newPassword(ctx, "Password of "+args[0])
			}
			if err != nil {
				return err
			}
			u, err := c.createUser(ctx, args[0], pw, role)
			if err != nil {
				return fmt.Errorf("create user %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, u)
			}
			fmt.Fprintf(a.stdout, "Created user %s with role %s\n", u.Username, u.Role)
			return nil
		}),
	}
	create.Flags().StringVar(&role, "role", "", "role of the new user, one of: "+roleList()+" (required)")
	create.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the new user's password from the first line of stdin instead of asking")
	_ = create.MarkFlagRequired("role")
	users.AddCommand(create)

	users.AddCommand(&cobra.Command{
		Use:   "set-role NAME ROLE",
		Short: "Change a user's role",
		Long:  "Change a user's role. Roles: " + roleList() + ".\nThe last admin cannot lose the role.",
		Args:  args("NAME", "ROLE"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			u, err := c.setRole(ctx, args[0], args[1])
			if err != nil {
				return fmt.Errorf("set role of %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, u)
			}
			fmt.Fprintf(a.stdout, "User %s now has role %s\n", u.Username, u.Role)
			return nil
		}),
	})

	users.AddCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a user",
		Long:  "Delete a user. You cannot delete yourself or the last admin.",
		Args:  args("NAME"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			if err := c.deleteUser(ctx, args[0]); err != nil {
				return fmt.Errorf("delete user %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Deleted user %s\n", args[0])
			return nil
		}),
	})

	users.AddCommand(&cobra.Command{
		Use:   "password",
		Short: "Change your own password",
		Long: `Change the password of the user you are logged in as. The current password is
--password when given, else it is asked for; the new one is asked for twice
(on a terminal; otherwise read as the next line of stdin).

Changing the password revokes your tokens; when you use a saved login,
bulwarkctl logs in again with the new password and saves the new token.`,
		Args: args(),
		RunE: a.run(a.changePassword),
	})
	return users
}

func (a *app) changePassword(ctx context.Context, _ []string) error {
	c, err := a.authClient(ctx)
	if err != nil {
		return err
	}
	old := c.password
	if old == "" {
		if old, err = a.readSecret(ctx, "Current password: "); err != nil {
			return err
		}
	}
	pw, err := a.newPassword(ctx, "New password")
	if err != nil {
		return err
	}
	if err := c.changePassword(ctx, old, pw); err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	fmt.Fprintln(a.stdout, "Password changed")
	if c.token == "" || a.saved.Username == "" {
		return nil
	}
	// The saved token was revoked with the old password: renew it.
	anon := *c
	anon.token = ""
	tok, err := anon.authenticate(ctx, a.saved.Username, pw)
	if err != nil {
		return fmt.Errorf("log in again with the new password: %w (run `bulwarkctl login`)", err)
	}
	cfg := a.saved
	cfg.Token = tok
	if err := saveConfig(a.configDir, cfg); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "Saved login renewed")
	return nil
}

func (a *app) keysCommand() *cobra.Command {
	var owner string
	list := func(ctx context.Context, _ []string) error {
		c, err := a.authClient(ctx)
		if err != nil {
			return err
		}
		keys, err := c.accessKeys(ctx, owner)
		if err != nil {
			return fmt.Errorf("list access keys: %w", err)
		}
		if a.output == "json" {
			return writeJSON(a.stdout, keys)
		}
		return writeKeys(a.stdout, keys)
	}
	keys := &cobra.Command{
		Use:     "keys",
		Aliases: []string{"access-keys"},
		Short:   "List and manage access keys (alone: list yours)",
		Long: `List, create and delete access keys: an ID and a secret that authenticate like
a user name and password (--username ID --password SECRET, or
BULWARK_USERNAME/BULWARK_PASSWORD), for scripts and CI. A key acts with its
owner's role or a narrower one. Without a subcommand, list your keys.`,
		Args: args(),
		RunE: a.run(list),
	}
	listCmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List access keys (secrets are never shown again)",
		Args:    args(),
		RunE:    a.run(list),
	}
	for _, c := range []*cobra.Command{keys, listCmd} {
		c.Flags().StringVar(&owner, "user", "", "list this user's keys instead of yours, or * for everybody's (needs manage-users)")
	}
	keys.AddCommand(listCmd)

	var req newAccessKey
	create := &cobra.Command{
		Use:   "create [--name N] [--role R] [--expires-in-days D]",
		Short: "Create an access key and print its secret, once",
		Long: `Create an access key for yourself. Its ID and secret are printed once: the
Console keeps only a hash, so store the secret now (a secrets manager, a CI
variable). An access key cannot create keys; log in with a password.`,
		Example: `  bulwarkctl keys create --name ci-pipeline --role ci-user --expires-in-days 90
  bulwarkctl keys create --name ci -o json | jq -r .secret`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if req.ExpiresInDays < 0 {
				return usagef("--expires-in-days must not be negative")
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			k, err := c.createAccessKey(ctx, req)
			if err != nil {
				return fmt.Errorf("create access key: %w", err)
			}
			fmt.Fprintln(a.stderr, "bulwarkctl: store the secret now: it is shown only this once and cannot be recovered")
			if a.output == "json" {
				return writeJSON(a.stdout, k)
			}
			fmt.Fprintf(a.stdout, "ID:      %s\nSecret:  %s\n", k.ID, k.Secret)
			if !k.ExpiresAt.IsZero() {
				fmt.Fprintf(a.stdout, "Expires: %s\n", timeCell(k.ExpiresAt))
			}
			return nil
		}),
	}
	create.Flags().StringVar(&req.Name, "name", "", "a name to recognise the key by (up to 100 characters)")
	create.Flags().StringVar(&req.Role, "role", "", "a role narrower than yours for the key, one of: "+roleList()+" (default: your role)")
	create.Flags().IntVar(&req.ExpiresInDays, "expires-in-days", 0, "days until the key expires, up to 3650 (default: never)")
	keys.AddCommand(create)

	keys.AddCommand(&cobra.Command{
		Use:   "delete ID",
		Short: "Delete an access key",
		Long:  "Delete one of your access keys, or anybody's with the manage-users permission.",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			if err := c.deleteAccessKey(ctx, args[0]); err != nil {
				return fmt.Errorf("delete access key %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Deleted access key %s\n", args[0])
			return nil
		}),
	})
	return keys
}

func (a *app) auditsCommand() *cobra.Command {
	var f auditFilter
	cmd := &cobra.Command{
		Use:   "audits [--user U] [--type T] [--limit N]",
		Short: "Read the management audit log",
		Long: `Read the management audit log, newest first: logins and every change to users,
access keys and settings, with who, when, from where and what changed.
Needs a role with the read-audit permission.`,
		Example: `  bulwarkctl audits --user alice --limit 20
  bulwarkctl audits --type login -o json`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if f.Limit < 0 {
				return usagef("--limit must not be negative")
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			recs, err := c.audits(ctx, f)
			if err != nil {
				return fmt.Errorf("read audit log: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, recs)
			}
			return writeAudits(a.stdout, recs)
		}),
	}
	cmd.Flags().StringVar(&f.User, "user", "", "only records of this user")
	cmd.Flags().StringVar(&f.Type, "type", "", "only records of this type: login, users, accessKeys, settings, defenders, policies")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, "at most this many records, up to 1000 (default: the Console's page size)")
	return cmd
}
