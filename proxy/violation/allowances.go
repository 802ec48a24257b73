package violation

// The table of allowances, one per item of CONTRACT.md's "Latitude". Every
// name here is checked with Set.Allows somewhere in the proxy or its
// command (a test holds that), and the self-check runs the contract tier of
// the suite with each on, and with all of them at once.
func init() {
	registerAllowances(
		Allowance{Name: "extra-fields", Latitude: "additional fields",
			What: "device objects, app objects, the provisioning answer and update hook bodies carry additional fields"},
		Allowance{Name: "pretty-json", Latitude: "JSON key order and formatting",
			What: "JSON answers and hook bodies are indented, with their keys in reverse order"},
		Allowance{Name: "other-texts", Latitude: "any plain-text error message",
			What: "every error answer has another plain-text message than the contract quotes"},
		Allowance{Name: "online-from-cloud", Latitude: "initial values of a new device",
			What: "a new device starts with is_online taken from the cloud's answer (false), status \"Idle\", its own name, download_progress 0 and a logs_channel string"},
		Allowance{Name: "cadence-2x", Latitude: "timing within the bounds",
			What: "hooks to a device are paced (and 202 repeats sent) at 2 retry intervals, failed hooks back off twice as long within the HOOK-ERR bound, the target is polled every 1.5 poll intervals"},
		Allowance{Name: "extra-cloud-calls", Latitude: "extra requests to the cloud",
			What: "every poll also asks the cloud for GET /v6/application(<id>) of each dependent app and GET /config, and takes their 404s"},
		Allowance{Name: "exit-143", Latitude: "any exit status after SIGTERM",
			What: "the process exits with status 143 after SIGTERM"},
		Allowance{Name: "slow-start", Latitude: "start-up time up to the ready timeout",
			What: "GET /ping answers only 3 s after the start (the API listens late)"},
		Allowance{Name: "slow-stop", Latitude: "up to 10 s to exit after SIGTERM",
			What: "the process takes 4 s more to exit after SIGTERM"},
		Allowance{Name: "no-keepalive", Latitude: "connection reuse or not",
			What: "hooks and cloud calls open a new connection for every request"},
	)
}
