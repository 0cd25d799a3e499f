package main

import (
	"time"

	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// fixedReadings are a quiet machine's CPU and memory: the registrations' health in this
// package's tests does not depend on how busy the test machine is.
type fixedReadings struct{}

// Sample implements registration.Sampler.
func (fixedReadings) Sample() (sysstat.Reading, error) {
	return sysstat.Reading{At: time.Now(), CPUWindow: time.Second, ProcessCPU: 0.01, HostCPU: 0.2, ProcessRSSBytes: 50 << 20, HostMemUsed: 0.3, HostMemTotalBytes: 8 << 30}, nil
}

func init() { healthReadings = fixedReadings{} }
