// Command otelcol is the tests' OTLP receiver: the OpenTelemetry Collector built from its
// Go modules with only what the tracing test needs, as the collector builder (ocb) would
// generate it: the otlp receiver (gRPC and HTTP) and the contrib file exporter, which
// writes what it receives as OTLP JSON lines. Built by tests/cluster/build.sh.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

const (
	receiverModule = "go.opentelemetry.io/collector/receiver/otlpreceiver"
	exporterModule = "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	providerModule = "go.opentelemetry.io/collector/confmap/provider/"
)

// The module versions linked in, for build.sh's check of the pins.
func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Version
			}
		}
	}
	return "unknown"
}

// module is "<path> <version>", as the `components` command lists each component's.
func module(path string) string { return path + " " + moduleVersion(path) }

func scheme(factory confmap.ProviderFactory) string {
	return factory.Create(confmap.ProviderSettings{}).Scheme()
}

func main() {
	info := component.BuildInfo{
		Command:     "otelcol",
		Description: "OpenTelemetry Collector with the otlp receiver and the file exporter, for tests.",
		Version:     fmt.Sprintf("%s (fileexporter %s)", moduleVersion(receiverModule), moduleVersion(exporterModule)),
	}
	set := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
		ProviderModules: map[string]string{
			scheme(envprovider.NewFactory()):  module(providerModule + "envprovider"),
			scheme(fileprovider.NewFactory()): module(providerModule + "fileprovider"),
			scheme(yamlprovider.NewFactory()): module(providerModule + "yamlprovider"),
		},
	}
	// cobra has printed the error already.
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		os.Exit(1)
	}
}
