package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

func init() {
	commands["healthcheck"] = command{
		summary: "GET a URL and exit 0 on a 2xx answer, 1 otherwise (container healthchecks)",
		run:     runHealthcheck,
	}
}

// runHealthcheck is the container healthcheck: the image has no shell and no
// curl, so compose files and orchestrators run
// `depharness healthcheck --url http://127.0.0.1:48484/ping`.
func runHealthcheck(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "healthcheck", "GET a URL; exit 0 when it answers 2xx, 1 otherwise.")
	target := f.String("url", "HEALTHCHECK_URL", "", "the URL to GET (required), e.g. http://127.0.0.1:48484/ping")
	timeout := f.Duration("timeout", "HEALTHCHECK_TIMEOUT", 3*time.Second, "timeout of the whole request")
	if err := f.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		return usagef("--url (HEALTHCHECK_URL) is required")
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url %q is not an http(s) URL", *target)
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive, got %s", *timeout)
	}
	return checkHealth(ctx, http.DefaultTransport, u.String(), *timeout)
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
