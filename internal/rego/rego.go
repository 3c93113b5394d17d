// Package rego runs custom compliance checks written in Rego, with Open
// Policy Agent as a library, inside the compliance engine.
//
// A check is a Rego v1 module whose input is a compliance.Workload as JSON
// and whose deny set holds one element per finding: a string (the message)
// or an object {"msg": …, "path": …, "paths": […], "container": …}.
// Compile prepares every check once; the Evaluator it returns is a
// compliance.Evaluator that evaluates them all on each workload, and its
// Checks are the catalog entries that compliance.Options.Custom and
// compliance.ParsePolicy take, so that rules may name custom checks.
//
// Checks are policy code written by users, so they are held on a short
// leash: built-ins that reach the network or the process (http.send,
// net.lookup_ip_addr, opa.runtime) or that are not deterministic (rand.intn,
// uuid.rfc4122, time.now_ns, JWT signing) are refused at compile time, print
// statements are dropped, and each workload's evaluation is bounded by a
// timeout. A check that fails at run time or times out yields no finding and
// an *EvalError instead, never a crash.
package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"bulwark/internal/compliance"
)

// The range of custom check IDs. Prisma numbers custom compliance checks
// from 9000 upwards; the catalog's own IDs stay below.
const (
	MinID = 9000
	MaxID = 9999
)

// MaxModuleBytes bounds a check's Rego source.
const MaxModuleBytes = 64 << 10

// DefaultTimeout bounds the evaluation of every check on one workload when
// Config.Timeout is zero.
const DefaultTimeout = 250 * time.Millisecond

// Check is a custom compliance check.
type Check struct {
	ID          int
	Slug        string
	Title       string
	Severity    compliance.Severity
	Description string
	Remediation string
	// Module is the Rego source: any package, a deny set rule.
	Module string
}

// String names the check in messages: `check 9000 "no-docker-hub"`.
func (c Check) String() string { return fmt.Sprintf("check %d %q", c.ID, c.Slug) }

// Check is the catalog entry of c, for compliance.Options.Custom and
// compliance.ParsePolicy: its ID is both the Docker and the CRI ID, so rules
// may name it as Prisma clients do, by number.
func (c Check) Check() compliance.Check {
	id := strconv.Itoa(c.ID)
	return compliance.Check{
		Slug:        c.Slug,
		DockerID:    id,
		CRIID:       id,
		Severity:    c.Severity,
		Title:       c.Title,
		Description: c.Description,
		Remediation: c.Remediation,
		AppliesTo:   []compliance.Scope{compliance.ScopeManifest, compliance.ScopeRuntime, compliance.ScopeImage},
	}
}

// ErrInvalid marks a check that is refused before its module is compiled:
// a bad ID, slug, title or severity.
var ErrInvalid = errors.New("invalid custom check")

// Validate checks every field but the module's Rego, and reports every
// problem at once.
func (c Check) Validate() error {
	var problems []string
	if c.ID < MinID || c.ID > MaxID {
		problems = append(problems, fmt.Sprintf("id %d is outside the custom check range %d-%d", c.ID, MinID, MaxID))
	}
	if err := ValidateSlug(c.Slug); err != nil {
		problems = append(problems, err.Error())
	}
	switch t := strings.TrimSpace(c.Title); {
	case t == "":
		problems = append(problems, "title is empty")
	case utf8.RuneCountInString(t) > 200:
		problems = append(problems, "title is longer than 200 characters")
	}
	if c.Severity.Rank() < 0 {
		problems = append(problems, fmt.Sprintf("severity %q is not critical, high, medium, low or info", c.Severity))
	}
	switch {
	case strings.TrimSpace(c.Module) == "":
		problems = append(problems, "the Rego module is empty")
	case len(c.Module) > MaxModuleBytes:
		problems = append(problems, fmt.Sprintf("the Rego module is larger than %d bytes", MaxModuleBytes))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, c, strings.Join(problems, "; "))
	}
	return nil
}

