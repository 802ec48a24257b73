// Package atomicfile replaces files whole: a reader, or a process restarted
// after a crash, sees the old content or the new, never a part.
//
// It imports only the standard library.
package atomicfile

import (
	"os"
	"path/filepath"
)

// TempPrefix starts the name of the temporary file Write creates beside its
// target, so that a directory's owner can sweep what a crash left.
const TempPrefix = ".tmp-"

// Write replaces path by data: it writes a temporary file in the same
// directory (TempPrefix, path's base name, "-" and a random suffix), syncs
// it, renames it over path and syncs the directory. On an error path is
// unchanged and the temporary file is removed.
func Write(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
