// Program otelcol-opamp is the OpenTelemetry Collector distribution otelfleet's OpAMP
// interop tests run: a stock collector core with the contrib opamp extension, so it joins
// the fleet over OpAMP on its own or under the opampsupervisor.
//
// Components:
//
//	extensions: opamp
//	receivers:  otlp
//	processors: batch, probabilistic_sampler
//	exporters:  otlp_grpc (alias otlp), debug, nop
//	providers:  env, file, yaml
//
// It is its own module, outside the workspace; test/interop/build-opamp.sh builds it into
// a cache directory (never into the repository).
package main

import (
	"os"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/opampextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/probabilisticsamplerprocessor"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/nopexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

// Module versions, reported by the collector's `components` command.
const (
	contribModules = "github.com/open-telemetry/opentelemetry-collector-contrib/"
	coreModules    = "go.opentelemetry.io/collector/"
	contribVersion = "v0.149.0"
	coreVersion    = "v0.149.0"
	stableVersion  = "v1.55.0"
)

// typed is what every component factory has in common.
type typed interface{ Type() component.Type }

// aliased is a factory that also answers to a deprecated type name.
type aliased interface{ DeprecatedAlias() component.Type }

// modules maps each factory's type (and its alias, if any) to "<module> <version>".
func modules[T typed](pairs map[string]T) map[component.Type]string {
	out := make(map[component.Type]string, len(pairs))
	for mod, f := range pairs {
		out[f.Type()] = mod
		if a, ok := any(f).(aliased); ok && a.DeprecatedAlias().String() != "" {
			out[a.DeprecatedAlias()] = mod
		}
	}
	return out
}

// factoryMap builds a kind's factory map and its module map from one table.
func factoryMap[T interface {
	typed
	component.Factory
}](pairs map[string]T) (map[component.Type]T, map[component.Type]string, error) {
	list := make([]T, 0, len(pairs))
	for _, f := range pairs {
		list = append(list, f)
	}
	m, err := otelcol.MakeFactoryMap(list...)
	return m, modules(pairs), err
}

func components() (otelcol.Factories, error) {
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	var err error
	if f.Extensions, f.ExtensionModules, err = factoryMap(map[string]extension.Factory{
		contribModules + "extension/opampextension " + contribVersion: opampextension.NewFactory(),
	}); err != nil {
		return f, err
	}
	if f.Receivers, f.ReceiverModules, err = factoryMap(map[string]receiver.Factory{
		coreModules + "receiver/otlpreceiver " + coreVersion: otlpreceiver.NewFactory(),
	}); err != nil {
		return f, err
	}
	if f.Processors, f.ProcessorModules, err = factoryMap(map[string]processor.Factory{
		coreModules + "processor/batchprocessor " + coreVersion:                      batchprocessor.NewFactory(),
		contribModules + "processor/probabilisticsamplerprocessor " + contribVersion: probabilisticsamplerprocessor.NewFactory(),
	}); err != nil {
		return f, err
	}
	if f.Exporters, f.ExporterModules, err = factoryMap(map[string]exporter.Factory{
		coreModules + "exporter/otlpexporter " + coreVersion:  otlpexporter.NewFactory(),
		coreModules + "exporter/debugexporter " + coreVersion: debugexporter.NewFactory(),
		coreModules + "exporter/nopexporter " + coreVersion:   nopexporter.NewFactory(),
	}); err != nil {
		return f, err
	}
	f.Connectors, f.ConnectorModules, err = factoryMap(map[string]connector.Factory{})
	return f, err
}

func main() {
	providers := map[string]confmap.ProviderFactory{
		coreModules + "confmap/provider/envprovider " + stableVersion:  envprovider.NewFactory(),
		coreModules + "confmap/provider/fileprovider " + stableVersion: fileprovider.NewFactory(),
		coreModules + "confmap/provider/yamlprovider " + stableVersion: yamlprovider.NewFactory(),
	}
	factories := make([]confmap.ProviderFactory, 0, len(providers))
	providerModules := make(map[string]string, len(providers))
	for mod, p := range providers {
		factories = append(factories, p)
		providerModules[p.Create(confmap.ProviderSettings{}).Scheme()] = mod
	}
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-opamp",
			Description: "otelfleet interop collector: core " + coreVersion + " with the opamp extension " + contribVersion,
			Version:     contribVersion,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: factories,
				DefaultScheme:     "env",
			},
		},
		ProviderModules: providerModules,
	}
	// The command prints its own error.
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		os.Exit(1)
	}
}
