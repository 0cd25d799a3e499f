// Package rollout is the collector config rollout controller, run by the opamp
// service's leader. For each group (a collector config document collector.<group> in the
// config bucket) it renders the document, plans waves over the group's agents (canary
// first, sorted by UID), writes each wave's desired.<uid>, and moves to the next wave
// once every agent of the wave reported APPLIED for the config's hash and stayed healthy
// for the soak time. A FAILED status, an agent turning unhealthy after applying, or a
// wave that does not get there within its timeout stops the rollout and gives the last
// good config back to the agents that took the bad one; that version is not rolled out
// again until a newer one is stored.
//
// Step is the pure core (inputs and time in, state, writes and events out); Controller
// is the NATS glue that feeds it from the buckets and applies what it returns.
package rollout

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// Input is what Step decides from, for one group.
type Input struct {
	Now   time.Time
	Group string
	// Policy is the document's rollout policy (defaults applied by Step).
	Policy fleetconfig.RolloutPolicy
	// Target is the rendered config the group's document asks for; nil when there is
	// none (no valid document, or its placeholders cannot be rendered yet).
	Target *events.RolloutConfig
	// State is the stored rollout.<group>, nil when there is none.
	State *events.RolloutState
	// Agents are the group's agents that accept remote config, by UID.
	Agents map[string]events.AgentState
	// Desired are the stored desired configs of agents, by UID (at least the group's).
	Desired map[string]events.DesiredConfig
	// Token is the leader term's fencing token, written into the state.
	Token uint64
}

// Output is what Step decided.
type Output struct {
	// State is the new rollout.<group> to store; nil when it did not change.
	State *events.RolloutState
	// Write are desired configs to store; Delete the UIDs whose desired config to remove.
	Write  []events.DesiredConfig
	Delete []string
	// Events to publish once State is stored.
	Events []events.RolloutEvent
}

// Step advances group's rollout by one decision. It is deterministic in its input.
func Step(in Input) Output {
	p := in.Policy.WithDefaults()
	var out Output
	st := clone(in.State)
	if t := in.Target; t != nil && wantsStart(st, *t) {
		st = start(in, p, st, &out)
	} else if st != nil && st.Phase == events.RolloutRunning {
		advance(in, p, st, &out)
	}
	if st != nil {
		reconcile(in, st, &out)
		slices.SortFunc(out.Write, func(a, b events.DesiredConfig) int { return strings.Compare(a.UID, b.UID) })
		slices.Sort(out.Delete)
		snapshot(in, st)
		st.Token = max(st.Token, in.Token)
		if in.State == nil || !reflect.DeepEqual(st, in.State) {
			st.UpdatedAt = in.Now
			out.State = st
		}
	}
	return out
}

// wantsStart says whether t is a new rollout: it differs from the state's target and is
// not a version already rolled back.
func wantsStart(st *events.RolloutState, t events.RolloutConfig) bool {
	if st == nil {
		return true
	}
	if st.Target.Version > t.Version || st.BadVersion > st.Target.Version {
		// Not a state written for this document (it was deleted and stored anew from
		// version 1, or the value was written by hand): start over.
		return true
	}
	if t.Version <= st.BadVersion {
		return false
	}
	return st.Target.Version != t.Version || st.Target.Hash != t.Hash
}

func clone(st *events.RolloutState) *events.RolloutState {
	if st == nil {
		return nil
	}
	c := *st
	c.Waves = make([][]string, len(st.Waves))
	for i, w := range st.Waves {
		c.Waves[i] = slices.Clone(w)
	}
	c.Agents = slices.Clone(st.Agents)
	c.Target.Values = maps.Clone(st.Target.Values)
	if st.Good != nil {
		g := *st.Good
		g.Values = maps.Clone(g.Values)
		c.Good = &g
	}
	return &c
}

// Plan splits uids (sorted) into the canary wave (CanaryPercent of them, at least one)
// and up to Waves nearly equal waves for the rest.
func Plan(uids []string, p fleetconfig.RolloutPolicy) [][]string {
	p = p.WithDefaults()
	uids = slices.Clone(uids)
	slices.Sort(uids)
	n := len(uids)
	if n == 0 {
		return nil
	}
	canary := min(n, max(1, int(float64(n)*p.CanaryPercent/100+0.999999)))
	waves := [][]string{uids[:canary]}
	rest := uids[canary:]
	k := min(p.Waves, len(rest))
	for i := range k {
		lo, hi := i*len(rest)/k, (i+1)*len(rest)/k
		waves = append(waves, rest[lo:hi])
	}
	return waves
}

