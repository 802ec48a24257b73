package store

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOpenAppliesMigrationsOnceAndReopens(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	var v int
	if err := s.w.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != len(migrations) {
		t.Fatalf("user_version = %d, want %d", v, len(migrations))
	}
	var mode string
	if err := s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode = %q, want wal", mode)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := openDir(t, dir).Close(); err != nil {
		t.Fatalf("close after reopen: %v", err)
	}
}

func TestOpenRejectsUnwritableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere; use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(filepath.Join(f, "sub"), Options{}); err == nil {
			t.Fatal("Open under a regular file succeeded, want error")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	if _, err := Open(filepath.Join(dir, "sub"), Options{}); err == nil {
		t.Fatal("Open in read-only dir succeeded, want error")
	}
}
