package fleetconfig

import (
	"reflect"
	"time"
)

// Diff returns the YAML names of the top-level fields of Global whose values
// differ between old and new, in schema order: sampling_rate,
// sampling_strategies, degradation, rate_limiting, routing_rules, metadata.
// The stored-only fields (Version, UpdatedAt, UpdatedBy) are ignored, and an
// empty list or map equals an absent one. It returns nil when nothing differs.
func Diff(old, new Global) []string {
	return changed([]field{
		{"sampling_rate", old.SamplingRate, new.SamplingRate},
		{"sampling_strategies", old.SamplingStrategies, new.SamplingStrategies},
		{"degradation", old.Degradation, new.Degradation},
		{"rate_limiting", old.RateLimiting, new.RateLimiting},
		{"routing_rules", old.RoutingRules, new.RoutingRules},
		{"metadata", old.Metadata, new.Metadata},
	})
}

// DiffRegion returns the YAML names of the top-level fields of Region whose
// values differ between old and new, in schema order: regional_sampling_rate,
// local_routing_preference, buffer_size, batch, retry. Like Diff, it ignores
// the stored-only fields and returns nil when nothing differs.
func DiffRegion(old, new Region) []string {
	return changed([]field{
		{"regional_sampling_rate", old.RegionalSamplingRate, new.RegionalSamplingRate},
		{"local_routing_preference", old.LocalRoutingPreference, new.LocalRoutingPreference},
		{"buffer_size", old.BufferSize, new.BufferSize},
		{"batch", old.Batch, new.Batch},
		{"retry", old.Retry, new.Retry},
	})
}

// field is one named field of two values being compared.
type field struct {
	name     string
	old, new any
}

func changed(fields []field) []string {
	var names []string
	for _, f := range fields {
		if !equivalent(reflect.ValueOf(f.old), reflect.ValueOf(f.new)) {
			names = append(names, f.name)
		}
	}
	return names
}

var timeType = reflect.TypeFor[time.Time]()

// equivalent is reflect.DeepEqual for configuration values except that nil
// and empty slices and maps are equal and times are compared with
// time.Time.Equal. a and b have the same type.
func equivalent(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equivalent(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !equivalent(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equivalent(a.Elem(), b.Elem())
	case reflect.Struct:
		if a.Type() == timeType {
			return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
		}
		for i := range a.NumField() {
			if !equivalent(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	default:
		return a.Interface() == b.Interface()
	}
}
