package cloud

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAwaitDeviceReturnsOnceTheGatewayReports(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	d := c.device(t, f.app.ID)
	ctx := testCtx(t)
	got := make(chan cloudapi.Device, 1)
	errc := make(chan error, 1)
	go func() {
		dev, err := c.AwaitDevice(ctx, d.UUID, func(d cloudapi.Device) bool { return d.IsOnline && d.Status == "Idle" })
		errc <- err
		got <- dev
	}()
	c.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID), f.gw.APIKey, strings.NewReader(`{"status":"Idle"}`))
	c.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID), f.gw.APIKey, strings.NewReader(`{"is_online":true}`))
	mustNoErr(t, <-errc)
	if dev := <-got; dev.Status != "Idle" || !dev.IsOnline || dev.UUID != d.UUID {
		t.Errorf("got %+v, want Idle and online", dev)
	}
}

func TestAwaitDeviceWaitsForADeviceToAppear(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	ctx := testCtx(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.AwaitDevice(ctx, hexOf('5'), nil)
		errc <- err
	}()
	c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, provisionBody(f.app.ID, f.gw.DeviceID, hexOf('5')))
	mustNoErr(t, <-errc)
}

func TestAwaitGivesUpWithTheContextAndSaysWhatItSaw(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	d := c.device(t, f.app.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.AwaitDevice(ctx, d.UUID, func(d cloudapi.Device) bool { return d.IsOnline })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last seen") {
		t.Errorf("got %v, want a deadline error with the last seen device", err)
	}
	_, err = c.AwaitLogs(ctx, d.UUID, 1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "have 0") {
		t.Errorf("got %v, want a deadline error saying have 0", err)
	}
	_, err = c.AwaitRequest(ctx, func(Request) bool { return true })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want a deadline error", err)
	}
}

func TestAwaitRequestSeesOnlyLaterRequestsWhenAskedTo(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)
	mark := c.RequestSeq()
	ctx := testCtx(t)
	got := make(chan Request, 1)
	go func() {
		r, err := c.AwaitRequest(ctx, func(r Request) bool { return r.Seq > mark && r.Route == RouteState })
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)
	r := <-got
	if r.Seq != mark+1 || r.Status != 200 || r.Gateway != f.gw.UUID || r.Method != "GET" || r.Path != statePath(f.gw.UUID) {
		t.Errorf("got %+v, want the second state poll", r)
	}
}

func TestAwaitLogsCountsLinesBeyondTheRetentionBound(t *testing.T) {
	c := newTestCloud(t, Options{LogsPerDevice: 3})
	f := c.fixture(t)
	d := c.device(t, f.app.ID)
	var body strings.Builder
	for i := range 10 {
		body.WriteString(logLine(d.UUID, fmt.Sprint(i), int64(i)))
	}
	c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(body.String()))
	lines, err := c.AwaitLogs(testCtx(t), d.UUID, 10)
	mustNoErr(t, err)
	if len(lines) != 3 || lines[0].Message != "7" || lines[2].Message != "9" {
		t.Errorf("got %+v, want the last 3 lines 7..9", lines)
	}
	info, _ := c.Device(d.UUID)
	if info.LogCount != 10 {
		t.Errorf("got log count %d, want 10", info.LogCount)
	}
}

func TestJournalKeepsTheNewestEntries(t *testing.T) {
	c := newTestCloud(t, Options{JournalSize: 4})
	f := c.fixture(t)
	for range 6 {
		c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)
	}
	_, err := c.AwaitRequest(testCtx(t), func(r Request) bool { return r.Seq == 6 })
	mustNoErr(t, err)
	all := c.Requests(0)
	if len(all) != 4 || all[0].Seq != 3 || all[3].Seq != 6 {
		t.Errorf("got seqs %v, want 3..6", seqs(all))
	}
	if got := c.Requests(4); len(got) != 2 || got[0].Seq != 5 {
		t.Errorf("after 4: got seqs %v, want 5 6", seqs(got))
	}
	if got := c.Requests(6); len(got) != 0 {
		t.Errorf("after 6: got seqs %v, want none", seqs(got))
	}
}

func seqs(rs []Request) []uint64 {
	out := []uint64{}
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

func TestMetricsCountRequestsByRouteAndCodeAndLintClean(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)
	c.call(t, "GET", statePath(f.gw.UUID), "", nil)
	c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, provisionBody(f.app.ID, f.gw.DeviceID, hexOf('3')))
	_, err := c.AwaitRequest(testCtx(t), func(r Request) bool { return r.Route == RouteProvision })
	mustNoErr(t, err)
	for _, tt := range []struct {
		route, code string
		want        float64
	}{
		{RouteState, "200", 1}, {RouteState, "401", 1}, {RouteProvision, "201", 1},
	} {
		if got := testutil.ToFloat64(c.metrics.requests.Count.WithLabelValues(tt.route, tt.code)); got != tt.want {
			t.Errorf("requests{route=%s,code=%s}: got %v, want %v", tt.route, tt.code, got, tt.want)
		}
	}
	if got := testutil.ToFloat64(c.metrics.devices); got != 1 {
		t.Errorf("devices gauge: got %v, want 1", got)
	}
	if n := testutil.CollectAndCount(c.metrics.requests.Duration); n != 2 {
		t.Errorf("duration series: got %d, want 2 (state, provision)", n)
	}
	promtest.CheckHygiene(t, c.reg)
	r := c.call(t, "GET", "/metrics", "", nil)
	if r.status != 200 || !strings.Contains(r.body, "depharness_cloud_requests_total") {
		t.Errorf("/metrics: got %d without depharness_cloud_requests_total", r.status)
	}
	if strings.Contains(r.body, f.gw.UUID) || strings.Contains(r.body, hexOf('3')) {
		t.Errorf("/metrics mentions a uuid")
	}
}
