package violation

// The table of violations. Keep one entry per line, grouped by clause area;
// every name here must be honoured somewhere in the proxy (grep for it).
func init() {
	register(
		// Entries are added by the component that implements them, e.g.
		// Violation{Name: "logs-200", Clause: "DEV-LOG-1", What: "answers 200 instead of 202 to a log line"},
		// assets (proxy/assets)
		Violation{Name: "assets-keep-prefix", Clause: "APP-ASSET-1", What: "asset tar member names keep the assets/ prefix"},
		Violation{Name: "assets-wrong-content-type", Clause: "APP-ASSET-1", What: "serves the asset tar as application/octet-stream"},
		Violation{Name: "assets-ignore-whiteouts", Clause: "APP-ASSET-3", What: "files deleted by a later image layer stay in the asset tar"},
		Violation{Name: "assets-lower-layer-wins", Clause: "APP-ASSET-3", What: "a file overwritten in a later layer keeps its earlier content in the asset tar"},
		Violation{Name: "assets-drop-dotfiles", Clause: "APP-ASSET-4", What: "top-level hidden files are left out of the asset tar, like tar *"},
		// hooks (proxy/hooks)
		Violation{Name: "hook-restart-path-wrong", Clause: "HOOK-ADDR-1", What: "restart hooks go to <base>restart/<uuid> instead of <base><uuid>/restart"},
		Violation{Name: "hook-update-missing-appid", Clause: "HOOK-UPD-1", What: "the update hook body has no appId"},
		Violation{Name: "hook-update-stale-env", Clause: "HOOK-UPD-1", What: "the update hook carries the environment the gateway last reported instead of the target's"},
		Violation{Name: "hook-200-repeats", Clause: "HOOK-200", What: "a 200 answer does not acknowledge: the same update hook is sent again every retry interval"},
		Violation{Name: "hook-202-stops", Clause: "HOOK-202", What: "after the first 202 the update hook is not sent again"},
		Violation{Name: "hook-202-commit-only", Clause: "HOOK-202", What: "the 202 loop stops once the reported commit matches, even if environment or config differ"},
		Violation{Name: "hook-error-gives-up", Clause: "HOOK-ERR", What: "a hook that failed once (error status, no answer, timeout) is never retried"},
		Violation{Name: "hook-no-pacing", Clause: "HOOK-PACE", What: "hooks to one device are resent at a tenth of the retry interval"},
		Violation{Name: "hook-sends-superseded", Clause: "HOOK-PACE", What: "in the 202 loop, the previous, superseded target is sent again after the newer one"},
		Violation{Name: "delete-hook-not-sent", Clause: "HOOK-DEL-1", What: "no DELETE hook is sent for a device marked for deletion"},
		Violation{Name: "restart-hook-not-sent", Clause: "HOOK-RST-1", What: "no restart hook is sent for a restart requested in the cloud"},
		// sync (proxy/sync)
		Violation{Name: "state-no-etag", Clause: "CLOUD-STATE", What: "the target state is polled without If-None-Match"},
		Violation{Name: "cloud-get-skipped", Clause: "CLOUD-GET", What: "target devices provisioned elsewhere are not looked up, so they never appear"},
		Violation{Name: "hook-update-before-download", Clause: "HOOK-UPD-2", What: "an app's new commit becomes current (and its update hook is sent) before its image is downloaded"},
		Violation{Name: "delete-not-marked", Clause: "HOOK-DEL-1", What: "devices removed from the target are not marked for deletion (no 410, no DELETE hook)"},
		Violation{Name: "readded-stays-deleted", Clause: "HOOK-REF-2", What: "a device re-added to the target after being marked stays marked (410 forever)"},
		Violation{Name: "app-removal-silent", Clause: "HOOK-REF-2", What: "devices of a dependent app removed from the target vanish without a delete hook"},
	)
}
