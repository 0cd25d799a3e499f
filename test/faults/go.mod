module github.com/otelfleet/otelfleet/test/faults

go 1.26.0

require (
	github.com/nats-io/nats.go v1.55.0
	github.com/otelfleet/otelfleet/pkg v0.0.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/otelfleet/otelfleet/pkg => ../../pkg
