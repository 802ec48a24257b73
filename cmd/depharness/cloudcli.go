package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/settings"
)

// cloudOptions are the settings of every cloud command: where the fake
// cloud is, its token, and how long a call may take.
type cloudOptions struct {
	env        *cliEnv
	url, token string
	timeout    time.Duration
}

// cloudCall is what a cloud command does through the control client with
// its NAME=VALUE arguments (if it takes any). Its result is printed: nil
// prints nothing, a string is printed as it is, anything else as JSON.
type cloudCall func(ctx context.Context, c *cloud.ControlClient, args []string) (any, error)

func newCloudCmd(env *cliEnv) *cobra.Command {
	o := &cloudOptions{env: env}
	cmd := &cobra.Command{
		Use:   "cloud",
		Short: "drive a running fake cloud through its control API (push, set-env, devices, logs, faults…)",
		Args:  subcommandArgs,
		RunE:  func(*cobra.Command, []string) error { return nil }, // Args refuses first
	}
	settings.Bind(cmd.PersistentFlags(), envPrefix("cloud"),
		cloudURLSetting(&o.url, "http://127.0.0.1:48480", "base URL of the fake cloud"),
		settings.Setting{Flag: "admin-token", Env: envCloudAdminToken, Legacy: []string{"FAKE_CLOUD_ADMIN_TOKEN"}, Value: settings.Text(&o.token, ""),
			Required: true, Help: "admin token of the fake cloud's control API"},
		settings.Setting{Flag: "timeout", Value: settings.Duration(&o.timeout, 60*time.Second), Help: "overall time limit of the call"},
	)
	cmd.AddCommand(o.createGateway(), o.list("gateways", "list the gateways", func(ctx context.Context, c *cloud.ControlClient) (any, error) {
		return c.Gateways(ctx)
	}), o.createApp(), o.list("apps", "list the dependent apps", func(ctx context.Context, c *cloud.ControlClient) (any, error) {
		return c.Apps(ctx)
	}), o.push(), o.setVars("set-env", cloud.KindEnv), o.setVars("set-config", cloud.KindConfig), o.createDevice(),
		o.delete(), o.move(), o.restart(), o.devices(), o.logs(), o.requests(), o.state(), o.fault())
	return cmd
}

// command builds "cloud <name>" (name may be "fault delay"): its flags are
// table; with vars it takes NAME=VALUE arguments.
func (o *cloudOptions) command(name, short string, vars bool, table []settings.Setting, call cloudCall) *cobra.Command {
	cmd := &cobra.Command{Use: name[strings.LastIndex(name, " ")+1:], Short: short, Args: noArgs}
	if vars {
		cmd.Use += " [NAME=VALUE…]"
		cmd.Args = cobra.ArbitraryArgs
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if o.timeout <= 0 {
			return usagef("--timeout must be positive, got %s", o.timeout)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
		defer cancel()
		out, err := call(ctx, &cloud.ControlClient{BaseURL: o.url, Token: o.token}, args)
		switch out := out.(type) {
		case nil:
		case string:
			if _, werr := io.WriteString(o.env.stdout, out); err == nil {
				err = werr
			}
		default:
			if err == nil {
				err = printJSON(o.env.stdout, out)
			}
		}
		return err
	}
	settings.Bind(cmd.Flags(), envPrefix("cloud "+name), table...)
	return cmd
}

// list is a command without flags that prints what get returns.
func (o *cloudOptions) list(name, short string, get func(context.Context, *cloud.ControlClient) (any, error)) *cobra.Command {
	return o.command(name, short, false, nil, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		return get(ctx, c)
	})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// appSetting is --app, a dependent app id.
func appSetting(p *int64, help string, required bool) settings.Setting {
	return settings.Setting{Flag: "app", Value: settings.Int64(p, 0), Required: required, Help: help}
}

// deviceSetting is --device, a device uuid.
func deviceSetting(p *string, help string, required bool) settings.Setting {
	return settings.Setting{Flag: "device", Value: settings.Text(p, ""), Required: required, Help: help}
}

// gatewaySetting is --gateway, a gateway uuid.
func gatewaySetting(p *string, help string, required bool) settings.Setting {
	return settings.Setting{Flag: "gateway", Value: settings.Text(p, ""), Required: required, Help: help}
}

// boolSetting is a flag that switches something on.
func boolSetting(flag string, p *bool, help string) settings.Setting {
	return settings.Setting{Flag: flag, Value: settings.Bool(p, false), Help: help}
}

// textSetting is a text flag without default.
func textSetting(flag string, p *string, help string) settings.Setting {
	return settings.Setting{Flag: flag, Value: settings.Text(p, ""), Help: help}
}

func (o *cloudOptions) createGateway() *cobra.Command {
	var spec cloud.GatewaySpec
	var asEnv, existOK bool
	return o.command("create-gateway", "create a gateway; prints its identity (uuid, deviceId, apiKey, appId)", false, []settings.Setting{
		textSetting("uuid", &spec.UUID, "gateway uuid (32 or 62 hex); empty generates one"),
		{Flag: "device-id", Value: settings.Int64(&spec.DeviceID, 0), Help: "gateway device id; 0 takes the next free one"},
		textSetting("api-key", &spec.APIKey, "gateway api key; empty generates one"),
		textSetting("name", &spec.Name, "gateway name; empty generates one"),
		{Flag: "app-id", Value: settings.Int64(&spec.AppID, 0), Help: "existing gateway app to join; 0 creates one"},
		textSetting("app-name", &spec.AppName, "name of the new gateway app"),
		boolSetting("env", &asEnv, "print API_ENDPOINT, DEVICE_UUID, DEVICE_ID, DEVICE_API_KEY lines instead of JSON"),
		boolSetting("exist-ok", &existOK, "with --uuid: succeed if that gateway exists with the given device id, api key and app (for seeding a cloud that keeps its state)"),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		if existOK && spec.UUID == "" {
			return nil, usagef("--exist-ok needs --uuid")
		}
		gw, found, err := existingGateway(ctx, c, spec, existOK)
		if err != nil {
			return nil, err
		}
		if !found {
			if gw, err = c.CreateGateway(ctx, spec); err != nil {
				return nil, err
			}
		}
		if asEnv {
			return fmt.Sprintf("API_ENDPOINT=%s\nDEVICE_UUID=%s\nDEVICE_ID=%d\nDEVICE_API_KEY=%s\n", strings.TrimRight(o.url, "/"), gw.UUID, gw.DeviceID, gw.APIKey), nil
		}
		return gw, nil
	})
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

// parseVars turns NAME=VALUE arguments into a map.
func parseVars(args []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("argument %q: want NAME=VALUE", a)
		}
		if _, dup := vars[k]; dup {
			return nil, usagef("variable %s given twice", k)
		}
		vars[k] = v
	}
	return vars, nil
}