// ValidateSlug checks a custom check's slug: 1–64 of lowercase letters,
// digits, '.', '_' and '-', starting with a letter or digit, and not the
// slug of a catalog check.
func ValidateSlug(s string) error {
	if s == "" {
		return errors.New("name is empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("name %q is longer than 64 characters", s)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && strings.ContainsRune("._-", r)
		if !ok {
			return fmt.Errorf("name %q: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", s)
		}
	}
	if _, ok := compliance.Lookup(s); ok {
		return fmt.Errorf("name %q is a catalog check's", s)
	}
	return nil
}

// Problem is one compile error at a place in a module.
type Problem struct {
	Line    int    // 1-based; 0 when unknown
	Column  int    // 1-based; 0 when unknown
	Message string // OPA's message, with its code: "rego_parse_error: unexpected …"
}

func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Column > 0:
		return fmt.Sprintf("line %d, column %d: %s", p.Line, p.Column, p.Message)
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	}
	return p.Message
}

// CompileError is a check whose module does not compile.
type CompileError struct {
	ID       int
	Slug     string
	Problems []Problem
}

func (e *CompileError) Error() string {
	ps := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		ps[i] = p.String()
	}
	return fmt.Sprintf("%s does not compile: %s", Check{ID: e.ID, Slug: e.Slug}, strings.Join(ps, "; "))
}

// EvalError is a check that could not be evaluated on a workload: a run-time
// error in its module, a deny element of the wrong shape, or the timeout. It
// yields no finding. errors.Is(err, context.DeadlineExceeded) tells a
// timeout.
type EvalError struct {
	ID   int
	Slug string
	Err  error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("evaluate %s: %v", Check{ID: e.ID, Slug: e.Slug}, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// Config tunes evaluation.
type Config struct {
	// Timeout bounds the evaluation of every check on one workload;
	// DefaultTimeout when zero.
	Timeout time.Duration
	// Logger receives the errors of Evaluate, which cannot return them.
	// Nil discards them.
	Logger *slog.Logger
}

// Evaluator evaluates compiled checks on workloads. It is safe for
// concurrent use.
type Evaluator struct {
	checks  []compiled
	timeout time.Duration
	logger  *slog.Logger
}

var _ compliance.Evaluator = (*Evaluator)(nil)

type compiled struct {
	Check
	query rego.PreparedEvalQuery
}

// Compile validates and compiles every check once. Duplicate IDs or slugs
// are refused. The error joins a *CompileError (or an ErrInvalid error) for
// each check that is refused, naming the check and the line.
func Compile(ctx context.Context, checks []Check, cfg Config) (*Evaluator, error) {
	e := &Evaluator{timeout: cfg.Timeout, logger: cfg.Logger}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	ids, slugs := map[int]bool{}, map[string]bool{}
	for _, c := range checks {
		if ids[c.ID] {
			errs = append(errs, fmt.Errorf("%w: %s: another check has id %d", ErrInvalid, c, c.ID))
			continue
		}
		if slugs[c.Slug] {
			errs = append(errs, fmt.Errorf("%w: %s: another check is named %q", ErrInvalid, c, c.Slug))
			continue
		}
		ids[c.ID], slugs[c.Slug] = true, true
		q, err := prepare(ctx, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.checks = append(e.checks, compiled{Check: c, query: q})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

// forbidden are the built-ins a check may not call: every one that OPA
// marks non-deterministic, which covers those that reach the network or the
// process (http.send, net.lookup_ip_addr, opa.runtime) and randomness and
// the clock. A check's verdict must depend on the workload alone, so that
// the Console, every Defender and bulwarkctl agree.
func forbidden() map[string]struct{} {
	m := map[string]struct{}{}
	for _, b := range ast.Builtins {
		if b.Nondeterministic {
			m[b.Name] = struct{}{}
		}
	}
	return m
}

// prepare parses, checks and compiles one check.
func prepare(ctx context.Context, c Check) (rego.PreparedEvalQuery, error) {
	if err := c.Validate(); err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	fail := func(ps ...Problem) error { return &CompileError{ID: c.ID, Slug: c.Slug, Problems: ps} }
	file := strconv.Itoa(c.ID) + ".rego"
	mod, err := ast.ParseModuleWithOpts(file, c.Module, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return rego.PreparedEvalQuery{}, fail(problems(err)...)
	}
	if mod == nil {
		return rego.PreparedEvalQuery{}, fail(Problem{Message: "the module has no package declaration"})
	}
	if ps := checkDeny(mod); len(ps) > 0 {
		return rego.PreparedEvalQuery{}, fail(ps...)
	}
	deny := mod.Package.Path.Copy().Append(ast.StringTerm("deny"))
	q, err := rego.New(
		rego.ParsedModule(mod),
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(deny)))),
		rego.SetRegoVersion(ast.RegoV1),
		rego.UnsafeBuiltins(forbidden()),
		rego.EnablePrintStatements(false),
	).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, fail(problems(err)...)
	}
	return q, nil
}

// checkDeny requires the module to define deny as a set: `deny contains x if …`.
func checkDeny(mod *ast.Module) []Problem {
	const how = "write `deny contains msg if { … }`"
	var ps []Problem
	found := false
	for _, r := range mod.Rules {
		ref := r.Head.Ref()
		if len(ref) == 0 || !ref[0].Equal(ast.VarTerm("deny")) {
			continue
		}
		found = true
		if len(ref) != 1 || r.Head.RuleKind() != ast.MultiValue || r.Default {
			p := Problem{Message: "deny must be a set of messages: " + how}
			if r.Location != nil {
				p.Line, p.Column = r.Location.Row, r.Location.Col
			}
			ps = append(ps, p)
		}
	}
	if !found {
		ps = append(ps, Problem{Message: "the module defines no deny rule: " + how})
	}
	return ps
}

// problems turns OPA's errors into problems with lines.
func problems(err error) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		var one *ast.Error
		if !errors.As(err, &one) {
			return []Problem{{Message: err.Error()}}
		}
		errs = ast.Errors{one}
	}
	ps := make([]Problem, 0, len(errs))
	for _, e := range errs {
		p := Problem{Message: e.Code + ": " + e.Message}
		if strings.Contains(e.Message, "unsafe built-in function") {
			p.Message += " (custom checks may not reach the network or the process, nor use randomness or the clock)"
		}
		if e.Location != nil {
			p.Line, p.Column = e.Location.Row, e.Location.Col
		}
		ps = append(ps, p)
	}
	return ps
}

