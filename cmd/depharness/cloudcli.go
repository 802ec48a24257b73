package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
)

func init() {
	commands["cloud"] = command{
		summary: "drive a running fake cloud through its control API (push, set-env, devices, logs, faults…)",
		run:     runCloud,
	}
}

// cloudSub is one subcommand of "depharness cloud".
type cloudSub struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, name string, args []string) error
}

// cloudSubs is filled in init (it refers to runCloud's helpers).
var cloudSubs map[string]cloudSub

func init() {
	cloudSubs = map[string]cloudSub{
		"create-gateway": {"create a gateway; prints its identity (uuid, deviceId, apiKey, appId)", cloudCreateGateway},
		"gateways":       {"list the gateways", cloudGateways},
		"create-app":     {"create a dependent app under a gateway app (--parent-app N or --gateway UUID)", cloudCreateApp},
		"apps":           {"list the dependent apps", cloudApps},
		"push":           {"push a release of an app from a directory of asset files (--app N --dir DIR)", cloudPush},
		"set-env":        {"set (K=V…) or --unset environment variables of --app N or --device UUID", cloudSetVars(cloud.KindEnv)},
		"set-config":     {"set (K=V…) or --unset configuration variables of --app N or --device UUID", cloudSetVars(cloud.KindConfig)},
		"create-device":  {"create a dependent device as if provisioned elsewhere (--app N)", cloudCreateDevice},
		"delete":         {"delete a device (--device UUID) or an app with its devices (--app N)", cloudDelete},
		"move":           {"move a device to another app (--device UUID --app N [--gateway UUID])", cloudMove},
		"restart":        {"request a restart of a device (--device UUID)", cloudRestart},
		"devices":        {"list the cloud's view of the devices ([--gateway UUID] [--app N])", cloudDevices},
		"logs":           {"print the log lines the cloud received for a device (--device UUID)", cloudLogs},
		"requests":       {"print the journal of protocol requests ([--after SEQ])", cloudRequests},
		"state":          {"print the target state document of a gateway (--gateway UUID)", cloudState},
		"fault":          {"set or clear fault knobs: show, reset, delay, undelay, fail-next, unfail, outage, end-outage, hang, unhang", cloudFault},
	}
}

func runCloud(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printCloudUsage(env.stderr)
		if len(args) == 0 {
			return usagef("a subcommand is required")
		}
		return flag.ErrHelp
	}
	sub, ok := cloudSubs[args[0]]
	if !ok {
		printCloudUsage(env.stderr)
		return usagef("unknown subcommand %q", args[0])
	}
	return sub.run(ctx, env, args[0], args[1:])
}

func printCloudUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: depharness cloud <subcommand> [flags] [K=V…]\n\nsubcommands:")
	names := make([]string, 0, len(cloudSubs))
	for n := range cloudSubs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-15s %s\n", n, cloudSubs[n].summary)
	}
	fmt.Fprintln(w, "\nEvery subcommand takes --cloud [DEPHARNESS_CLOUD_URL] and --admin-token [FAKE_CLOUD_ADMIN_TOKEN].")
}

// cloudFlags are the flags of every cloud subcommand.
type cloudFlags struct {
	*flags
	url, token *string
	timeout    *time.Duration
}

func newCloudFlags(env *cliEnv, name string) *cloudFlags {
	f := newFlags(env, "cloud "+name, cloudSubs[name].summary)
	return &cloudFlags{
		flags:   f,
		url:     f.String("cloud", "DEPHARNESS_CLOUD_URL", "http://127.0.0.1:48480", "base URL of the fake cloud"),
		token:   f.String("admin-token", "FAKE_CLOUD_ADMIN_TOKEN", "", "admin token of the fake cloud's control API"),
		timeout: f.Duration("timeout", "", 60*time.Second, "overall time limit of the call"),
	}
}

// parse parses flags; positional arguments are returned only when
// positional is true (flags must come before them), else they are an error.
func (f *cloudFlags) parse(args []string, positional bool) ([]string, error) {
	var rest []string
	if positional {
		if err := f.FlagSet.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest = f.Args()
		args = args[:len(args)-len(rest)]
	}
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	if *f.token == "" {
		return nil, usagef("--admin-token (or FAKE_CLOUD_ADMIN_TOKEN) is required")
	}
	return rest, nil
}

func (f *cloudFlags) client() *cloud.ControlClient {
	return &cloud.ControlClient{BaseURL: *f.url, Token: *f.token}
}

