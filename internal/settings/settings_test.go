package settings

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/depharness/depharness/internal/testkit"
)

// demo is a table of every kind of setting.
type demo struct {
	devices int
	seed    int64
	poll    time.Duration
	fresh   bool
	dir     string
	policy  string
	url     string
}

func (d *demo) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	Bind(fs, "DEPHARNESS_DEMO",
		Setting{Flag: "devices", Legacy: []string{"DEMO_DEVICES"}, Help: "simulated devices", Value: Int(&d.devices, 20)},
		Setting{Flag: "seed", Help: "seed", Value: Int64(&d.seed, 0)},
		Setting{Flag: "poll-interval", Env: "TARGET_POLL_INTERVAL", Help: "poll interval", Value: Duration(&d.poll, time.Minute)},
		Setting{Flag: "fresh", Help: "start anew", Value: Bool(&d.fresh, false)},
		Setting{Flag: "data-dir", Help: "state", Value: Text(&d.dir, "data")},
		Setting{Flag: "policy", Help: "answer", Value: OneOf(&d.policy, "200", "200", "202")},
		Setting{Flag: "url", Help: "where", Value: Text(&d.url, ""), Required: true},
	)
	return fs
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestAFlagWinsOverItsVariableWhichWinsOverALegacyName(t *testing.T) {
	var d demo
	fs := d.flags()
	if err := fs.Parse([]string{"--seed", "7", "--fresh", "--url", "http://x"}); err != nil {
		t.Fatal(err)
	}
	err := Apply(fs, env(map[string]string{
		"DEPHARNESS_DEMO_SEED": "9", "DEPHARNESS_DEMO_DEVICES": "5", "DEMO_DEVICES": "6",
		"TARGET_POLL_INTERVAL": "2s", "DEPHARNESS_DEMO_POLICY": "202",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if d.seed != 7 || d.devices != 5 || d.poll != 2*time.Second || !d.fresh || d.dir != "data" || d.policy != "202" || d.url != "http://x" {
		t.Errorf("got %+v, want the flags' seed and url, the variables' devices, poll and policy, the default dir", d)
	}
	if !fs.Changed("devices") || fs.Changed("data-dir") {
		t.Errorf("a setting from the environment counts as given, a default does not")
	}
	var d2 demo
	fs = d2.flags()
	if err := Apply(fs, env(map[string]string{"DEMO_DEVICES": "6", "DEPHARNESS_DEMO_URL": "u"})); err != nil || d2.devices != 6 {
		t.Errorf("legacy name: devices %d, %v; want 6", d2.devices, err)
	}
}

func TestBadValuesSayWhatWasExpectedAndWhereTheyCameFrom(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--devices", "lots"}, nil, `invalid value "lots" for --devices: expected a whole number`},
		{[]string{"--devices", "99999999999999999999"}, nil, "out of range"},
		{nil, map[string]string{"TARGET_POLL_INTERVAL": "5"}, `invalid value "5" for TARGET_POLL_INTERVAL (--poll-interval): expected a duration with a unit, like 500ms or 2s`},
		{nil, map[string]string{"DEMO_DEVICES": "x"}, `invalid value "x" for DEMO_DEVICES (--devices)`},
		{nil, map[string]string{"DEPHARNESS_DEMO_FRESH": "yes please"}, "expected true or false"},
		{[]string{"--policy", "204"}, nil, `invalid value "204" for --policy: expected one of 200, 202`},
		{[]string{"--device", "5"}, nil, "unknown flag --device; did you mean --devices?"},
		{[]string{"-devices", "5"}, nil, "unknown flag -devices; did you mean --devices?"},
		{[]string{"--pol"}, nil, "unknown flag --pol; did you mean --policy or --poll-interval?"},
		{[]string{"--zzzzzz"}, nil, "unknown flag --zzzzzz"},
		{[]string{"--devices"}, nil, "--devices needs a value"},
		{nil, nil, "--url is required (or set DEPHARNESS_DEMO_URL)"},
	} {
		var d demo
		fs := d.flags()
		err := fs.Parse(tc.args)
		if err != nil {
			err = FlagError(fs, err)
		} else {
			err = Apply(fs, env(tc.env))
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestApplyReportsEveryProblemAtOnce(t *testing.T) {
	var d demo
	fs := d.flags()
	err := Apply(fs, env(map[string]string{"DEPHARNESS_DEMO_SEED": "x", "TARGET_POLL_INTERVAL": "1"}))
	for _, want := range []string{"DEPHARNESS_DEMO_SEED", "TARGET_POLL_INTERVAL", "--url is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	var ve *ValueError
	if !errors.As(err, &ve) || !errors.Is(err, ErrWholeNumber) {
		t.Errorf("error %v: want a ValueError wrapping ErrWholeNumber", err)
	}
}

func TestUsageShowsEveryFlagWithItsVariableAndTrueDefault(t *testing.T) {
	var d demo
	u := Usage(d.flags())
	for _, want := range []string{
		"  --devices int  [DEPHARNESS_DEMO_DEVICES]\n      simulated devices (default 20)\n",
		"  --poll-interval duration  [TARGET_POLL_INTERVAL]\n      poll interval (default 1m)\n",
		"  --fresh  [DEPHARNESS_DEMO_FRESH]\n      start anew\n",
		"  --policy 200|202  [DEPHARNESS_DEMO_POLICY]\n      answer (default 200)\n",
		"  --url string  [DEPHARNESS_DEMO_URL]\n      where (required)\n",
		"  --seed int  [DEPHARNESS_DEMO_SEED]\n      seed (default 0)\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %q:\n%s", want, u)
		}
	}
}

func TestFormatDurationDropsZeroTrailingUnits(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", time.Hour: "1h", 90 * time.Second: "1m30s", 100 * time.Millisecond: "100ms", 0: "0s",
		time.Hour + time.Second: "1h0m1s", 10 * time.Second: "10s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("%s does not read back: %s, %v", FormatDuration(d), back, err)
		}
	}
}

func TestUsageWrapsLongHelp(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var s string
	Bind(fs, "X", Setting{Flag: "long", Help: strings.Repeat("word ", 40), Value: Text(&s, "")})
	for _, line := range strings.Split(Usage(fs), "\n") {
		if len(line) > helpWidth {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"devices", "device-id", "policy", "profile", "listen", "metrics-listen"}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"device", []string{"devices", "device-id"}},
		{"polcy", []string{"policy"}},
		{"metrics", []string{"metrics-listen"}},
		{"xyzzy", nil},
	} {
		if got := Suggest(tc.in, names); !slices.Equal(got, tc.want) {
			t.Errorf("Suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestListenErrorNamesTheFlagsOfTheAddressInUse(t *testing.T) {
	addr := testkit.Listen(t).Addr().String() // busy while the test runs
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var a, b string
	Bind(fs, "DEPHARNESS_X",
		Setting{Flag: "listen", Help: "api", Value: Text(&a, addr)},
		Setting{Flag: "metrics-listen", Env: "METRICS_ADDRESS", Help: "metrics", Value: Text(&b, "127.0.0.1:0")})
	_, lerr := net.Listen("tcp", addr)
	if lerr == nil {
		t.Fatal("listening twice on one port succeeded")
	}
	got := ListenError(fs, lerr, Listener{"127.0.0.1:0", []string{"metrics-listen"}}, Listener{addr, []string{"listen"}})
	want := "cannot listen on " + addr + ": address already in use; change --listen (DEPHARNESS_X_LISTEN)"
	if got == nil || got.Error() != want {
		t.Errorf("got %v, want %q", got, want)
	}
	if ListenError(fs, errors.New("other"), Listener{addr, []string{"listen"}}) != nil {
		t.Error("an error that is no listen failure was explained as one")
	}
}