// Checks returns the catalog entries of the compiled checks, in order.
func (e *Evaluator) Checks() []compliance.Check {
	out := make([]compliance.Check, len(e.checks))
	for i, c := range e.checks {
		out[i] = c.Check.Check()
	}
	return out
}

// Evaluate implements compliance.Evaluator: the findings of every check on
// w. Checks that fail are logged and yield no finding.
func (e *Evaluator) Evaluate(w compliance.Workload) []compliance.Finding {
	fs, err := e.EvaluateContext(context.Background(), w)
	if err != nil {
		e.logger.Warn("custom compliance checks failed", slog.String("workload", describe(w)), slog.Any("err", err))
	}
	return fs
}

// EvaluateContext returns the findings of every check on w, in check order,
// and for the checks that failed (or did not finish within the timeout) the
// errors.Join of their *EvalError.
func (e *Evaluator) EvaluateContext(ctx context.Context, w compliance.Workload) ([]compliance.Finding, error) {
	if len(e.checks) == 0 {
		return nil, nil
	}
	input, err := inputValue(w)
	if err != nil {
		return nil, fmt.Errorf("encode workload as rego input: %w", err)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	containers := containerNames(w)
	var (
		out  []compliance.Finding
		errs []error
	)
	for _, c := range e.checks {
		fs, err := c.eval(ctx, input, containers)
		if err != nil {
			switch {
			case parent.Err() != nil:
				err = fmt.Errorf("stopped: %w", parent.Err())
			case ctx.Err() != nil:
				err = fmt.Errorf("timed out after %s: %w", e.timeout, ctx.Err())
			}
			errs = append(errs, &EvalError{ID: c.ID, Slug: c.Slug, Err: err})
			continue
		}
		out = append(out, fs...)
	}
	return out, errors.Join(errs...)
}

func (c compiled) eval(ctx context.Context, input ast.Value, containers []string) ([]compliance.Finding, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rs, err := c.query.Eval(ctx, rego.EvalParsedInput(input), rego.EvalSortSets(true))
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // deny is undefined: no finding
	}
	elems, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("deny is %s, not a set", jsonKind(rs[0].Expressions[0].Value))
	}
	id := strconv.Itoa(c.ID)
	var out []compliance.Finding
	for i, el := range elems {
		// A custom check has one number for Docker and CRI alike.
		f := compliance.Finding{Check: c.Slug, PrismaID: id, Severity: c.Severity, Title: c.Title}
		switch v := el.(type) {
		case string:
			f.Message = v
		case map[string]any:
			if err := decodeDeny(v, &f); err != nil {
				return nil, fmt.Errorf("deny element %d: %w", i, err)
			}
		default:
			return nil, fmt.Errorf("deny element %d is %s; want a string or an object with msg", i, jsonKind(el))
		}
		if f.Message == "" {
			f.Message = c.Title
		}
		if f.Container != "" && !slices.Contains(containers, f.Container) {
			// A finding for a container the workload does not have would be
			// decided by no rule and lost; report it for the workload.
			f.Message += fmt.Sprintf(" (container %q)", f.Container)
			f.Container = ""
		}
		out = append(out, f)
	}
	return out, nil
}