func (f *cloudFlags) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, *f.timeout)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cloudCreateGateway(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	var spec cloud.GatewaySpec
	f.StringVar(&spec.UUID, "uuid", "", "gateway uuid (32 or 62 hex); empty generates one")
	f.Int64Var(&spec.DeviceID, "device-id", 0, "gateway device id; 0 takes the next free one")
	f.StringVar(&spec.APIKey, "api-key", "", "gateway api key; empty generates one")
	f.StringVar(&spec.Name, "name", "", "gateway name; empty generates one")
	f.Int64Var(&spec.AppID, "app-id", 0, "existing gateway app to join; 0 creates one")
	f.StringVar(&spec.AppName, "app-name", "", "name of the new gateway app")
	asEnv := f.FlagSet.Bool("env", false, "print API_ENDPOINT, DEVICE_UUID, DEVICE_ID, DEVICE_API_KEY lines instead of JSON")
	existOK := f.FlagSet.Bool("exist-ok", false, "with --uuid: succeed if that gateway exists with the given device id, api key and app (for seeding a cloud that keeps its state)")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *existOK && spec.UUID == "" {
		return usagef("--exist-ok needs --uuid")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	gw, found, err := existingGateway(ctx, f.client(), spec, *existOK)
	if err != nil {
		return err
	}
	if !found {
		if gw, err = f.client().CreateGateway(ctx, spec); err != nil {
			return err
		}
	}
	if *asEnv {
		_, err := fmt.Fprintf(env.stdout, "API_ENDPOINT=%s\nDEVICE_UUID=%s\nDEVICE_ID=%d\nDEVICE_API_KEY=%s\n", strings.TrimRight(*f.url, "/"), gw.UUID, gw.DeviceID, gw.APIKey)
		return err
	}
	return printJSON(env.stdout, gw)
}

// existingGateway finds the gateway spec names when existOK: an existing
// one with another identity is an error, not a success.
func existingGateway(ctx context.Context, c *cloud.ControlClient, spec cloud.GatewaySpec, existOK bool) (cloud.Gateway, bool, error) {
	if !existOK {
		return cloud.Gateway{}, false, nil
	}
	gws, err := c.Gateways(ctx)
	if err != nil {
		return cloud.Gateway{}, false, err
	}
	for _, gw := range gws {
		if gw.UUID != spec.UUID {
			continue
		}
		if (spec.DeviceID != 0 && gw.DeviceID != spec.DeviceID) || (spec.APIKey != "" && gw.APIKey != spec.APIKey) ||
			(spec.AppID != 0 && gw.AppID != spec.AppID) {
			return cloud.Gateway{}, false, fmt.Errorf("gateway %s exists with another identity (device id %d, app %d)", gw.UUID, gw.DeviceID, gw.AppID)
		}
		return gw, true, nil
	}
	return cloud.Gateway{}, false, nil
}

func cloudGateways(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	gws, err := f.client().Gateways(ctx)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, gws)
}

// parseVars turns K=V arguments into a map.
func parseVars(args []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" || strings.HasPrefix(k, "-") {
			return nil, usagef("argument %q: want NAME=VALUE (flags go before variables)", a)
		}
		if _, dup := vars[k]; dup {
			return nil, usagef("variable %s given twice", k)
		}
		vars[k] = v
	}
	return vars, nil
}

func cloudCreateApp(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	var spec cloud.AppSpec
	f.StringVar(&spec.Name, "name", "", "app name; empty generates one")
	f.Int64Var(&spec.ParentApp, "parent-app", 0, "gateway app id the app is a dependent app of")
	f.StringVar(&spec.Gateway, "gateway", "", "gateway uuid whose app is the parent (instead of --parent-app)")
	existOK := f.FlagSet.Bool("exist-ok", false, "with --name and --parent-app: print the app of that name under that parent if there is one, instead of creating another")
	rest, err := f.parse(args, true)
	if err != nil {
		return err
	}
	if spec.Config, err = parseVars(rest); err != nil {
		return err
	}
	if *existOK && (spec.Name == "" || spec.ParentApp == 0) {
		return usagef("--exist-ok needs --name and --parent-app")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	if *existOK {
		apps, err := f.client().Apps(ctx)
		if err != nil {
			return err
		}
		for _, a := range apps {
			if a.Name == spec.Name && a.ParentApp == spec.ParentApp {
				return printJSON(env.stdout, a)
			}
		}
	}
	a, err := f.client().CreateApp(ctx, spec)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, a)
}

func cloudApps(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	apps, err := f.client().Apps(ctx)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, apps)
}

