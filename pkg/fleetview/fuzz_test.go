package fleetview_test

import (
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// FuzzPutEntry feeds registry keys and values to a view: nothing panics, and whatever
// the view holds is the registration of the key it came under.
func FuzzPutEntry(f *testing.F) {
	f.Add("collector.eu.c1", registration("eu", "c1"))
	f.Add("collector.eu.c2", registration("us", "c2"))
	f.Add("service.router.r1", routerRegistration("eu", "r1"))
	f.Add("service.router.r2", routerRegistration("", "r2"))
	f.Add("service.sampler.s1", []byte(`{"v":1,"id":"s1","kind":"service","name":"sampler"}`))
	f.Add("collector..x", []byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		v := fleetview.New(fleetview.Config{})
		err := v.PutEntry(key, data)
		s := v.Snapshot()
		n := len(s.Collectors) + len(s.Routers) + len(s.Services)
		if err != nil && n != 0 {
			t.Fatalf("a rejected value was kept: %v", err)
		}
		for _, c := range s.Collectors {
			if k, _ := events.CollectorKey(c.Key.Region, c.Key.ID); k != key || c.Registration.Region != c.Key.Region || c.Registration.ID != c.Key.ID {
				t.Fatalf("collector %+v kept under %q", c.Key, key)
			}
		}
		for _, r := range s.Routers {
			if k, _ := events.ServiceKey(events.ServiceRouter, r.ID); k != key || r.Region == "" {
				t.Fatalf("router %+v kept under %q", r, key)
			}
		}
		if v.Delete(key) != (n > 0) {
			t.Fatal("Delete disagrees with what was kept")
		}
		if s := v.Snapshot(); len(s.Collectors)+len(s.Routers)+len(s.Services) != 0 {
			t.Fatal("something left after Delete")
		}
	})
}
