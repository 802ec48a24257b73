package main

import (
	"context"
	"flag"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/config"
)

var update = flag.Bool("update", false, "rewrite the README's table of flags and variables")

// tree is the whole command tree, with cobra's own help and completion
// commands as a run has them.
func tree() *cobra.Command {
	root := newRoot(&cliEnv{stdout: &syncBuffer{}, stderr: &syncBuffer{}, getenv: func(string) string { return "" }})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return root
}

// walk calls fn for cmd and every command under it but the hidden ones.
func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		if !c.Hidden {
			walk(c, fn)
		}
	}
}

// cmdPath is the command's path after "depharness".
func cmdPath(cmd *cobra.Command) string {
	return strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), "depharness"), " ")
}

// sharedVariables are the variables the scheme names outside
// DEPHARNESS_<COMMAND>_<FLAG>: the proxy's own (config.Settings), and the
// values several commands share.
func sharedVariables() map[string]bool {
	shared := map[string]bool{
		"BALENA_SUPERVISOR_ADDRESS": true, envCloudURL: true, envCloudAdminToken: true, envRegistry: true,
		envRegistryAdminToken: true, "DEPHARNESS_LOG_LEVEL": true, "DEPHARNESS_LOG_FORMAT": true,
	}
	for _, s := range config.Settings {
		shared[s.Env] = true
	}
	return shared
}

// flagsTable is the README's table of every command's flags: the one place
// the variables are documented.
func flagsTable(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString("| command | flag | variable (older names still read) | default | what it is |\n|---|---|---|---|---|\n")
	walk(root, func(cmd *cobra.Command) {
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
			env := settings.Env(f)
			if env == "" {
				return // --help, --version
			}
			where := cmdPath(cmd)
			if cmd.PersistentFlags().Lookup(f.Name) != nil {
				where += " …" // every subcommand's
			}
			variable := "`" + env + "`"
			if legacy := settings.Legacy(f); len(legacy) > 0 {
				variable += " (`" + strings.Join(legacy, "`, `") + "`)"
			}
			def := ""
			switch note := settings.DefaultNote(f); {
			case settings.Required(f):
				def = "required"
			case note != "":
				def = "`" + strings.TrimSuffix(strings.TrimPrefix(note, " (default "), ")") + "`"
			}
			help := strings.ReplaceAll(f.Usage, "|", `\|`)
			b.WriteString("| " + where + " | `--" + f.Name + "` | " + variable + " | " + def + " | " + help + " |\n")
		})
	})
	return b.String()
}

const (
	tableStart = "<!-- The table of flags: `go test ./cmd/depharness -run TestREADMEHasTheTableOfEveryFlag -update` writes it. -->\n"
	tableEnd   = "<!-- End of the table of flags. -->\n"
)

// readmeTable returns the README and its table of flags (between the
// markers), and where the table starts and ends.
func readmeTable(t *testing.T) (readme, table string, start, end int) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme = string(b)
	start = strings.Index(readme, tableStart)
	end = strings.Index(readme, tableEnd)
	if start < 0 || end < start {
		t.Fatalf("README.md lacks the markers of the table of flags:\n%s%s", tableStart, tableEnd)
	}
	start += len(tableStart)
	return readme, readme[start:end], start, end
}

