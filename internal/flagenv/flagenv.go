// Package flagenv layers BULWARK_* environment variables under command-line
// flags for the daemons' mains, and writes a --help that names both.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Set is a flag set whose flags may each be fed by an environment variable.
type Set struct {
	*flag.FlagSet
	env   map[string]string // flag → variable
	order []string
	intro string
	outro string
}

// New returns an empty set; intro and outro frame the flag list in --help.
func New(name, intro, outro string, out io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	s := &Set{FlagSet: fs, env: map[string]string{}, intro: intro, outro: outro}
	fs.Usage = s.usage
	return s
}

// Env binds flag name to environment variable v.
func (s *Set) Env(name, v string) {
	s.env[name] = v
	s.order = append(s.order, name)
}

// Parse applies the environment first and the arguments on top, so a flag
// given on the command line wins. It returns flag.ErrHelp for --help.
func (s *Set) Parse(args []string, getenv func(string) string) error {
	for _, name := range s.order {
		v := s.env[name]
		if val := getenv(v); val != "" {
			if err := s.Set(name, val); err != nil {
				return fmt.Errorf("%s=%q: %w", v, val, err)
			}
		}
	}
	if err := s.FlagSet.Parse(args); err != nil {
		return err
	}
	if s.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", s.Arg(0))
	}
	return nil
}

// IsHelp reports whether err asked for help rather than failed.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }

func (s *Set) usage() {
	w := s.Output()
	fmt.Fprint(w, strings.TrimLeft(s.intro, "\n"))
	fmt.Fprint(w, "\nFlags (each may also be set by the environment variable shown; a flag wins):\n")
	s.VisitAll(func(f *flag.Flag) {
		env := ""
		if e, ok := s.env[f.Name]; ok {
			env = " [$" + e + "]"
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s\n", f.Name, env, f.Usage, def)
	})
	fmt.Fprint(w, s.outro)
}