// readAssetDir reads the regular files under dir into image paths under
// prefix (hidden files included; symlinks and special files are an error).
func readAssetDir(dir, prefix string) (map[string][]byte, error) {
	rel, err := registry.FilesFromDir(dir)
	if err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(rel))
	for p, data := range rel {
		files[path.Join(prefix, p)] = data
	}
	return files, nil
}

func cloudPush(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	app := f.Int64("app", "", 0, "dependent app id")
	dir := f.String("dir", "", "", "directory whose files become the image's /assets (or its root with --prefix '')")
	prefix := f.FlagSet.String("prefix", "assets", "image folder the directory is placed in; '' for the image root")
	image := f.String("image", "", "", "use this ready image reference (host:port/repo@sha256:…) instead of --dir")
	commit := f.String("commit", "", "", "release commit (40 hex); empty generates one")
	ifNone := f.FlagSet.Bool("if-no-release", false, "push only if the app has no release yet; otherwise print its current one")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *app <= 0 {
		return usagef("--app is required")
	}
	if (*dir == "") == (*image == "") {
		return usagef("give --dir or --image")
	}
	spec := cloud.ReleaseSpec{Image: *image, Commit: *commit}
	if *dir != "" {
		files, err := readAssetDir(*dir, *prefix)
		if err != nil {
			return fmt.Errorf("reading --dir: %w", err)
		}
		if len(files) == 0 {
			return fmt.Errorf("--dir %s holds no files", *dir)
		}
		spec.Layers = []cloud.Layer{{Files: files}}
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	if *ifNone {
		apps, err := f.client().Apps(ctx)
		if err != nil {
			return err
		}
		for _, a := range apps {
			if a.ID == *app && a.Release != nil {
				return printJSON(env.stdout, a.Release)
			}
		}
	}
	rel, err := f.client().PushRelease(ctx, *app, spec)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, rel)
}

func cloudSetVars(kind cloud.VarKind) func(ctx context.Context, env *cliEnv, name string, args []string) error {
	return func(ctx context.Context, env *cliEnv, name string, args []string) error {
		f := newCloudFlags(env, name)
		app := f.Int64("app", "", 0, "dependent app id")
		dev := f.String("device", "", "", "device uuid")
		unset := f.String("unset", "", "", "comma-separated variable names to remove")
		rest, err := f.parse(args, true)
		if err != nil {
			return err
		}
		set, err := parseVars(rest)
		if err != nil {
			return err
		}
		if (*app > 0) == (*dev != "") {
			return usagef("give exactly one of --app and --device")
		}
		u := cloud.VarsUpdate{App: *app, Device: *dev, Kind: kind, Set: set}
		if *unset != "" {
			u.Unset = strings.Split(*unset, ",")
		}
		if len(u.Set) == 0 && len(u.Unset) == 0 {
			return usagef("nothing to do: give NAME=VALUE arguments or --unset")
		}
		ctx, cancel := f.ctx(ctx)
		defer cancel()
		return f.client().UpdateVars(ctx, u)
	}
}

func cloudCreateDevice(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	var spec cloud.DeviceSpec
	f.Int64Var(&spec.AppID, "app", 0, "dependent app id")
	f.StringVar(&spec.UUID, "uuid", "", "device uuid (32 hex); empty generates one")
	f.StringVar(&spec.Gateway, "gateway", "", "managing gateway uuid; empty: the app's only gateway")
	f.StringVar(&spec.DeviceType, "device-type", "", "device type; empty is "+cloud.DefaultDeviceType)
	f.StringVar(&spec.Name, "name", "", "device name; empty generates one")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if spec.AppID <= 0 {
		return usagef("--app is required")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	d, err := f.client().CreateDevice(ctx, spec)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, d)
}

