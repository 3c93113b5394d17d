// Package cli is bulwarkctl, the command-line client of the Bulwark Console:
// the cobra command tree, the saved login in the config directory and a small
// typed client of the Console REST API. cmd/bulwarkctl only wires it to the
// process.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// DefaultConsole is the Console URL used when neither a flag, the environment
// nor a saved login names one.
const DefaultConsole = "https://127.0.0.1:8083"

// devVersion is the client version of builds that do not set one.
const devVersion = "0.1.0-dev"

// Environment variables read by bulwarkctl.
const (
	envConsole   = "BULWARK_CONSOLE"
	envCACert    = "BULWARK_CA_CERT"
	envUsername  = "BULWARK_USERNAME"
	envPassword  = "BULWARK_PASSWORD"
	envConfigDir = "BULWARK_CONFIG_DIR"
)

// Exit codes.
const (
	exitOK        = 0
	exitError     = 1 // the command ran and failed (API error, network, I/O)
	exitUsage     = 2 // bad flags or arguments
	exitInterrupt = 130
)

// Program is bulwarkctl with its build-time version; main sets Version from
// -ldflags "-X main.version=…".
type Program struct {
	Version string
}

// Execute runs bulwarkctl with args (without the program name) and returns
// the process exit code: 0 success, 1 failure, 2 usage error.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return Program{}.Execute(ctx, args, stdin, stdout, stderr, getenv)
}

// Execute is the package-level Execute with p's version.
func (p Program) Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if p.Version == "" {
		p.Version = devVersion
	}
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	a := &app{version: p.Version, stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return a.report(cmd, err)
}

// usageError is a mistake in the command line; it exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// runError marks an error returned by a command's own code, as opposed to
// cobra's parsing of the command line.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// codeError ends a command with its own exit code after the command has
// reported why (bulwarkctl scan: 1 for findings, 2 for unreadable input);
// report adds only msg, when there is one.
type codeError struct {
	code int
	msg  string
}

func (e *codeError) Error() string { return e.msg }

// exitCode classifies an error once, at the boundary.
func exitCode(err error) int {
	var ue *usageError
	var re *runError
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitInterrupt
	case errors.As(err, &re):
		return exitError
	}
	return exitUsage // cobra: unknown command or flag, wrong arguments
}

// report prints err and a hint on stderr and returns the exit code.
func (a *app) report(cmd *cobra.Command, err error) int {
	code := exitCode(err)
	if code == exitInterrupt {
		fmt.Fprintln(a.stderr, "bulwarkctl: interrupted")
		return code
	}
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.msg != "" {
			fmt.Fprintf(a.stderr, "bulwarkctl: %s\n", ce.msg)
		}
		return code
	}
	fmt.Fprintf(a.stderr, "bulwarkctl: %v\n", err)
	var ae *apiError
	switch {
	case code == exitUsage:
		path := "bulwarkctl"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", path)
	case errors.As(err, &ae) && ae.Status == 401:
		fmt.Fprintln(a.stderr, "Your credentials were not accepted: run `bulwarkctl login` (saved logins expire), or check --username/--password.")
	case errors.As(err, &ae) && ae.Status == 403:
		fmt.Fprintln(a.stderr, "Your role does not allow this; ask an admin.")
	}
	return code
}

// app is one run of bulwarkctl: its I/O, environment and global options.
type app struct {
	version        string
	stdin          io.Reader
	in             *bufio.Reader // stdin, buffered once so successive prompts share it
	stdout, stderr io.Writer
	getenv         func(string) string
	root           *cobra.Command

	// Global flags as parsed.
	flagConsole, flagCACert, flagUsername, flagPassword, flagConfigDir string
	flagInsecure                                                       bool
	output                                                             string

	// Resolved in resolve(): flags over environment over the saved login over defaults.
	configDir, console, caCert, username, password string
	insecure                                       bool
	saved                                          savedConfig
}

// run adapts a command body to cobra, marking its errors as the command's own.
func (a *app) run(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd.Context(), args)
		var ue *usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return &runError{err: err}
	}
}

// args checks the positional arguments against their names ("NAME", "ROLE").
func args(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, got []string) error {
		if len(got) == len(names) {
			return nil
		}
		if len(names) == 0 {
			return usagef("unexpected argument %q", got[0])
		}
		return usagef("expected %s, got %d argument(s)", strings.Join(names, " "), len(got))
	}
}

// resolve layers defaults, the saved login, the environment and the flags.
// The saved token, CA and --insecure are used only for the saved Console, so a
// token is never sent to another server.
func (a *app) resolve() error {
	switch {
	case a.changed("config-dir"):
		a.configDir = a.flagConfigDir
	case a.getenv(envConfigDir) != "":
		a.configDir = a.getenv(envConfigDir)
	default:
		dir, err := os.UserConfigDir()
		if err != nil {
			return fmt.Errorf("find config directory: %w (set --config-dir or %s)", err, envConfigDir)
		}
		a.configDir = filepath.Join(dir, "bulwark")
	}
	saved, warning, err := loadConfig(a.configDir)
	if err != nil {
		return err
	}
	if warning != "" {
		fmt.Fprintf(a.stderr, "bulwarkctl: warning: %s\n", warning)
	}
	a.saved = saved

	console := a.pick("console", a.flagConsole, envConsole, saved.Console)
	if console == "" {
		console = DefaultConsole
	}
	if a.console, err = normalizeConsole(console); err != nil {
		return &usageError{err: err}
	}
	same := saved.Console != "" && a.console == saved.Console
	savedCA, savedInsecure := "", false
	if same {
		savedCA, savedInsecure = saved.CACert, saved.Insecure
	}
	a.caCert = a.pick("ca-cert", a.flagCACert, envCACert, savedCA)
	switch {
	case a.changed("insecure"):
		a.insecure = a.flagInsecure
	case a.changed("ca-cert") || a.getenv(envCACert) != "":
		a.insecure = false // a CA given now replaces a saved --insecure
	default:
		a.insecure = savedInsecure
	}
	a.username = a.pick("username", a.flagUsername, envUsername, "")
	a.password = a.pick("password", a.flagPassword, envPassword, "")
	if a.output != "table" && a.output != "json" {
		return usagef("--output must be table or json, not %q", a.output)
	}
	return nil
}

