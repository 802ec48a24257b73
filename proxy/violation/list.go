package violation

// The table of violations. Keep one entry per line, grouped by clause area;
// every name here must be honoured somewhere in the proxy (grep for it).
func init() {
	register(
	// Entries are added by the component that implements them, e.g.
	// Violation{Name: "logs-200", Clause: "DEV-LOG-1", What: "answers 200 instead of 202 to a log line"},
	)
}
