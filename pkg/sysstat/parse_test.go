package sysstat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return data
}

func TestParseHostCPU(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    hostCPUTimes
		wantErr error
	}{
		{
			name: "captured /proc/stat",
			data: string(readTestdata(t, "proc_stat.txt")),
			// cpu  13946 0 2248 23761 246 0 84 13 0 0
			want: hostCPUTimes{idle: 23761 + 246, total: 13946 + 2248 + 23761 + 246 + 84 + 13},
		},
		{
			name: "guest columns are not double counted",
			data: "cpu  100 10 20 300 5 1 2 3 50 7\ncpu0 100 10 20 300 5 1 2 3 50 7\n",
			want: hostCPUTimes{idle: 305, total: 441},
		},
		{
			name: "old kernel with four columns",
			data: "cpu 1 2 3 4\n",
			want: hostCPUTimes{idle: 4, total: 10},
		},
		{
			name:    "per-cpu lines only",
			data:    "cpu0 1 2 3 4\ncpu1 1 2 3 4\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "too few columns",
			data:    "cpu 1 2 3\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "non-numeric column",
			data:    "cpu 1 2 x 4\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "empty",
			data:    "",
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHostCPU([]byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseProcessTicks(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    uint64
		wantErr error
	}{
		{
			name: "captured pid 1",
			data: string(readTestdata(t, "pid1_stat.txt")),
			want: 27 + 44,
		},
		{
			name: "captured short-lived cat",
			data: string(readTestdata(t, "cat_stat.txt")),
			want: 0,
		},
		{
			name: "comm with spaces and parentheses",
			data: "42 (my (odd) proc) S 1 42 42 0 -1 4194560 10 0 0 0 1234 567 0 0 20 0 1 0 100 1000 10 18446744073709551615\n",
			want: 1234 + 567,
		},
		{
			name:    "truncated",
			data:    "42 (x) S 1 42 42 0 -1 4194560 10 0 0 0 1234\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "no comm",
			data:    "42 x S 1 2 3",
			wantErr: ErrMalformed,
		},
		{
			name:    "non-numeric stime",
			data:    "42 (x) S 1 42 42 0 -1 4194560 10 0 0 0 1234 abc 0 0\n",
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcessTicks([]byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseResidentPages(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    uint64
		wantErr error
	}{
		{name: "captured", data: string(readTestdata(t, "cat_statm.txt")), want: 423},
		{name: "minimal", data: "10 7\n", want: 7},
		{name: "one column", data: "10\n", wantErr: ErrMalformed},
		{name: "negative", data: "10 -7\n", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseResidentPages([]byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    memInfo
		wantErr error
	}{
		{
			name: "captured",
			data: string(readTestdata(t, "meminfo.txt")),
			want: memInfo{total: 24684092 * 1024, available: 23832480 * 1024},
		},
		{
			name: "order does not matter",
			data: "MemAvailable:  1000 kB\nMemFree: 5 kB\nMemTotal:  4000 kB\n",
			want: memInfo{total: 4000 * 1024, available: 1000 * 1024},
		},
		{
			name:    "old kernel without MemAvailable",
			data:    "MemTotal: 4000 kB\nMemFree: 1000 kB\n",
			wantErr: ErrUnsupported,
		},
		{
			name:    "no MemTotal",
			data:    "MemAvailable: 1000 kB\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "zero MemTotal",
			data:    "MemTotal: 0 kB\nMemAvailable: 0 kB\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "unknown unit",
			data:    "MemTotal: 4 MB\nMemAvailable: 1 MB\n",
			wantErr: ErrMalformed,
		},
		{
			name:    "missing value",
			data:    "MemTotal:\nMemAvailable: 1 kB\n",
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfo(strings.NewReader(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCgroupMemLimit(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		wantLimit uint64
		wantOK    bool
		wantErr   error
	}{
		{name: "v2 unlimited", data: "max\n"},
		{name: "v2 limit", data: "536870912\n", wantLimit: 512 << 20, wantOK: true},
		{name: "v1 unlimited", data: "9223372036854771712\n"},
		{name: "v1 limit", data: "1073741824\n", wantLimit: 1 << 30, wantOK: true},
		{name: "garbage", data: "lots\n", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit, ok, err := parseCgroupMemLimit([]byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if limit != tt.wantLimit || ok != tt.wantOK {
				t.Errorf("got (%d, %v), want (%d, %v)", limit, ok, tt.wantLimit, tt.wantOK)
			}
		})
	}
}

func TestParseCgroupCPUQuota(t *testing.T) {
	for _, tt := range []struct {
		in     string
		cpus   float64
		ok     bool
		hasErr bool
	}{
		{"150000 100000\n", 1.5, true, false},
		{"max 100000", 0, false, false},
		{"-1 100000", 0, false, false},
		{"0 100000", 0, false, false},
		{"100000", 0, false, true},
		{"x 100000", 0, false, true},
		{"100000 0", 0, false, true},
	} {
		cpus, ok, err := parseCgroupCPUQuota([]byte(tt.in))
		if cpus != tt.cpus || ok != tt.ok || (err != nil) != tt.hasErr {
			t.Errorf("%q: %v %v %v", tt.in, cpus, ok, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v does not wrap ErrMalformed", tt.in, err)
		}
	}
}

func FuzzParseCgroupCPUQuota(f *testing.F) {
	for _, s := range []string{"150000 100000", "max 100000", "-1 100000", "", "1 2 3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cpus, ok, err := parseCgroupCPUQuota(data)
		if err != nil && (ok || cpus != 0) {
			t.Fatalf("error with a result: %v %v %v", cpus, ok, err)
		}
		if ok && !(cpus > 0) {
			t.Fatalf("ok with %v CPUs", cpus)
		}
	})
}
