package knobs

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: 5 * time.Second},
		{name: "env", env: "2s", want: 2 * time.Second},
		{name: "flag wins over env", env: "2s", args: []string{"-ttl", "7s"}, want: 7 * time.Second},
		{name: "bad env reported", env: "soon", want: 5 * time.Second, wantErr: `environment TEST_TTL="soon": want a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TEST_TTL", tc.env)
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			s := New(fs)
			var got time.Duration
			s.Duration(&got, "ttl", "TEST_TTL", 5*time.Second, "lease TTL")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			err := s.Err()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestUsageNamesFlagEnvAndDefault(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s := New(fs)
	var a string
	var n int
	var f float64
	var b bool
	s.String(&a, "admin-addr", "ADMIN_ADDR", ":8080", "admin HTTP address")
	s.Int(&n, "n", "TEST_N", 3, "count")
	s.Float(&f, "f", "TEST_F", 0.5, "fraction")
	s.Bool(&b, "b", "TEST_B", true, "switch")
	if u := fs.Lookup("admin-addr").Usage; u != `admin HTTP address (env ADMIN_ADDR)` {
		t.Errorf("usage = %q", u)
	}
	var empty string
	s.String(&empty, "creds", "TEST_CREDS", "", "credentials")
	if u := fs.Lookup("creds").Usage; u != `credentials (env TEST_CREDS, default "")` {
		t.Errorf("usage of a zero default = %q", u)
	}
	if n != 3 || f != 0.5 || !b || fs.Lookup("n").DefValue != "3" || fs.Lookup("f").DefValue != "0.5" || fs.Lookup("b").DefValue != "true" {
		t.Errorf("defaults not registered: %v %v %v", fs.Lookup("n").DefValue, fs.Lookup("f").DefValue, fs.Lookup("b").DefValue)
	}
}

func TestBadNumbersReported(t *testing.T) {
	t.Setenv("TEST_N", "three")
	t.Setenv("TEST_F", "half")
	t.Setenv("TEST_B", "maybe")
	s := New(flag.NewFlagSet("x", flag.ContinueOnError))
	var n int
	var f float64
	var b bool
	s.Int(&n, "n", "TEST_N", 3, "count")
	s.Float(&f, "f", "TEST_F", 0.5, "fraction")
	s.Bool(&b, "b", "TEST_B", true, "switch")
	err := s.Err()
	for _, want := range []string{"TEST_N", "TEST_F", "TEST_B"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
