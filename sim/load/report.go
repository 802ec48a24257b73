package load

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Report is what `depharness load` writes to reports/: the run's
// configuration, one Result per phase, and the process's resource use.
type Report struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Mode is "in-process" or "external".
	Mode string `json:"mode"`
	// Config is the run's settings (devices, policy, seed, intervals...).
	Config map[string]any `json:"config"`
	Phases []*Result      `json:"phases"`
	// Passed is true when every phase converged and every threshold held.
	Passed bool `json:"passed"`
	// Thresholds are the limits the run was judged by (Judge), each with
	// its verdict; empty when none was set.
	Thresholds []Threshold  `json:"thresholds,omitempty"`
	Process    ProcessStats `json:"process"`
}

// ProcessStats is the resource use of the process that ran the load.
type ProcessStats struct {
	// PeakRSSBytes is VmHWM of /proc/self/status (0 where unavailable).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// RSSBytes is VmRSS at the end.
	RSSBytes    int64   `json:"rss_bytes"`
	HeapInuse   uint64  `json:"heap_inuse_bytes"`
	HeapSys     uint64  `json:"heap_sys_bytes"`
	TotalSys    uint64  `json:"go_sys_bytes"`
	NumGC       uint32  `json:"num_gc"`
	Goroutines  int     `json:"goroutines"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	NumCPU      int     `json:"num_cpu"`
	GoVersion   string  `json:"go_version"`
	WallSeconds float64 `json:"wall_seconds"`
}

// ReadProcessStats reads the process's memory and scheduler figures.
func ReadProcessStats() ProcessStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ps := ProcessStats{
		HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, TotalSys: ms.Sys, NumGC: ms.NumGC,
		Goroutines: runtime.NumGoroutine(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(),
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		ps.PeakRSSBytes, ps.RSSBytes = parseStatus(f)
	}
	return ps
}

// parseStatus reads VmHWM and VmRSS (kB) from a /proc/<pid>/status file.
func parseStatus(r io.Reader) (hwm, rss int64) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	return hwm, rss
}

// WriteFiles writes r as dir/load-<scenario>-<timestamp>.json and .html
// and returns their paths.
func WriteFiles(dir string, r *Report) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, fmt.Sprintf("load-%s-%s", strings.ReplaceAll(r.Scenario, ",", "+"), r.Started.UTC().Format("20060102T150405Z")))
	jsonPath, htmlPath = base+".json", base+".html"
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", err
	}
	var hb bytes.Buffer
	if err := WriteHTML(&hb, r); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(htmlPath, hb.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, nil
}
