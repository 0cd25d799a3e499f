package fleetconfig

import "path"

// MatchGlob reports whether name matches the glob pattern, with path.Match
// semantics ('*' matches any run of characters except '/', '?' one character,
// '[...]' a class). A malformed pattern matches nothing.
func MatchGlob(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

// PriorityFor returns the rule of g's priority_based strategy that applies to
// service: the first rule, in order, with a glob matching service, or else the
// catch-all rule (the one without services). ok is false, and rule
// meaningless, when g has no priority_based strategy or no rule applies.
func (g Global) PriorityFor(service string) (rule PriorityRule, ok bool) {
	for _, s := range g.SamplingStrategies {
		if s.Type == StrategyPriorityBased {
			return s.priorityFor(service)
		}
	}
	return PriorityRule{}, false
}

func (s Strategy) priorityFor(service string) (PriorityRule, bool) {
	catchAll := -1
	for i, r := range s.Rules {
		if len(r.Services) == 0 {
			if catchAll < 0 {
				catchAll = i
			}
			continue
		}
		for _, g := range r.Services {
			if MatchGlob(g, service) {
				return r, true
			}
		}
	}
	if catchAll < 0 {
		return PriorityRule{}, false
	}
	return s.Rules[catchAll], true
}