// decodeDeny reads an object element of deny; unknown keys are ignored.
func decodeDeny(obj map[string]any, f *compliance.Finding) error {
	str := func(key string) (string, error) {
		v, ok := obj[key]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s is %s, not a string", key, jsonKind(v))
		}
		return s, nil
	}
	var err error
	if f.Message, err = str("msg"); err != nil {
		return err
	}
	if f.Container, err = str("container"); err != nil {
		return err
	}
	path, err := str("path")
	if err != nil {
		return err
	}
	if path != "" {
		f.Paths = append(f.Paths, path)
	}
	if v, ok := obj["paths"]; ok && v != nil {
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("paths is %s, not an array of strings", jsonKind(v))
		}
		for _, p := range arr {
			s, ok := p.(string)
			if !ok {
				return fmt.Errorf("paths has %s, not a string", jsonKind(p))
			}
			if s != "" && !slices.Contains(f.Paths, s) {
				f.Paths = append(f.Paths, s)
			}
		}
	}
	if f.Message == "" && len(obj) > 0 {
		if _, ok := obj["msg"]; !ok {
			return errors.New("the object has no msg")
		}
	}
	return nil
}

// inputValue is the workload as Rego input: its JSON, parsed once for every
// check. The pod's and every container's field path are filled in, so that
// modules can name fields in their findings without deriving them.
func inputValue(w compliance.Workload) (ast.Value, error) {
	if w.Pod != nil {
		pod := *w.Pod
		if pod.Path == "" {
			pod.Path = "spec"
		}
		pod.Containers = slices.Clone(pod.Containers)
		n := map[compliance.ContainerKind]int{}
		for i := range pod.Containers {
			c := &pod.Containers[i]
			if c.Path == "" {
				c.Path = compliance.ContainerPath(pod.Path, c.Kind, n[c.Kind])
			}
			n[c.Kind]++
		}
		w.Pod = &pod
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	return ast.ValueFromReader(bytes.NewReader(b))
}

// containerNames are the containers findings may name.
func containerNames(w compliance.Workload) []string {
	var out []string
	for _, r := range w.Resources() {
		if r.Container != "" {
			out = append(out, r.Container)
		}
	}
	return out
}

func describe(w compliance.Workload) string {
	s := w.Source
	switch {
	case s.Object.Name != "":
		return strings.Trim(s.Object.Kind+" "+s.Object.Namespace+"/"+s.Object.Name, " /")
	case s.ID != "":
		return string(s.Kind) + " " + s.ID
	case s.File != "":
		return s.File
	}
	return string(s.Kind)
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64, int, int64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
