package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestSelectServices(t *testing.T) {
	for name, tc := range map[string]struct {
		list     string
		services []string
		router   bool
		bad      string
	}{
		"all":               {"all", names(devServices), true, ""},
		"empty is all":      {"", names(devServices), true, ""},
		"router only":       {"router", nil, true, ""},
		"some and router":   {"config, router,sampler", []string{"config", "sampler"}, true, ""},
		"some, no router":   {"config,topology", []string{"config", "topology"}, false, ""},
		"unknown names all": {"config,routr", nil, false, "config, registry, topology, sampler, opamp, router"},
	} {
		t.Run(name, func(t *testing.T) {
			got, router, err := selectServices(tc.list)
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("err = %v, want one listing %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tc.services) || router != tc.router {
				t.Fatalf("services %v router %v, want %v %v", names(got), router, tc.services, tc.router)
			}
		})
	}
}

func TestDevAdminAddr(t *testing.T) {
	seen := map[string]string{}
	for _, id := range devAdminOrder {
		addr, err := devAdminAddr("127.0.0.1:9000", id)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[addr]; dup {
			t.Fatalf("%s and %s both on %s", id, other, addr)
		}
		seen[addr] = id
	}
	for id, want := range map[string]string{"config": "127.0.0.1:9000", "router": "127.0.0.1:9005", "sink-1": "127.0.0.1:9006", "simulate": "127.0.0.1:9009"} {
		if got, _ := devAdminAddr("127.0.0.1:9000", id); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
	if got, _ := devAdminAddr("127.0.0.1:0", "router"); got != "127.0.0.1:0" {
		t.Errorf("port 0: %s, want port 0 (a free port) for every identity", got)
	}
	for base, want := range map[string]string{"127.0.0.1:65530": "pick a lower port", "nohost": "--admin-addr", "127.0.0.1:x": "not a number"} {
		if _, err := devAdminAddr(base, "simulate"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one saying %q", base, err, want)
		}
	}
	if _, err := devAdminAddr("127.0.0.1:9000", "sink-4"); err == nil {
		t.Error("an identity without a place got a port")
	}
	if h := devAdminHelp(); !strings.Contains(h, "router +5") || !strings.Contains(h, "sink-3 +8") {
		t.Errorf("help %q", h)
	}
}

// --services names the router like any service; without it (or with --router=false)
// there is none.
func TestDevServicesRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the dev stack")
	}
	for name, tc := range map[string]struct {
		args   []string
		router bool
	}{
		"named":           {[]string{"--services", "config,router"}, true},
		"not named":       {[]string{"--services", "config"}, false},
		"named, disabled": {[]string{"--services", "config,router", "--router=false"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			port := freePort(t)
			url := "nats://127.0.0.1:" + strconv.Itoa(port)
			stop := startDev(t, t.TempDir(), port, append([]string{"--simulate=false", "--sinks", "1"}, tc.args...)...)
			if tc.router {
				natstest.Eventually(t, 20*time.Second, func() bool { _, ok := fetchRouterStatus(t, url); return ok }, "no router answers")
			} else if code, out, _ := runCLI(t, "--nats", url, "--timeout", "1s", "router", "status"); code == exitOK {
				t.Fatalf("a router answers: %s", out)
			}
			if code := stop(); code != exitOK {
				t.Fatalf("dev exited %d", code)
			}
		})
	}
}
