package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/proxy/store"
)

// listApps is GET /v1/dependent-apps (APP-LIST-1): one entry per app of the
// target with a downloaded release, showing that release's commit.
func (h *Handler) listApps(w http.ResponseWriter, r *http.Request) error {
	apps, err := h.opts.Store.ListCurrentApps(r.Context())
	if err != nil {
		return unavailable(err)
	}
	out := make([]api.App, 0, len(apps))
	for _, a := range apps {
		cfg := api.Vars{}
		if err := json.Unmarshal(a.Config, &cfg); err != nil {
			return unavailable(err)
		}
		if cfg == nil {
			cfg = api.Vars{}
		}
		if len(cfg) == 0 && h.v.On("apps-list-config-null") {
			cfg = nil
		}
		out = append(out, api.App{ID: a.ID, Name: a.Name, Commit: *a.CurrentCommit, Config: cfg})
	}
	return writeValue(w, http.StatusOK, out)
}

// getAssets is GET /v1/dependent-apps/{appId}/assets/{commit} (APP-ASSET-1,
// -2): the tar of the app's current, downloaded commit; 404 Not found for an
// unknown app or any other commit.
func (h *Handler) getAssets(w http.ResponseWriter, r *http.Request) error {
	appID, ok := parseAppID(r.PathValue("appId"))
	if !ok {
		return errNotFound
	}
	commit := r.PathValue("commit")
	a, err := h.opts.Store.AppByID(r.Context(), appID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return unavailable(err)
	}
	if !a.InTarget || a.CurrentCommit == nil {
		return errNotFound
	}
	if *a.CurrentCommit != commit {
		if !h.v.On("assets-any-commit") {
			return errNotFound
		}
		commit = *a.CurrentCommit
	}
	image := ""
	if a.TargetCommit != nil && *a.TargetCommit == commit && a.TargetImage != nil {
		image = *a.TargetImage
	}
	if err := h.opts.Assets.Serve(w, r, appID, commit, image); err != nil {
		return unavailable(err)
	}
	return nil
}

// parseAppID accepts an app id in its canonical form only: a positive
// decimal number without sign or leading zeros ("+2" and "02" name no app).
func parseAppID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, false
	}
	return id, true
}