func rolloutID(group string, t events.RolloutConfig) string {
	return fmt.Sprintf("%s-%d-%s", group, t.Version, t.Hash[:min(12, len(t.Hash))])
}

func start(in Input, p fleetconfig.RolloutPolicy, old *events.RolloutState, out *Output) *events.RolloutState {
	uids := make([]string, 0, len(in.Agents))
	for uid := range in.Agents {
		uids = append(uids, uid)
	}
	st := &events.RolloutState{V: events.RolloutStateVersion, Group: in.Group, ID: rolloutID(in.Group, *in.Target),
		Phase: events.RolloutRunning, Target: *in.Target, Waves: Plan(uids, p), WaveStarted: in.Now, StartedAt: in.Now}
	if old != nil {
		st.Good = old.Good
		if old.BadVersion <= in.Target.Version {
			st.BadVersion = old.BadVersion
		}
	}
	if st.Waves == nil {
		st.Waves = [][]string{}
	}
	out.Events = append(out.Events, event(events.EventRolloutStarted, st, ""))
	if len(st.Waves) == 0 {
		complete(in, st, out)
		return st
	}
	writeWave(in, st, out)
	return st
}

func event(t events.EventType, st *events.RolloutState, reason string) events.RolloutEvent {
	n := 0
	for _, w := range st.Waves {
		n += len(w)
	}
	return events.RolloutEvent{V: events.RolloutEventVersion, Type: string(t), Group: st.Group, Rollout: st.ID,
		Version: st.Target.Version, Hash: st.Target.Hash, Wave: st.Wave, Waves: len(st.Waves), Agents: n, Reason: reason}
}

func desired(in Input, st *events.RolloutState, uid string, c events.RolloutConfig) events.DesiredConfig {
	return events.DesiredConfig{V: events.DesiredConfigVersion, UID: uid, Group: in.Group, Version: c.Version,
		Hash: c.Hash, Config: c.Config, Rollout: st.ID, UpdatedAt: in.Now}
}

// give writes c as uid's desired config unless it already is.
func give(in Input, st *events.RolloutState, out *Output, uid string, c events.RolloutConfig) {
	if d, ok := in.Desired[uid]; ok && d.Hash == c.Hash && d.Version == c.Version {
		return
	}
	out.Write = append(out.Write, desired(in, st, uid, c))
}

func writeWave(in Input, st *events.RolloutState, out *Output) {
	for _, uid := range st.Waves[st.Wave] {
		if _, ok := in.Agents[uid]; ok {
			give(in, st, out, uid, st.Target)
		}
	}
}

func complete(in Input, st *events.RolloutState, out *Output) {
	st.Phase = events.RolloutCompleted
	good := st.Target
	st.Good = &good
	st.SoakStart = time.Time{}
	out.Events = append(out.Events, event(events.EventRolloutCompleted, st, ""))
}

func name(a events.AgentState) string { return fmt.Sprintf("agent %s/%s (%s)", a.Region, a.ID, a.UID) }

func advance(in Input, p fleetconfig.RolloutPolicy, st *events.RolloutState, out *Output) {
	// Any agent that took the target and failed or turned unhealthy stops the rollout.
	for w := 0; w <= st.Wave; w++ {
		for _, uid := range st.Waves[w] {
			a, ok := in.Agents[uid]
			if !ok || a.RemoteConfig.Hash != st.Target.Hash {
				continue
			}
			switch {
			case a.RemoteConfig.Status == events.RemoteConfigFailed:
				fail(in, st, out, fmt.Sprintf("%s: remote config FAILED: %s", name(a), cmp.Or(a.RemoteConfig.Error, "no error given")))
				return
			case a.RemoteConfig.Status == events.RemoteConfigApplied && !a.Health.Healthy:
				fail(in, st, out, fmt.Sprintf("%s: unhealthy after applying: %s", name(a), cmp.Or(a.Health.LastError, a.Health.Status, "no error given")))
				return
			}
		}
	}
	var waiting []string
	for _, uid := range st.Waves[st.Wave] {
		a, ok := in.Agents[uid]
		if !ok {
			continue // gone: its state expired; not waited for
		}
		if a.RemoteConfig.Hash != st.Target.Hash || a.RemoteConfig.Status != events.RemoteConfigApplied || !a.Health.Healthy {
			waiting = append(waiting, name(a))
		}
	}
	if len(waiting) > 0 {
		st.SoakStart = time.Time{}
		if in.Now.Sub(st.WaveStarted) > time.Duration(p.WaveTimeout) {
			shown := waiting[:min(3, len(waiting))]
			fail(in, st, out, fmt.Sprintf("wave %d timed out after %v: %d agents not APPLIED and healthy (%s)", st.Wave, time.Duration(p.WaveTimeout), len(waiting), strings.Join(shown, ", ")))
		}
		return
	}
	if st.SoakStart.IsZero() {
		st.SoakStart = in.Now
	}
	if in.Now.Sub(st.SoakStart) < time.Duration(p.Soak) {
		return
	}
	if st.Wave+1 >= len(st.Waves) {
		complete(in, st, out)
		return
	}
	st.Wave++
	st.WaveStarted, st.SoakStart = in.Now, time.Time{}
	out.Events = append(out.Events, event(events.EventRolloutWave, st, ""))
	writeWave(in, st, out)
}

