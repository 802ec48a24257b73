package features

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/cucumber/godog"

	"github.com/depharness/depharness/fakes/registry"
)

// registerAssetSteps registers the steps of hostile images and of asset tar
// safety (APP-ASSET-5).
func registerAssetSteps(sc stepper) {
	sc.Step(stepExpr(`^a dependent app "([^"]*)" with a release "([^"]*)" built from layers of entries:$`), appWithEntries)
	sc.Step(stepExpr(`^the assets of "([^"]*)" at release "([^"]*)" are safe to extract anywhere$`), assetsSafeToExtract)
}

// entryTypes are the type cells of an entries table.
var entryTypes = map[string]byte{
	"file": tar.TypeReg, "dir": tar.TypeDir, "symlink": tar.TypeSymlink, "hardlink": tar.TypeLink,
	"char": tar.TypeChar, "block": tar.TypeBlock, "fifo": tar.TypeFifo,
}

// entriesTable reads a | layer | path | type | mode | content | table: one
// raw tar entry per row, written as given (paths from the image root,
// leading "/" dropped). type is file, dir, symlink, hardlink, char, block or
// fifo; mode is octal (empty: 644, 755 for a dir); content is a file's
// contents ("random N" works) or a link's target, as the layer holds it.
func entriesTable(t *godog.Table) ([]registry.Layer, error) {
	var layers []registry.Layer
	err := eachRow(t, "entries", []string{"layer", "path", "type", "mode", "content"}, func(i int, c []string) error {
		var n int
		var err error
		if layers, n, err = layerOf(layers, "entries", i, c[0]); err != nil {
			return err
		}
		typ, ok := entryTypes[c[2]]
		if !ok {
			return fmt.Errorf("entries table row %d: unknown type %q", i, c[2])
		}
		e := registry.RawEntry{Name: strings.TrimPrefix(c[1], "/"), Type: typ}
		if c[3] != "" {
			if e.Mode, err = strconv.ParseInt(c[3], 8, 64); err != nil {
				return fmt.Errorf("entries table row %d: mode %q is not octal", i, c[3])
			}
		}
		switch typ {
		case tar.TypeReg:
			if e.Data, err = content(c[1], c[4]); err != nil {
				return err
			}
		case tar.TypeSymlink, tar.TypeLink:
			e.Linkname = c[4]
		case tar.TypeChar, tar.TypeBlock:
			e.Devmajor, e.Devminor = 1, 3
		}
		if typ == tar.TypeDir && !strings.HasSuffix(e.Name, "/") {
			e.Name += "/"
		}
		layers[n].Raw = append(layers[n].Raw, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return layers, nil
}

func appWithEntries(ctx context.Context, name, release string, t *godog.Table) error {
	return appFromTable(ctx, name, release, t, entriesTable)
}

// assetsSafeToExtract fetches the assets and checks APP-ASSET-5 on the tar
// without extracting it: see tarExtractionProblems.
func assetsSafeToExtract(ctx context.Context, appName, release string) error {
	st, err := getAssets(ctx, appName, release)
	if err != nil {
		return err
	}
	probs, err := tarExtractionProblems(st.lastBody)
	if err != nil {
		return fmt.Errorf("GET %s: %w", st.lastPath, err)
	}
	if len(probs) > 0 {
		return fmt.Errorf("GET %s: the tar is not safe to extract: %s", st.lastPath, strings.Join(probs, "; "))
	}
	return nil
}

// maxLinkHops bounds the links followed in one resolution, as Linux does.
const maxLinkHops = 40

// extraction is an in-memory model of a folder a tar is extracted into,
// for judging the tar without writing anything: paths are slash paths
// relative to the folder, links maps the symlinks made so far to their
// texts, and everything else counts as a folder (the most a path can be
// made to lead through).
type extraction struct {
	links map[string]string
}

// errOutside is a resolution that climbs above the folder.
var errOutside = errors.New("outside the folder")

// resolve returns where text leads from the folder dir (nil is the root),
// following the links made so far; follow says whether a link at the last
// component is followed too. It fails with errOutside when any step climbs
// above the folder or meets an absolute text; a loop (more than
// maxLinkHops links) leads nowhere and is not outside.
func (x *extraction) resolve(dir []string, text string, follow bool, hops *int) ([]string, error) {
	if path.IsAbs(text) {
		return nil, errOutside
	}
	comps := splitPath(text)
	at := append([]string(nil), dir...)
	for i, c := range comps {
		if c == ".." {
			if len(at) == 0 {
				return nil, errOutside
			}
			at = at[:len(at)-1]
			continue
		}
		at = append(at, c)
		t, isLink := x.links[strings.Join(at, "/")]
		if !isLink || (i == len(comps)-1 && !follow) {
			continue
		}
		if *hops++; *hops > maxLinkHops {
			return nil, errLoop
		}
		var err error
		if at, err = x.resolve(at[:len(at)-1], t, true, hops); err != nil {
			return nil, err
		}
	}
	return at, nil
}

// errLoop is a resolution through more than maxLinkHops links: it leads
// nowhere.
var errLoop = errors.New("through too many links")

// place returns the path a member named name is created at: its path
// resolved through the links made so far (extractors create a member in
// the folder its parent path leads to), its last component not followed.
func (x *extraction) place(name string) (string, error) {
	hops := 0
	at, err := x.resolve(nil, name, false, &hops)
	if err != nil {
		return "", err
	}
	return strings.Join(at, "/"), nil
}

// tarExtractionProblems judges whether a tar is safe to extract into any
// folder (APP-ASSET-5), by extracting it in a model that writes nothing:
//   - every member is a file, folder, symlink or hard link, without setuid,
//     setgid or sticky bits;
//   - every member is created inside the folder, also when its path runs
//     through links made by earlier members, and a file is never written
//     through a link that leads out;
//   - a hard link to a member that is a symlink becomes that symlink at the
//     hard link's place (what link(2) and GNU tar make of it);
//   - once all is extracted, no symlink leads outside the folder from where
//     it stands, following the others (a missing path counts as a folder,
//     so a link that would lead out once something is created there does).
func tarExtractionProblems(b []byte) ([]string, error) {
	var probs []string
	x := &extraction{links: map[string]string{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the tar: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if h.Mode&0o7000 != 0 {
			probs = append(probs, fmt.Sprintf("%s has mode %04o (setuid, setgid or sticky)", h.Name, h.Mode&0o7777))
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
		case tar.TypeChar, tar.TypeBlock:
			probs = append(probs, fmt.Sprintf("%s is a device node", h.Name))
			continue
		case tar.TypeFifo:
			probs = append(probs, fmt.Sprintf("%s is a FIFO", h.Name))
			continue
		default:
			probs = append(probs, fmt.Sprintf("%s has type %q", h.Name, h.Typeflag))
			continue
		}
		at, err := x.place(name)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s is created %v, through the links before it", h.Name, err))
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			// Many extractors open the path and write through a link there.
			if t, ok := x.links[at]; ok {
				hops := 0
				if _, err := x.resolve(splitPath(path.Dir(at)), t, true, &hops); errors.Is(err, errOutside) {
					probs = append(probs, fmt.Sprintf("%s is written through the link %s -> %s, which leads %v", h.Name, at, t, err))
				}
			}
		case tar.TypeDir:
			delete(x.links, at)
		case tar.TypeSymlink:
			x.links[at] = h.Linkname
		case tar.TypeLink:
			target, err := x.place(strings.TrimSuffix(h.Linkname, "/"))
			if err != nil {
				probs = append(probs, fmt.Sprintf("hard link %s => %s points %v", h.Name, h.Linkname, err))
				continue
			}
			if t, ok := x.links[target]; ok {
				x.links[at] = t // a hard link to a symlink is that symlink here
			} else {
				delete(x.links, at)
			}
		}
	}
	for at, t := range x.links {
		hops := 0
		if _, err := x.resolve(splitPath(path.Dir(at)), t, true, &hops); errors.Is(err, errOutside) {
			probs = append(probs, fmt.Sprintf("symlink %s -> %s leads %v", at, t, err))
		}
	}
	sort.Strings(probs)
	return probs, nil
}

// splitPath splits a slash path into its components, dropping empty ones.
func splitPath(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