// The README's table of flags and variables is the tree's.
func TestREADMEHasTheTableOfEveryFlag(t *testing.T) {
	readme, table, start, end := readmeTable(t)
	want := flagsTable(tree())
	if *update {
		if err := os.WriteFile("../../README.md", []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if table != want {
		got, wantLines := strings.Split(table, "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(got) && i < len(wantLines) && got[i] == wantLines[i] {
			i++
		}
		line := func(l []string) string {
			if i < len(l) {
				return l[i]
			}
			return "(the end)"
		}
		t.Errorf("README.md's table of flags is out of date (run go test ./cmd/depharness -run TestREADMEHasTheTableOfEveryFlag -update); its line %d is\n%s\nwant\n%s",
			i+1, line(got), line(wantLines))
	}
}

// Every flag of every command has help text and a variable of the scheme
// that the README's table documents; a required flag shows no default; and
// --help of every command exits 0.
func TestEveryCommandFollowsTheConvention(t *testing.T) {
	_, table, _, _ := readmeTable(t)
	shared := sharedVariables()
	commands, flags := 0, 0
	walk(tree(), func(cmd *cobra.Command) {
		commands++
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
			flags++
			name := cmdPath(cmd) + " --" + f.Name
			if f.Usage == "" {
				t.Errorf("%s has no help text", name)
			}
			env := settings.Env(f)
			if f.Name == "help" || f.Name == "version" {
				return
			}
			if env == "" {
				t.Errorf("%s has no environment variable", name)
				return
			}
			if want := settings.SchemeName(envPrefix(cmdPath(cmd)), f.Name); env != want && !shared[env] {
				t.Errorf("%s has the variable %s; want %s, or one of the shared ones", name, env, want)
			}
			for _, v := range append([]string{env}, settings.Legacy(f)...) {
				if !strings.Contains(table, "`"+v+"`") {
					t.Errorf("%s: the README's table lacks %s", name, v)
				}
			}
			if settings.Required(f) && f.DefValue != "" {
				t.Errorf("%s is required and shows the default %q", name, f.DefValue)
			}
		})
		args := append(strings.Fields(cmdPath(cmd)), "--help")
		code, stdout, stderr := run(t, nil, args...)
		if code != 0 || !strings.Contains(stdout, "Usage:") || stderr != "" {
			t.Errorf("depharness %s: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", strings.Join(args, " "), code, stdout, stderr)
		}
	})
	if commands < 30 || flags < 150 {
		t.Errorf("walked %d commands and %d flags; want the whole tree", commands, flags)
	}
}

// Usage errors are said once, on one line, with where the help is, and
// exit 2; help and the version exit 0.
func TestUsageErrorsAreSaidOnceWithWhereTheHelpIs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		code int
		want string // the whole stderr, or stdout for exit 0
	}{
		{[]string{"up", "--device", "5"}, nil, 2, "depharness up: unknown flag --device; did you mean --devices?\nRun 'depharness up --help' for usage.\n"},
		{[]string{"up", "--devices", "lots"}, nil, 2, "depharness up: invalid value \"lots\" for --devices: expected a whole number\nRun 'depharness up --help' for usage.\n"},
		{[]string{"up", "-devices", "5"}, nil, 2, "depharness up: unknown flag -devices; did you mean --devices?\nRun 'depharness up --help' for usage.\n"},
		{[]string{"load"}, map[string]string{"DEPHARNESS_LOAD_DEVICES": "x"}, 2,
			"depharness load: invalid value \"x\" for DEPHARNESS_LOAD_DEVICES (--devices): expected a whole number\nRun 'depharness load --help' for usage.\n"},
		{[]string{"load"}, map[string]string{"LOAD_DEVICES": "x"}, 2,
			"depharness load: invalid value \"x\" for LOAD_DEVICES (--devices): expected a whole number\nRun 'depharness load --help' for usage.\n"},
		{[]string{"verify"}, map[string]string{"TARGET_POLL_INTERVAL": "5"}, 2,
			"depharness verify: invalid value \"5\" for TARGET_POLL_INTERVAL (--poll-interval): expected a duration with a unit, like 500ms or 2s\nRun 'depharness verify --help' for usage.\n"},
		{[]string{"gateway", "--policy", "201"}, nil, 2, "depharness gateway: invalid value \"201\" for --policy: expected one of 200, 202\nRun 'depharness gateway --help' for usage.\n"},
		{[]string{"verfy"}, nil, 2, "depharness: unknown command \"verfy\"; did you mean verify?\nRun 'depharness --help' for usage.\n"},
		{[]string{"cloud", "fault", "delay", "--admin-token", "t"}, nil, 2,
			"depharness cloud fault delay: --route is required (or set DEPHARNESS_CLOUD_FAULT_DELAY_ROUTE)\nRun 'depharness cloud fault delay --help' for usage.\n"},
		{[]string{"healthcheck", "stray"}, nil, 2, "depharness healthcheck: unexpected argument \"stray\" (every setting is a --flag)\nRun 'depharness healthcheck --help' for usage.\n"},
		{[]string{"help", "up"}, nil, 0, "depharness up [flags]"},
		{[]string{"help", "cloud", "fault", "delay"}, nil, 0, "--route string  [DEPHARNESS_CLOUD_FAULT_DELAY_ROUTE]"},
		{[]string{"help", "upp"}, nil, 2, "depharness help: unknown command \"upp\"; did you mean up?\nRun 'depharness help --help' for usage.\n"},
		{[]string{"help", "up", "now"}, nil, 2, "depharness help: unexpected argument \"now\" (every setting is a --flag)\nRun 'depharness help --help' for usage.\n"},
		{[]string{"cloud", "fault", "--help"}, nil, 0, "depharness cloud fault <command> [flags]"},
		{[]string{"--version"}, nil, 0, "depharness "},
	} {
		code, stdout, stderr := run(t, tc.env, tc.args...)
		got := stderr
		if tc.code == 0 {
			got = stdout
		}
		if code != tc.code || (tc.code != 0 && got != tc.want) || !strings.Contains(got, tc.want) {
			t.Errorf("%v %v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, tc.env, code, stdout, stderr, tc.code, tc.want)
		}
	}
}

