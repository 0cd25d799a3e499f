package samplersvc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchServerEnv makes the test binary run as the loopback benchmark's server (see
// TestMain): GOMAXPROCS=1, a decision for 10,000 services, address on stdout, serving
// until stdin closes.
const benchServerEnv = "OTELFLEET_SAMPLING_BENCH_SERVER"

func runBenchServer() {
	runtime.GOMAXPROCS(1)
	api := NewAPI(nil)
	api.Install(bigDecision(10_000))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	go func() { _ = http.Serve(ln, api) }()
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// cpuSeconds returns the user+system CPU time of process pid from /proc.
func cpuSeconds(pid int) (float64, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100, true // USER_HZ is 100 on Linux
}

// BenchmarkSamplingHTTPLoopback serves the Jaeger API from a child process limited to
// one core (GOMAXPROCS=1) and loads it over loopback HTTP/1.1 keep-alive connections
// from this process. It reports requests per second, requests per second of the
// server's CPU time (requests per core, whether or not the client saturates it), and
// the p50 and p99 latency seen by the client, with 1 and 16 concurrent clients per
// GOMAXPROCS of the client.
func BenchmarkSamplingHTTPLoopback(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"=1", "GOMAXPROCS=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + strings.TrimSpace(addr) + "/sampling?service=service-"
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", conc), func(b *testing.B) { loadLoopback(b, cmd.Process.Pid, url, conc) })
	}
}

func loadLoopback(b *testing.B, pid int, url string, parallelism int) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	cpu0, _ := cpuSeconds(pid)
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		i := 0
		buf := make([]byte, 512)
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Get(url + pad(i*7919%10_000))
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			resp.Body.Close()
			local = append(local, time.Since(t0))
			i++
		}
		mu.Lock()
		lats = append(lats, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	cpu1, ok := cpuSeconds(pid)
	slices.Sort(lats)
	if len(lats) == 0 {
		return
	}
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "req/s")
	if ok && cpu1 > cpu0 {
		b.ReportMetric(float64(len(lats))/(cpu1-cpu0), "req/server-cpu-s")
	}
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
}
