package violation

// The table of violations, one entry per line, grouped by the component
// that commits them. Every name here is checked with Set.On somewhere in the
// proxy (a test holds that), and the self-check proves the suite catches it.
func init() {
	register(
		// assets (proxy/assets)
		Violation{Name: "assets-keep-prefix", Clause: "APP-ASSET-1", What: "asset tar member names keep the assets/ prefix"},
		Violation{Name: "assets-wrong-content-type", Clause: "APP-ASSET-1", What: "serves the asset tar as application/octet-stream"},
		Violation{Name: "assets-ignore-whiteouts", Clause: "APP-ASSET-3", What: "files deleted by a later image layer stay in the asset tar"},
		Violation{Name: "assets-lower-layer-wins", Clause: "APP-ASSET-3", What: "a file overwritten in a later layer keeps its earlier content in the asset tar"},
		Violation{Name: "assets-drop-dotfiles", Clause: "APP-ASSET-4", What: "top-level hidden files are left out of the asset tar, like tar *"},
		// supervisor API (proxy/httpapi)
		Violation{Name: "auth-open", Clause: "AUTH-1", What: "requests without a key or with a wrong key are served instead of answered 401"},
		Violation{Name: "auth-unknown-path-404", Clause: "AUTH-1", What: "unknown paths answer 404 without checking the key instead of 401"},
		Violation{Name: "ping-needs-key", Clause: "AUTH-3", What: "GET /ping without a key answers 401 instead of 200 OK"},
		Violation{Name: "error-500", Clause: "ERR-1", What: "an unexpected failure (store error, cloud failure while provisioning, panic) answers 500 instead of 503"},
		Violation{Name: "malformed-json-503", Clause: "BODY-1", What: "a malformed JSON body answers 503 instead of 400"},
		Violation{Name: "body-no-limit", Clause: "BODY-1", What: "bodies over 10 MiB are read and processed instead of answered 413"},
		Violation{Name: "apps-list-config-null", Clause: "APP-LIST-1", What: "an app with an empty config is listed with config null instead of {}"},
		Violation{Name: "assets-any-commit", Clause: "APP-ASSET-2", What: "the assets of the app's current commit are served for any requested commit instead of 404"},
		Violation{Name: "list-hides-marked", Clause: "DEV-LIST-1", What: "devices awaiting a delete acknowledgement are left out of GET /v1/devices"},
		Violation{Name: "provision-default-generic", Clause: "DEV-PROV-1", What: "device_type defaults to generic instead of generic-amd64"},
		Violation{Name: "provision-appid-zero-ok", Clause: "DEV-PROV-2", What: "appId 0 or negative is not rejected but sent to the cloud"},
		Violation{Name: "provision-cloud-error-503", Clause: "DEV-PROV-3", What: "the cloud refusing to provision (4xx) answers 503 instead of 400"},
		Violation{Name: "provision-no-device-name", Clause: "DEV-PROV-4", What: "the 201 body of POST /v1/devices has no device_name"},
		Violation{Name: "get-marked-200", Clause: "DEV-GET-1", What: "GET of a device awaiting a delete acknowledgement answers 200 instead of 410"},
		Violation{Name: "put-isonline-number", Clause: "DEV-PUT-1", What: "is_online is rendered as 0/1 instead of true/false in device objects"},
		Violation{Name: "put-no-attr-200", Clause: "DEV-PUT-2", What: "a PUT with no usable field answers 200 instead of 400"},
		Violation{Name: "put-marked-200", Clause: "DEV-PUT-3", What: "PUT on a device awaiting a delete acknowledgement is accepted instead of 410"},
		Violation{Name: "put-commit-not-sent", Clause: "DEV-PUT-4", What: "a reported commit is kept locally but not sent to the cloud as is_on__commit"},
		Violation{Name: "put-array-env-ok", Clause: "DEV-PUT-5", What: "an array is accepted as environment or config (the historical bug)"},
		Violation{Name: "put-lookup-first", Clause: "DEV-PUT-5", What: "PUT looks the device up before validating the body: a bad body on an unknown uuid answers 404"},
		Violation{Name: "logs-200", Clause: "DEV-LOG-1", What: "answers 200 instead of 202 to a log line"},
		Violation{Name: "logs-marked-202", Clause: "DEV-LOG-1", What: "log lines of a device awaiting a delete acknowledgement are accepted instead of 410"},
		Violation{Name: "logs-no-default-timestamp", Clause: "DEV-LOG-2", What: "a log line without timestamp reaches the cloud with timestamp 0 instead of the receive time"},
		// outbox (proxy/outbox)
		Violation{Name: "put-lost-on-outage", Clause: "DEV-PUT-6", What: "a device update the cloud could not take (unreachable, 5xx) is dropped instead of retried"},
		Violation{Name: "logs-lost-on-outage", Clause: "DEV-LOG-2", What: "log lines the cloud could not take (unreachable, 5xx) are dropped instead of retried"},
		Violation{Name: "outbox-reorder", Clause: "DEV-PUT-6", What: "queued device updates are delivered newest first after an outage"},
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
		Violation{Name: "hook-202-cadence-5x", Clause: "HOOK-202", What: "after a 202 the update hook is repeated every 5 retry intervals instead of within 3"},
		Violation{Name: "hook-202-never-stops", Clause: "HOOK-202", What: "the 202 loop never stops: after the gateway reports the target, the last hook is still re-sent every 5 retry intervals"},
		Violation{Name: "hook-202-stale-repeat", Clause: "HOOK-202", What: "repeats in the 202 loop carry environment and config {} instead of the whole target"},
		Violation{Name: "hook-timeout-tenth", Clause: "HOOK-ERR", What: "the hook timeout is a tenth of HOOK_TIMEOUT: an answer within half of it counts as a timeout"},
		Violation{Name: "hook-error-retry-late", Clause: "HOOK-ERR", What: "a hook that was not delivered is retried only after 20 retry intervals"},
		Violation{Name: "hook-pace-per-kind", Clause: "HOOK-PACE", What: "hooks are paced per kind: a restart, delete or update hook follows a hook of another kind to the same device at once"},
		Violation{Name: "hook-update-late", Clause: "HOOK-UPD-1", What: "the first update hook for a new target waits 10 retry intervals"},
		Violation{Name: "hook-config-ignored", Clause: "HOOK-UPD-1", What: "a target that differs from the acknowledged one only in config is taken as acknowledged without a hook"},
		Violation{Name: "hook-acks-in-memory", Clause: "HOOK-REF-1", What: "update acknowledgements are kept in memory only: after a restart an acknowledged target is sent again"},
		Violation{Name: "hook-resume-late", Clause: "HOOK-REF-1", What: "after a (re)start, owed hooks wait 10 retry intervals"},
		Violation{Name: "hook-no-backoff", Clause: "HOOK-REF-3", What: "a failed hook is retried every retry interval, without exponential backoff"},
		Violation{Name: "hook-one-device-at-a-time", Clause: "HOOK-REF-3", What: "hooks go to one device at a time (concurrency 1), like the historical Supervisor"},
		// cloud client (proxy/cloudclient)
		Violation{Name: "cloud-prov-unmanaged", Clause: "CLOUD-PROV", What: "provisioning omits is_managed_by__device, so the cloud refuses it"},
		Violation{Name: "cloud-patch-commit-field", Clause: "CLOUD-PATCH", What: "the reported commit is sent as commit instead of is_on__commit"},
		Violation{Name: "cloud-logs-json-array", Clause: "CLOUD-LOGS", What: "log lines are sent as one JSON array instead of newline-delimited JSON"},
		// sync (proxy/sync)
		Violation{Name: "state-no-etag", Clause: "CLOUD-STATE", What: "the target state is polled without If-None-Match"},
		Violation{Name: "state-poll-slow", Clause: "CLOUD-STATE", What: "the target state is polled every 10 poll intervals"},
		Violation{Name: "cloud-get-skipped", Clause: "CLOUD-GET", What: "target devices provisioned elsewhere are not looked up, so they never appear"},
		Violation{Name: "hook-update-before-download", Clause: "HOOK-UPD-2", What: "an app's new commit becomes current (and its update hook is sent) before its image is downloaded"},
		Violation{Name: "delete-not-marked", Clause: "HOOK-DEL-1", What: "devices removed from the target are not marked for deletion (no 410, no DELETE hook)"},
		Violation{Name: "readded-stays-deleted", Clause: "HOOK-REF-2", What: "a device re-added to the target after being marked stays marked (410 forever)"},
		Violation{Name: "app-removal-silent", Clause: "HOOK-REF-2", What: "devices of a dependent app removed from the target vanish without a delete hook"},
	)
}
