package console

import (
	"testing"
)

func TestAdmissionGCSettings(t *testing.T) {
	on := Default()
	on.AdmissionAddr = ":8085"
	tests := []struct {
		name   string
		cfg    func(Config) Config
		cgroup int64
		want   gcSettings
	}{
		{"admission off", func(Config) Config { return Default() }, 0, gcSettings{}},
		{"defaults", func(c Config) Config { return c }, 0, gcSettings{percent: 800, limit: 1 << 30}},
		{"a large container", func(c Config) Config { return c }, 8 << 30, gcSettings{percent: 800, limit: 1 << 30}},
		{"a small container", func(c Config) Config { return c }, 512 << 20, gcSettings{percent: 800, limit: 384 << 20}},
		{"GOGC set", func(c Config) Config { c.AdmissionGCPercent = 0; return c }, 0, gcSettings{limit: 1 << 30}},
		{"GOMEMLIMIT set", func(c Config) Config { c.AdmissionMemoryLimit = 0; return c }, 512 << 20, gcSettings{percent: 800}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := admissionGC(tc.cfg(on), tc.cgroup); got != tc.want {
				t.Errorf("admissionGC() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseCgroupLimit(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"max\n", 0},
		{"536870912\n", 512 << 20},
		{"9223372036854771712\n", 0}, // cgroup v1: no limit
		{"", 0},
		{"-1", 0},
		{"12abc", 0},
	}
	for _, tc := range tests {
		if got := parseCgroupLimit([]byte(tc.in)); got != tc.want {
			t.Errorf("parseCgroupLimit(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
