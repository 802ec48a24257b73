package features

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cucumber/godog"
	"github.com/gavv/httpexpect/v2"
)

// Steps that ask for a release's assets and check the tar answers: contents, ETag, ranges.

// readTar returns the regular files of a tar by member name, and checks
// the names against APP-ASSET-1.
func readTar(b []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the tar: %w", err)
		}
		name := h.Name
		if strings.HasPrefix(name, "/") || strings.HasPrefix(strings.TrimPrefix(name, "./"), "assets/") {
			return nil, fmt.Errorf("tar member %q: names must be relative to /assets", name)
		}
		name = strings.TrimPrefix(name, "./")
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading tar member %q: %w", name, err)
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("tar member %q appears twice", name)
		}
		files[name] = data
	}
}

func (st *scenario) compareTar(what string, b []byte, t *godog.Table) error {
	want, err := filesTable(t)
	if err != nil {
		return err
	}
	got, err := readTar(b)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return diffFiles(what, got, want)
}

func diffFiles(what string, got, want map[string][]byte) error {
	var probs []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			probs = append(probs, "missing "+name)
		case !bytes.Equal(g, w):
			probs = append(probs, fmt.Sprintf("%s: got %d bytes %s, want %d bytes %s", name, len(g), preview(g), len(w), preview(w)))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			probs = append(probs, "unexpected "+name)
		}
	}
	if len(probs) > 0 {
		sort.Strings(probs)
		return fmt.Errorf("%s: %s", what, strings.Join(probs, "; "))
	}
	return nil
}

func preview(b []byte) string {
	if len(b) > 24 {
		return fmt.Sprintf("%q…", b[:24])
	}
	return fmt.Sprintf("%q", b)
}

func assetsAre(ctx context.Context, appName, release string, t *godog.Table) error {
	st, err := getAssets(ctx, appName, release)
	if err != nil {
		return err
	}
	if err := answerContentType(ctx, "application/x-tar"); err != nil {
		return err
	}
	return st.compareTar("GET "+st.lastPath, st.lastBody, t)
}

// getAssets GETs the assets of release, of app appName, and expects a 200.
func getAssets(ctx context.Context, appName, release string) (*scenario, error) {
	st, r, err := releaseOf(ctx, release, appName)
	if err != nil {
		return st, err
	}
	if err := st.call("GET", fmt.Sprintf("/v1/dependent-apps/%d/assets/%s", r.app.id, r.commit), nil, st.authed); err != nil {
		return st, err
	}
	st.last.Status(http.StatusOK)
	return st, st.rep.err()
}

func answerIsTar(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	return st.compareTar(st.lastMethod+" "+st.lastPath, st.lastBody, t)
}

func answerHasETag(ctx context.Context) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	st.etag = st.last.Raw().Header.Get("ETag")
	if st.etag == "" {
		return fmt.Errorf("%s %s: no ETag header", st.lastMethod, st.lastPath)
	}
	st.fullTar = st.lastBody
	return nil
}

func askIfNoneMatch(ctx context.Context) error {
	st := scenarioOf(ctx)
	if st.etag == "" {
		return errors.New("no ETag was seen in this scenario")
	}
	return st.call("GET", st.lastPath, nil, func(r *httpexpect.Request) *httpexpect.Request {
		return st.authed(r).WithHeader("If-None-Match", st.etag)
	})
}

func askRange(ctx context.Context, from, to int) error {
	st := scenarioOf(ctx)
	if st.fullTar == nil {
		return errors.New("no full answer was seen in this scenario")
	}
	return st.call("GET", st.lastPath, nil, func(r *httpexpect.Request) *httpexpect.Request {
		return st.authed(r).WithHeader("Range", fmt.Sprintf("bytes=%d-%d", from, to))
	})
}

var rangeRe = regexp.MustCompile(`^bytes=(\d+)-(\d+)$`)

func answerIsRange(ctx context.Context) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	st.last.Status(http.StatusPartialContent)
	if err := st.rep.err(); err != nil {
		return err
	}
	m := rangeRe.FindStringSubmatch(st.last.Raw().Request.Header.Get("Range"))
	if m == nil {
		return errors.New("the last request asked for no range")
	}
	from, _ := strconv.Atoi(m[1])
	to, _ := strconv.Atoi(m[2])
	if to >= len(st.fullTar) {
		return fmt.Errorf("the full tar has only %d bytes", len(st.fullTar))
	}
	want := st.fullTar[from : to+1]
	if !bytes.Equal(st.lastBody, want) {
		return fmt.Errorf("range %d-%d: got %d bytes that differ from the full tar's %d bytes there", from, to, len(st.lastBody), len(want))
	}
	cr := st.last.Raw().Header.Get("Content-Range")
	if wantCR := fmt.Sprintf("bytes %d-%d/%d", from, to, len(st.fullTar)); cr != wantCR {
		return fmt.Errorf("got Content-Range %q, want %q", cr, wantCR)
	}
	return nil
}

func askAssetsAtOnce(ctx context.Context, appName, release string, n int) error {
	st := scenarioOf(ctx)
	r, err := st.release(release)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/v1/dependent-apps/%d/assets/%s", r.app.id, r.commit)
	e := st.api()
	st.parallel = make([]*httpexpect.Response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st.parallel[i] = st.authed(e.GET(path)).Expect()
		}()
	}
	close(start)
	wg.Wait()
	st.lastPath = path
	return nil
}

func everyAnswerIsTar(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	if len(st.parallel) == 0 {
		return errors.New("no requests at once were made in this scenario")
	}
	var first []byte
	for i, resp := range st.parallel {
		resp.Status(http.StatusOK)
		body := []byte(resp.Body().Raw())
		if err := st.rep.err(); err != nil {
			return err
		}
		if i == 0 {
			first = body
			if err := st.compareTar(fmt.Sprintf("answer %d of GET %s", i+1, st.lastPath), body, t); err != nil {
				return err
			}
		} else if !bytes.Equal(body, first) {
			return fmt.Errorf("answer %d of GET %s differs from the first (%d bytes, want %d)", i+1, st.lastPath, len(body), len(first))
		}
	}
	return nil
}