func cloudDelete(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	app := f.Int64("app", "", 0, "dependent app id to delete with its devices")
	dev := f.String("device", "", "", "device uuid to delete")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if (*app > 0) == (*dev != "") {
		return usagef("give exactly one of --app and --device")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	if *dev != "" {
		return f.client().DeleteDevice(ctx, *dev)
	}
	return f.client().DeleteApp(ctx, *app)
}

func cloudMove(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	dev := f.String("device", "", "", "device uuid")
	app := f.Int64("app", "", 0, "dependent app id to move it to")
	gw := f.String("gateway", "", "", "managing gateway uuid; empty keeps the current one or takes the app's only gateway")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *dev == "" || *app <= 0 {
		return usagef("--device and --app are required")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	return f.client().MoveDevice(ctx, *dev, *app, *gw)
}

func cloudRestart(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	dev := f.String("device", "", "", "device uuid")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *dev == "" {
		return usagef("--device is required")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	n, err := f.client().RestartDevice(ctx, *dev)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.stdout, "restart=%d\n", n)
	return err
}

func cloudDevices(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	var filter cloud.DeviceFilter
	f.StringVar(&filter.Gateway, "gateway", "", "only devices managed by this gateway uuid")
	f.Int64Var(&filter.AppID, "app", 0, "only devices of this dependent app")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	devs, err := f.client().Devices(ctx, filter)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, devs)
}

func cloudLogs(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	dev := f.String("device", "", "", "device uuid")
	asJSON := f.FlagSet.Bool("json", false, "print the log lines as JSON")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *dev == "" {
		return usagef("--device is required")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	lines, err := f.client().Logs(ctx, *dev)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, lines)
	}
	for _, l := range lines {
		sys := ""
		if l.IsSystem {
			sys = " [system]"
		}
		ts := time.UnixMilli(l.Timestamp).UTC().Format(time.RFC3339Nano)
		if _, err := fmt.Fprintf(env.stdout, "%s%s %s\n", ts, sys, l.Message); err != nil {
			return err
		}
	}
	return nil
}

func cloudRequests(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	after := f.Int64("after", "", 0, "only requests with a sequence number above this")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *after < 0 {
		return usagef("--after must not be negative")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	reqs, err := f.client().Requests(ctx, uint64(*after))
	if err != nil {
		return err
	}
	for _, r := range reqs {
		fault := ""
		if r.Fault != "" {
			fault = " fault=" + r.Fault
		}
		if _, err := fmt.Fprintf(env.stdout, "%d %s %s %s %d %s gateway=%s%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.Method, r.Path, r.Status, r.Duration, r.Gateway, fault); err != nil {
			return err
		}
	}
	return nil
}

func cloudState(ctx context.Context, env *cliEnv, name string, args []string) error {
	f := newCloudFlags(env, name)
	gw := f.String("gateway", "", "", "gateway uuid")
	if _, err := f.parse(args, false); err != nil {
		return err
	}
	if *gw == "" {
		return usagef("--gateway is required")
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	st, err := f.client().State(ctx, *gw)
	if err != nil {
		return err
	}
	return printJSON(env.stdout, st)
}

// cloudFault runs "cloud fault <op> [flags]".
func cloudFault(ctx context.Context, env *cliEnv, name string, args []string) error {
	ops := []string{"show", "reset", "delay", "undelay", "fail-next", "unfail", "outage", "end-outage", "hang", "unhang"}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("usage: depharness cloud fault <%s> [flags]", strings.Join(ops, "|"))
	}
	op := args[0]
	f := newCloudFlags(env, name)
	route := f.String("route", "", "", "route: "+strings.Join(cloud.Routes, ", "))
	delay := f.Duration("delay", "", 0, "delay (fault delay)")
	jitter := f.Duration("jitter", "", 0, "random extra delay up to this (fault delay)")
	n := f.Int("n", "", 1, "number of requests to fail (fault fail-next)")
	status := f.Int("status", "", 503, "status of the failed requests (fault fail-next)")
	mode := f.String("mode", "", string(cloud.Outage503), "outage mode: 503 or close (fault outage)")
	if _, err := f.parse(args[1:], false); err != nil {
		return err
	}
	needRoute := map[string]bool{"delay": true, "undelay": true, "fail-next": true, "unfail": true, "hang": true, "unhang": true}
	if needRoute[op] && *route == "" {
		return usagef("--route is required for fault %s", op)
	}
	ctx, cancel := f.ctx(ctx)
	defer cancel()
	c := f.client()
	switch op {
	case "show":
		fs, err := c.Faults(ctx)
		if err != nil {
			return err
		}
		return printJSON(env.stdout, fs)
	case "reset":
		return c.ResetFaults(ctx)
	case "delay":
		return c.Delay(ctx, *route, *delay, *jitter)
	case "undelay":
		return c.Undelay(ctx, *route)
	case "fail-next":
		return c.FailNext(ctx, *route, *n, *status)
	case "unfail":
		return c.Unfail(ctx, *route)
	case "outage":
		return c.Outage(ctx, cloud.OutageMode(*mode))
	case "end-outage":
		return c.EndOutage(ctx)
	case "hang":
		return c.Hang(ctx, *route)
	case "unhang":
		return c.Unhang(ctx, *route)
	default:
		return usagef("unknown fault operation %q (want one of %s)", op, strings.Join(ops, ", "))
	}
}
