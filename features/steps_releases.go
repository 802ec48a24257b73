package features

import (
	"context"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
)

// Steps that create apps in the cloud and push their releases to the registry.

// content reads a cell of a files table: "random N" is N bytes drawn from
// a generator seeded by the path (so the same cell always gives the same
// bytes); anything else is the text itself.
func content(path, cell string) ([]byte, error) {
	if n, ok := strings.CutPrefix(cell, "random "); ok {
		size, err := strconv.Atoi(n)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("content %q: want \"random <bytes>\"", cell)
		}
		h := fnv.New64a()
		h.Write([]byte(path))
		r := mrand.New(mrand.NewPCG(h.Sum64(), uint64(size)))
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b, nil
	}
	return []byte(cell), nil
}

// filesTable reads a | path | content | table.
func filesTable(t *godog.Table) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := eachRow(t, "files", []string{"path", "content"}, func(_ int, c []string) error {
		data, err := content(c[0], c[1])
		out[c[0]] = data
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachRow calls row with the number and the cells of every row of t below
// its header, and stops at the first error: one from row, or a row without
// one cell per column (what names the table in that error).
func eachRow(t *godog.Table, what string, columns []string, row func(i int, c []string) error) error {
	if what != "" {
		what += " "
	}
	for i, r := range t.Rows {
		if i == 0 {
			continue
		}
		if len(r.Cells) != len(columns) {
			return fmt.Errorf("%stable row %d: want | %s |", what, i, strings.Join(columns, " | "))
		}
		c := make([]string, len(r.Cells))
		for k, cell := range r.Cells {
			c[k] = cell.Value
		}
		if err := row(i, c); err != nil {
			return err
		}
	}
	return nil
}

// layerOf is layers grown to hold the layer a cell of row i of the what
// table numbers from 1, and that layer's index.
func layerOf(layers []registry.Layer, what string, i int, cell string) ([]registry.Layer, int, error) {
	n, err := strconv.Atoi(cell)
	if err != nil || n < 1 {
		return layers, 0, fmt.Errorf("%s table row %d: layer %q is not a number from 1", what, i, cell)
	}
	for len(layers) < n {
		layers = append(layers, registry.Layer{})
	}
	return layers, n - 1, nil
}

// layersTable reads a | layer | path | content | table of image paths into
// layers of raw tar entries, written as they are.
func layersTable(t *godog.Table) ([]registry.Layer, error) {
	var layers []registry.Layer
	err := eachRow(t, "layers", []string{"layer", "path", "content"}, func(i int, c []string) error {
		var n int
		var err error
		if layers, n, err = layerOf(layers, "layers", i, c[0]); err != nil {
			return err
		}
		data, err := content(c[1], c[2])
		layers[n].Raw = append(layers[n].Raw, registry.RawEntry{Name: strings.TrimPrefix(c[1], "/"), Data: data})
		return err
	})
	if err != nil {
		return nil, err
	}
	return layers, nil
}

func (st *scenario) createApp(name string, gateway string) (*appState, error) {
	if _, dup := st.apps[name]; dup {
		return nil, arrange(fmt.Errorf("app %q already exists in this scenario", name))
	}
	a, err := st.world.Cloud.CreateApp(cloud.AppSpec{Name: name, Gateway: gateway})
	if err != nil {
		return nil, arrange(fmt.Errorf("creating app %s: %w", name, err))
	}
	app := &appState{name: a.Name, id: a.ID}
	st.apps[name] = app
	st.logf("app %s is %d", name, a.ID)
	return app, nil
}

func (st *scenario) push(ctx context.Context, app *appState, release string, layers []registry.Layer) error {
	if _, dup := st.releases[release]; dup {
		return arrange(fmt.Errorf("release %q already exists in this scenario", release))
	}
	ref, _, err := st.world.Images.Build(ctx, fmt.Sprintf("apps/%d", app.id), layers...)
	if err != nil {
		return arrange(fmt.Errorf("building the image of release %s: %w", release, err))
	}
	pushed := time.Now()
	r, err := st.world.Cloud.PushRelease(ctx, app.id, cloud.ReleaseSpec{Image: ref})
	if err != nil {
		return arrange(fmt.Errorf("pushing release %s: %w", release, err))
	}
	st.releases[release] = &releaseState{name: release, app: app, commit: r.Commit}
	st.noteTargetChange(pushed)
	st.logf("release %s of %s is commit %s, image %s", release, app.name, r.Commit, ref)
	return nil
}

func appWithFiles(ctx context.Context, name, release string, t *godog.Table) error {
	return appFromTable(ctx, name, release, t, func(t *godog.Table) ([]registry.Layer, error) {
		files, err := filesTable(t)
		return []registry.Layer{{Files: files}}, err
	})
}

func appWithLayers(ctx context.Context, name, release string, t *godog.Table) error {
	return appFromTable(ctx, name, release, t, layersTable)
}

// appFromTable creates app name on the scenario's gateway with release, an
// image of the layers that layers reads from the step's table.
func appFromTable(ctx context.Context, name, release string, t *godog.Table, layers func(*godog.Table) ([]registry.Layer, error)) error {
	st := scenarioOf(ctx)
	ls, err := layers(t)
	if err != nil {
		return err
	}
	a, err := st.createApp(name, st.gateway.UUID)
	if err != nil {
		return err
	}
	return st.push(ctx, a, release, ls)
}

func appWithoutRelease(ctx context.Context, name string) error {
	st := scenarioOf(ctx)
	_, err := st.createApp(name, st.gateway.UUID)
	return err
}

func appOfOtherGateway(ctx context.Context, name string) error {
	st := scenarioOf(ctx)
	if st.other == nil {
		gw, err := st.world.Cloud.CreateGateway(cloud.GatewaySpec{})
		if err != nil {
			return arrange(fmt.Errorf("creating another gateway: %w", err))
		}
		st.other = &gw
	}
	_, err := st.createApp(name, st.other.UUID)
	return err
}

func pushFiles(ctx context.Context, release, appName string, t *godog.Table) error {
	st, a, err := appOf(ctx, appName)
	if err != nil {
		return err
	}
	files, err := filesTable(t)
	if err != nil {
		return err
	}
	return st.push(ctx, a, release, []registry.Layer{{Files: files}})
}
