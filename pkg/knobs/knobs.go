// Package knobs binds every setting to a command-line flag and an environment variable
// with one call, so that `--help` shows the flag, the variable and the default together,
// and a bad value in the environment is reported instead of silently ignored.
//
// Precedence: a flag given on the command line wins over the environment, which wins
// over the built-in default.
package knobs

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set registers knobs on a flag set and collects errors from bad environment values.
type Set struct {
	fs   *flag.FlagSet
	errs []error
}

// New returns a Set that registers its knobs on fs.
func New(fs *flag.FlagSet) *Set { return &Set{fs: fs} }

// FlagSet returns the underlying flag set.
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// Err reports every environment variable whose value could not be parsed, each naming
// the variable, the value and the expected form.
func (s *Set) Err() error { return errors.Join(s.errs...) }

// usage names the env var; the flag package itself appends "(default X)" for non-zero
// defaults, so only a zero default is spelled out here.
func usage(text, env string, def any) string {
	var extra []string
	if env != "" {
		extra = append(extra, "env "+env)
	}
	switch def {
	case `""`, 0, 0.0, false, time.Duration(0):
		extra = append(extra, fmt.Sprintf("default %v", def))
	}
	if len(extra) == 0 {
		return text
	}
	return text + " (" + strings.Join(extra, ", ") + ")"
}

func (s *Set) env(env string) (string, bool) {
	if env == "" {
		return "", false
	}
	v, ok := os.LookupEnv(env)
	return v, ok && v != ""
}

func (s *Set) bad(env, v, want string, err error) {
	s.errs = append(s.errs, fmt.Errorf("environment %s=%q: want %s: %v", env, v, want, err))
}

// String binds a string knob.
func (s *Set) String(p *string, name, env, def, text string) {
	val := def
	if v, ok := s.env(env); ok {
		val = v
	}
	s.fs.StringVar(p, name, val, usage(text, env, fmt.Sprintf("%q", def)))
}

// Duration binds a duration knob ("500ms", "5s", "1m").
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, text string) {
	val := def
	if v, ok := s.env(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.bad(env, v, "a duration such as 5s", err)
		} else {
			val = d
		}
	}
	s.fs.DurationVar(p, name, val, usage(text, env, def))
}

// Int binds an integer knob.
func (s *Set) Int(p *int, name, env string, def int, text string) {
	val := def
	if v, ok := s.env(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.bad(env, v, "an integer", err)
		} else {
			val = n
		}
	}
	s.fs.IntVar(p, name, val, usage(text, env, def))
}

// Float binds a floating-point knob.
func (s *Set) Float(p *float64, name, env string, def float64, text string) {
	val := def
	if v, ok := s.env(env); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			s.bad(env, v, "a number", err)
		} else {
			val = f
		}
	}
	s.fs.Float64Var(p, name, val, usage(text, env, def))
}

// Bool binds a boolean knob ("true", "false", "1", "0").
func (s *Set) Bool(p *bool, name, env string, def bool, text string) {
	val := def
	if v, ok := s.env(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.bad(env, v, "true or false", err)
		} else {
			val = b
		}
	}
	s.fs.BoolVar(p, name, val, usage(text, env, def))
}