// A listener that cannot bind names the flag, and its variable, to change.
func TestAListenerThatCannotBindNamesItsFlag(t *testing.T) {
	addr := testkit.Listen(t).Addr().String() // busy while the test runs
	_, port, _ := net.SplitHostPort(addr)
	proxyEnv := map[string]string{
		"API_ENDPOINT": "http://127.0.0.1:1", "DEVICE_UUID": "gw", "DEVICE_ID": "1", "DEVICE_API_KEY": "k",
		"BALENA_SUPERVISOR_API_KEY": "k", "DATA_DIR": t.TempDir(), "BALENA_SUPERVISOR_PORT": port, "METRICS_ADDRESS": "off",
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"fake-cloud", "--listen", addr}, nil, "cannot listen on " + addr + ": address already in use; change --listen (DEPHARNESS_FAKE_CLOUD_LISTEN)"},
		{[]string{"fake-registry", "--listen", addr}, nil, "change --listen (DEPHARNESS_FAKE_REGISTRY_LISTEN)"},
		{[]string{"gateway", "--listen", "127.0.0.1:0", "--metrics-listen", addr}, nil, "change --metrics-listen (DEPHARNESS_GATEWAY_METRICS_LISTEN)"},
		{[]string{"proxy"}, proxyEnv, "change --port (BALENA_SUPERVISOR_PORT) or --listen-host (DEPHARNESS_LISTEN_HOST)"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb syncBuffer
		code := runMain(ctx, &cliEnv{stdout: &out, stderr: &errb, getenv: func(k string) string { return tc.env[k] }}, tc.args)
		cancel()
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// The compose files set each command's variables by their current names
// (an older name would still be read, but the files are what people copy).
func TestTheComposeFilesSetCurrentVariables(t *testing.T) {
	current := map[string]bool{}
	walk(tree(), func(cmd *cobra.Command) {
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) { current[settings.Env(f)] = true })
	})
	key := regexp.MustCompile(`(?m)^\s+([A-Z][A-Z0-9_]*):`)
	n := 0
	for _, file := range []string{"../../docker-compose.yml", "../../docker-compose.scale.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range key.FindAllStringSubmatch(string(b), -1) {
			n++
			if !current[m[1]] {
				t.Errorf("%s sets %s, which no command reads by that name", file, m[1])
			}
		}
	}
	if n < 20 {
		t.Errorf("found %d variables in the compose files, want every service's", n)
	}
}
