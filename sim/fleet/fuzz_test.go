package fleet_test

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"

	"github.com/depharness/depharness/sim/fleet"
)

// FuzzChecksum feeds arbitrary bytes as an assets download: Checksum must
// never panic, and for a tar it reads, the same files given to
// ChecksumFiles must give the same checksum.
func FuzzChecksum(f *testing.F) {
	f.Add(makeTar(f, [][2]string{{"firmware.bin", "AAAA"}, {"sub/x.hex", ":00000001FF"}}))
	f.Add(makeTar(f, nil))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := fleet.ChecksumLimit(bytes.NewReader(data), 1<<20)
		if err != nil {
			return
		}
		files := map[string][]byte{}
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			var b bytes.Buffer
			if _, err := b.ReadFrom(io.LimitReader(tr, 1<<20)); err != nil {
				t.Fatalf("Checksum read the tar, a second read failed: %v", err)
			}
			files[h.Name] = b.Bytes()
		}
		if got := fleet.ChecksumFiles(files); got != sum && !hasDotSlashTwin(files) {
			t.Errorf("ChecksumFiles: got %s, want Checksum's %s", got, sum)
		}
	})
}

// hasDotSlashTwin reports names that differ only by a leading "./": the
// tar's order then decides which content wins in Checksum, the map's in
// ChecksumFiles.
func hasDotSlashTwin(files map[string][]byte) bool {
	for n := range files {
		if _, ok := files["./"+n]; ok {
			return true
		}
	}
	return false
}

// FuzzParseProfile: any input is a valid profile or an error, never a
// panic, and a profile it accepts builds a fleet.
func FuzzParseProfile(f *testing.F) {
	f.Add([]byte(`{"count": 3, "seed": 7, "flashTime": {"dist": "uniform", "min": "1s", "max": "2s"}}`))
	f.Add([]byte(`{"offline": {"probability": 0.5, "interval": "1s", "duration": {"dist": "normal", "mean": "1s", "stddev": "1h"}}}`))
	f.Add([]byte(`{"logRate": 1e308}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := fleet.ParseProfile(data)
		if err != nil {
			return
		}
		if p.Count > 1000 {
			p.Count = 1000
		}
		if _, err := fleet.New(p, fleet.Options{}); err != nil {
			t.Errorf("New of an accepted profile: %v", err)
		}
	})
}
