package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/settings"
)

// fault is "cloud fault": one subcommand per fault knob of the fake cloud.
func (o *cloudOptions) fault() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "set or clear fault knobs: show, reset, delay, undelay, fail-next, unfail, outage, end-outage, hang, unhang",
		Args:  subcommandArgs,
		RunE:  func(*cobra.Command, []string) error { return nil }, // Args refuses first
	}
	// onRoute is a knob of one route: --route and the knob's own flags.
	// set is a method of the control client, or of its shape.
	onRoute := func(name, short string, table []settings.Setting, set func(c *cloud.ControlClient, ctx context.Context, route string) error) *cobra.Command {
		var route string
		table = append([]settings.Setting{{Flag: "route", Value: settings.Text(&route, ""), Required: true,
			Help: "route of the cloud protocol: " + strings.Join(cloud.Routes, ", ")}}, table...)
		return o.command("fault "+name, short, false, table, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
			return nil, set(c, ctx, route)
		})
	}
	// whole is a knob of the whole cloud, without flags.
	whole := func(name, short string, set func(c *cloud.ControlClient, ctx context.Context) error) *cobra.Command {
		return o.command("fault "+name, short, false, nil, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
			return nil, set(c, ctx)
		})
	}
	var delay, jitter time.Duration
	var n, status int
	var mode string
	cmd.AddCommand(
		o.list("fault show", "print the fault knobs that are set", func(ctx context.Context, c *cloud.ControlClient) (any, error) {
			return c.Faults(ctx)
		}),
		whole("reset", "clear every fault knob", (*cloud.ControlClient).ResetFaults),
		onRoute("delay", "delay every request of a route", []settings.Setting{
			{Flag: "delay", Value: settings.Duration(&delay, 0), Help: "added to every request of the route"},
			{Flag: "jitter", Value: settings.Duration(&jitter, 0), Help: "random extra delay up to this"},
		}, func(c *cloud.ControlClient, ctx context.Context, route string) error {
			return c.Delay(ctx, route, delay, jitter)
		}),
		onRoute("undelay", "stop delaying a route", nil, (*cloud.ControlClient).Undelay),
		onRoute("fail-next", "fail the next requests of a route", []settings.Setting{
			{Flag: "n", Value: settings.Int(&n, 1), Help: "number of requests to fail"},
			{Flag: "status", Value: settings.Int(&status, 503), Help: "status of the failed requests"},
		}, func(c *cloud.ControlClient, ctx context.Context, route string) error {
			return c.FailNext(ctx, route, n, status)
		}),
		onRoute("unfail", "stop failing a route", nil, (*cloud.ControlClient).Unfail),
		o.command("fault outage", "make the whole cloud unavailable", false, []settings.Setting{
			{Flag: "mode", Value: settings.OneOf(&mode, string(cloud.Outage503), string(cloud.Outage503), string(cloud.OutageClose)),
				Help: "503 answers every request 503; close closes every connection"},
		}, func(ctx context.Context, c *cloud.ControlClient, _ []string) (any, error) {
			return nil, c.Outage(ctx, cloud.OutageMode(mode))
		}),
		whole("end-outage", "end the outage", (*cloud.ControlClient).EndOutage),
		onRoute("hang", "hold every request of a route unanswered until unhang or reset", nil, (*cloud.ControlClient).Hang),
		onRoute("unhang", "release the held requests of a route", nil, (*cloud.ControlClient).Unhang),
	)
	return cmd
}
