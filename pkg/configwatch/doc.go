// Package configwatch is the config client every otelfleet service uses. It watches the
// config bucket, hands over the current configuration at once and every later valid
// version, and keeps the last good configuration in force when someone writes a value
// that fails to decode or validate (the bad value is logged and counted in
// otelfleet_config_rejected_total, never applied).
//
// Each watcher answers requests on the config report subject with the versions it has
// applied, so `otelfleet config status` shows the rollout per instance.
//
// Until the bucket holds a valid global config, the watcher hands over
// fleetconfig.Defaults() with version 0.
package configwatch
