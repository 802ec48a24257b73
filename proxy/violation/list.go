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
	)
}