func fail(in Input, st *events.RolloutState, out *Output, reason string) {
	st.Phase, st.Reason, st.BadVersion = events.RolloutRolledBack, reason, max(st.BadVersion, st.Target.Version)
	st.SoakStart = time.Time{}
	out.Events = append(out.Events, event(events.EventRolloutFailed, st, reason))
	ev := event(events.EventRolloutRolledBack, st, reason)
	if st.Good != nil {
		ev.RolledBackTo = st.Good.Version
	}
	out.Events = append(out.Events, ev)
	// reconcile gives the good config back (or removes the bad one) to every agent.
}

// reconcile keeps settled groups in step: once completed every agent runs the target;
// once rolled back every agent that holds the bad config gets the good one back (or
// loses its desired config when none was good). While running, agents outside the plan
// (joined later) get the good config if they have none.
func reconcile(in Input, st *events.RolloutState, out *Output) {
	uids := make([]string, 0, len(in.Agents))
	for uid := range in.Agents {
		uids = append(uids, uid)
	}
	// Order does not matter here: Step sorts what it writes.
	switch st.Phase {
	case events.RolloutCompleted:
		for _, uid := range uids {
			give(in, st, out, uid, st.Target)
		}
	case events.RolloutRolledBack:
		for _, uid := range uids {
			if st.Good != nil {
				give(in, st, out, uid, *st.Good)
			} else if d, ok := in.Desired[uid]; ok && d.Hash == st.Target.Hash {
				out.Delete = append(out.Delete, uid)
			}
		}
		// Agents that took the bad config and left the group still get it undone.
		for _, w := range st.Waves {
			for _, uid := range w {
				if _, member := in.Agents[uid]; member {
					continue
				}
				if d, ok := in.Desired[uid]; ok && d.Hash == st.Target.Hash {
					if st.Good != nil {
						out.Write = append(out.Write, desired(in, st, uid, *st.Good))
					} else {
						out.Delete = append(out.Delete, uid)
					}
				}
			}
		}
	case events.RolloutRunning:
		planned := map[string]bool{}
		for _, w := range st.Waves {
			for _, uid := range w {
				planned[uid] = true
			}
		}
		for _, uid := range uids {
			if _, has := in.Desired[uid]; !planned[uid] && !has && st.Good != nil {
				give(in, st, out, uid, *st.Good)
			}
		}
	}
}

// snapshot records the planned agents as seen now (every one in small groups; in large
// ones those not yet settled on the target, see events.RolloutState.Agents).
func snapshot(in Input, st *events.RolloutState) {
	prev := make(map[string]events.RolloutAgent, len(st.Agents))
	for _, a := range st.Agents {
		prev[a.UID] = a
	}
	n := 0
	for _, w := range st.Waves {
		n += len(w)
	}
	all := n <= events.MaxListedRolloutAgents
	st.Agents = make([]events.RolloutAgent, 0, min(n, events.MaxListedRolloutAgents))
	st.Settled = 0
	for w, uids := range st.Waves {
		for _, uid := range uids {
			a, ok := in.Agents[uid]
			if !all && ok && a.RemoteConfig.Hash == st.Target.Hash && a.RemoteConfig.Status == events.RemoteConfigApplied && a.Health.Healthy {
				st.Settled++
				continue
			}
			if len(st.Agents) == events.MaxListedRolloutAgents {
				continue
			}
			ra := events.RolloutAgent{UID: uid, Wave: w, Gone: !ok}
			if p, seen := prev[uid]; !ok && seen { // gone: keep what was last seen
				ra.ID, ra.Region, ra.Version, ra.Hash, ra.Status, ra.Error = p.ID, p.Region, p.Version, p.Hash, p.Status, p.Error
			}
			if ok {
				ra.ID, ra.Region, ra.Version, ra.Hash = a.ID, a.Region, a.RemoteConfig.Version, a.RemoteConfig.Hash
				ra.Status, ra.Error, ra.Healthy = a.RemoteConfig.Status, a.RemoteConfig.Error, a.Health.Healthy
			}
			st.Agents = append(st.Agents, ra)
		}
	}
}