func (o *cloudOptions) createApp() *cobra.Command {
	var spec cloud.AppSpec
	var existOK bool
	return o.command("create-app", "create a dependent app under a gateway app (--parent-app N or --gateway UUID), with NAME=VALUE config", true, []settings.Setting{
		textSetting("name", &spec.Name, "app name; empty generates one"),
		{Flag: "parent-app", Value: settings.Int64(&spec.ParentApp, 0), Help: "gateway app id the app is a dependent app of"},
		gatewaySetting(&spec.Gateway, "gateway uuid whose app is the parent (instead of --parent-app)", false),
		boolSetting("exist-ok", &existOK, "with --name and --parent-app: print the app of that name under that parent if there is one, instead of creating another"),
	}, func(ctx context.Context, c *cloud.ControlClient, args []string) (any, error) {
		var err error
		if spec.Config, err = parseVars(args); err != nil {
			return nil, err
		}
		if existOK && (spec.Name == "" || spec.ParentApp == 0) {
			return nil, usagef("--exist-ok needs --name and --parent-app")
		}
		if existOK {
			apps, err := c.Apps(ctx)
			if err != nil {
				return nil, err
			}
			for _, a := range apps {
				if a.Name == spec.Name && a.ParentApp == spec.ParentApp {
					return a, nil
				}
			}
		}
		return c.CreateApp(ctx, spec)
	})
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

func (o *cloudOptions) push() *cobra.Command {
	var app int64
	var dir, prefix string
	var spec cloud.ReleaseSpec
	var ifNone bool
	return o.command("push", "push a release of an app from a directory of asset files (--app N --dir DIR)", false, []settings.Setting{
		appSetting(&app, "dependent app id", true),
		textSetting("dir", &dir, "directory whose files become the image's /assets (or its root with --prefix '')"),
		{Flag: "prefix", Value: settings.Text(&prefix, "assets"), Help: "image folder the directory is placed in; '' for the image root"},
		textSetting("image", &spec.Image, "use this ready image reference (host:port/repo@sha256:…) instead of --dir"),
		textSetting("commit", &spec.Commit, "release commit (40 hex); empty generates one"),
		boolSetting("if-no-release", &ifNone, "push only if the app has no release yet; otherwise print its current one"),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		if app <= 0 {
			return nil, usagef("--app must be a positive app id, got %d", app)
		}
		if (dir == "") == (spec.Image == "") {
			return nil, usagef("give --dir or --image")
		}
		if dir != "" {
			files, err := readAssetDir(dir, prefix)
			if err != nil {
				return nil, fmt.Errorf("reading --dir: %w", err)
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("--dir %s holds no files", dir)
			}
			spec.Layers = []cloud.Layer{{Files: files}}
		}
		if ifNone {
			apps, err := c.Apps(ctx)
			if err != nil {
				return nil, err
			}
			for _, a := range apps {
				if a.ID == app && a.Release != nil {
					return a.Release, nil
				}
			}
		}
		return c.PushRelease(ctx, app, spec)
	})
}

func (o *cloudOptions) setVars(name string, kind cloud.VarKind) *cobra.Command {
	var u cloud.VarsUpdate
	var unset string
	return o.command(name, fmt.Sprintf("set (NAME=VALUE…) or --unset %s variables of --app N or --device UUID", kind), true, []settings.Setting{
		appSetting(&u.App, "dependent app id", false),
		deviceSetting(&u.Device, "device uuid", false),
		textSetting("unset", &unset, "comma-separated variable names to remove"),
	}, func(ctx context.Context, c *cloud.ControlClient, args []string) (any, error) {
		var err error
		if u.Set, err = parseVars(args); err != nil {
			return nil, err
		}
		if (u.App > 0) == (u.Device != "") {
			return nil, usagef("give exactly one of --app and --device")
		}
		u.Kind = kind
		if unset != "" {
			u.Unset = strings.Split(unset, ",")
		}
		if len(u.Set) == 0 && len(u.Unset) == 0 {
			return nil, usagef("nothing to do: give NAME=VALUE arguments or --unset")
		}
		return nil, c.UpdateVars(ctx, u)
	})
}

func (o *cloudOptions) createDevice() *cobra.Command {
	var spec cloud.DeviceSpec
	return o.command("create-device", "create a dependent device as if provisioned elsewhere (--app N)", false, []settings.Setting{
		appSetting(&spec.AppID, "dependent app id", true),
		textSetting("uuid", &spec.UUID, "device uuid (32 hex); empty generates one"),
		gatewaySetting(&spec.Gateway, "managing gateway uuid; empty: the app's only gateway", false),
		textSetting("device-type", &spec.DeviceType, "device type; empty is "+cloud.DefaultDeviceType),
		textSetting("name", &spec.Name, "device name; empty generates one"),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		return c.CreateDevice(ctx, spec)
	})
}

func (o *cloudOptions) delete() *cobra.Command {
	var app int64
	var dev string
	return o.command("delete", "delete a device (--device UUID) or an app with its devices (--app N)", false, []settings.Setting{
		appSetting(&app, "dependent app id to delete with its devices", false),
		deviceSetting(&dev, "device uuid to delete", false),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		switch {
		case (app > 0) == (dev != ""):
			return nil, usagef("give exactly one of --app and --device")
		case dev != "":
			return nil, c.DeleteDevice(ctx, dev)
		default:
			return nil, c.DeleteApp(ctx, app)
		}
	})
}

func (o *cloudOptions) move() *cobra.Command {
	var dev, gw string
	var app int64
	return o.command("move", "move a device to another app (--device UUID --app N [--gateway UUID])", false, []settings.Setting{
		deviceSetting(&dev, "device uuid", true),
		appSetting(&app, "dependent app id to move it to", true),
		gatewaySetting(&gw, "managing gateway uuid; empty keeps the current one or takes the app's only gateway", false),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		return nil, c.MoveDevice(ctx, dev, app, gw)
	})
}

func (o *cloudOptions) restart() *cobra.Command {
	var dev string
	return o.command("restart", "request a restart of a device (--device UUID)", false, []settings.Setting{
		deviceSetting(&dev, "device uuid", true),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		n, err := c.RestartDevice(ctx, dev)
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("restart=%d\n", n), nil
	})
}

func (o *cloudOptions) devices() *cobra.Command {
	var filter cloud.DeviceFilter
	return o.command("devices", "list the cloud's view of the devices ([--gateway UUID] [--app N])", false, []settings.Setting{
		gatewaySetting(&filter.Gateway, "only devices managed by this gateway uuid", false),
		appSetting(&filter.AppID, "only devices of this dependent app", false),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		return c.Devices(ctx, filter)
	})
}

func (o *cloudOptions) logs() *cobra.Command {
	var dev string
	var asJSON bool
	return o.command("logs", "print the log lines the cloud received for a device (--device UUID)", false, []settings.Setting{
		deviceSetting(&dev, "device uuid", true),
		boolSetting("json", &asJSON, "print the log lines as JSON"),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		lines, err := c.Logs(ctx, dev)
		if err != nil || asJSON {
			return lines, err
		}
		var b strings.Builder
		for _, l := range lines {
			sys := ""
			if l.IsSystem {
				sys = " [system]"
			}
			fmt.Fprintf(&b, "%s%s %s\n", time.UnixMilli(l.Timestamp).UTC().Format(time.RFC3339Nano), sys, l.Message)
		}
		return b.String(), nil
	})
}

func (o *cloudOptions) requests() *cobra.Command {
	var after int64
	return o.command("requests", "print the journal of protocol requests ([--after SEQ])", false, []settings.Setting{
		{Flag: "after", Value: settings.Int64(&after, 0), Help: "only requests with a sequence number above this"},
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		if after < 0 {
			return nil, usagef("--after must not be negative")
		}
		reqs, err := c.Requests(ctx, uint64(after))
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, r := range reqs {
			fault := ""
			if r.Fault != "" {
				fault = " fault=" + r.Fault
			}
			fmt.Fprintf(&b, "%d %s %s %s %d %s gateway=%s%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.Method, r.Path, r.Status, r.Duration, r.Gateway, fault)
		}
		return b.String(), nil
	})
}

func (o *cloudOptions) state() *cobra.Command {
	var gw string
	return o.command("state", "print the target state document of a gateway (--gateway UUID)", false, []settings.Setting{
		gatewaySetting(&gw, "gateway uuid", true),
	}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
		return c.State(ctx, gw)
	})
}