// pick returns the flag's value if given, else the environment's, else def.
func (a *app) pick(flag, flagValue, env, def string) string {
	if a.changed(flag) {
		return flagValue
	}
	if v := a.getenv(env); v != "" {
		return v
	}
	return def
}

func (a *app) changed(flag string) bool { return a.root.PersistentFlags().Changed(flag) }

// normalizeConsole accepts "host:port" or an https URL and returns it without
// a trailing slash.
func normalizeConsole(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("console URL %q: %w", s, err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("console URL %q: must use https (the Console serves only HTTPS)", s)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("console URL %q: want https://HOST[:PORT]", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// newClient returns a client of the resolved Console without credentials.
func (a *app) newClient() (*client, error) {
	if a.insecure {
		fmt.Fprintln(a.stderr, "bulwarkctl: warning: --insecure: the Console's TLS certificate is not verified; credentials can be intercepted")
	}
	hc, err := newHTTPClient(a.caCert, a.insecure)
	if err != nil {
		return nil, err
	}
	return &client{base: a.console, http: hc, userAgent: "bulwarkctl/" + a.version}, nil
}

// errNotLoggedIn is returned when a command needs credentials and has none.
var errNotLoggedIn = errors.New("not logged in")

// hasCredentials reports whether authClient would find credentials.
func (a *app) hasCredentials() bool {
	return a.username != "" || a.password != "" || a.savedToken() != ""
}

// savedToken is the saved token if it belongs to the resolved Console.
func (a *app) savedToken() string {
	if a.saved.Console != a.console {
		return ""
	}
	return a.saved.Token
}

// authClient returns a client that authenticates with --username/--password
// (HTTP Basic) when given, else with the saved token.
func (a *app) authClient(ctx context.Context) (*client, error) {
	var c *client
	switch {
	case a.username != "":
		pass := a.password
		if pass == "" {
			var err error
			if pass, err = a.readSecret(ctx, fmt.Sprintf("Password for %s: ", a.username)); err != nil {
				return nil, err
			}
		}
		var err error
		if c, err = a.newClient(); err != nil {
			return nil, err
		}
		c.username, c.password = a.username, pass
	case a.password != "":
		return nil, usagef("--password (or %s) needs --username (or %s)", envPassword, envUsername)
	case a.savedToken() != "":
		var err error
		if c, err = a.newClient(); err != nil {
			return nil, err
		}
		c.token = a.savedToken()
	default:
		return nil, fmt.Errorf("%w to %s: run `bulwarkctl login`, or pass --username and --password", errNotLoggedIn, a.console)
	}
	return c, nil
}

// reader returns stdin, buffered once.
func (a *app) reader() *bufio.Reader {
	if a.in == nil {
		a.in = bufio.NewReader(a.stdin)
	}
	return a.in
}

// terminal returns stdin's descriptor if it is a terminal.
func (a *app) terminal() (int, bool) {
	f, ok := a.stdin.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// readLine reads one line of stdin without its line ending.
func (a *app) readLine(what string) (string, error) {
	line, err := a.reader().ReadString('\n')
	switch {
	case errors.Is(err, io.EOF) && line == "":
		return "", fmt.Errorf("read %s: no input on stdin", what)
	case err != nil && !errors.Is(err, io.EOF):
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// prompt asks for a visible value on a terminal, or reads a line of stdin.
func (a *app) prompt(label string) (string, error) {
	if _, ok := a.terminal(); ok {
		fmt.Fprint(a.stderr, label)
	}
	return a.readLine(strings.ToLower(strings.TrimRight(label, ": ")))
}

// readSecret asks for a secret without echo on a terminal, or reads a line of
// stdin when it is not one (scripts: `echo "$PW" | bulwarkctl login`).
func (a *app) readSecret(ctx context.Context, label string) (string, error) {
	fd, ok := a.terminal()
	if !ok {
		return a.readLine("password")
	}
	fmt.Fprint(a.stderr, label)
	defer fmt.Fprintln(a.stderr)
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	// ReadPassword cannot be interrupted. On Ctrl-C we restore the echo and
	// return; the process exits right after, ending the blocked read with it.
	go func() {
		b, err := term.ReadPassword(fd)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return "", fmt.Errorf("read password: %w", r.err)
		}
		return string(r.b), nil
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		return "", ctx.Err()
	}
}

// newPassword asks for a new password, twice on a terminal.
func (a *app) newPassword(ctx context.Context, label string) (string, error) {
	pw, err := a.readSecret(ctx, label+": ")
	if err != nil {
		return "", err
	}
	if _, ok := a.terminal(); ok {
		again, err := a.readSecret(ctx, "Repeat "+strings.ToLower(label[:1])+label[1:]+": ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the passwords do not match")
		}
	}
	if pw == "" {
		return "", errors.New("the password is empty")
	}
	return pw, nil
}
