package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/internal/settings"
)

// newHealthcheckCmd is the container healthcheck: the image has no shell
// and no curl, so compose files and orchestrators run
// `depharness healthcheck --url http://127.0.0.1:48484/ping`.
func newHealthcheckCmd(env *cliEnv) *cobra.Command {
	var target string
	var timeout time.Duration
	return newCommand("healthcheck", "GET a URL and exit 0 on a 2xx answer, 1 otherwise (container healthchecks)",
		"GET a URL; exit 0 when it answers 2xx, 1 otherwise.",
		[]settings.Setting{
			{Flag: "url", Legacy: []string{"HEALTHCHECK_URL"}, Value: settings.Text(&target, ""), Required: true,
				Help: "the URL to GET, e.g. http://127.0.0.1:48484/ping"},
			{Flag: "timeout", Legacy: []string{"HEALTHCHECK_TIMEOUT"}, Value: settings.Duration(&timeout, 3*time.Second),
				Help: "timeout of the whole request"},
		},
		func(cmd *cobra.Command) error { return runHealthcheck(cmd.Context(), target, timeout) })
}

func runHealthcheck(ctx context.Context, target string, timeout time.Duration) error {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url %q is not an http(s) URL", target)
	}
	if timeout <= 0 {
		return usagef("--timeout must be positive, got %s", timeout)
	}
	return checkHealth(ctx, http.DefaultTransport, u.String(), timeout)
}

// checkHealth GETs target and returns nil for a 2xx answer.
func checkHealth(ctx context.Context, rt http.RoundTripper, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("unhealthy: GET %s answered %s", target, resp.Status)
	}
	return nil
}
