package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/supervisortest"
)

// exampleSupervisor starts an in-memory supervisor with one dependent app.
func exampleSupervisor() *httptest.Server {
	sup := supervisortest.New("s3cret")
	sup.SetApp(13015, "edgeApp1", "d43bea5e16658e653088ce4b9a91b6606c3c2a0d", []byte("firmware tar"))
	return httptest.NewServer(sup.Handler())
}

func Example_provision() {
	srv := exampleSupervisor()
	defer srv.Close()
	c, err := client.New(client.Options{BaseURL: srv.URL, APIKey: "s3cret"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	dev, err := c.Provision(ctx, 13015, "")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(dev.UUID), dev.DeviceType)
	devices, _ := c.Devices(ctx)
	fmt.Println(len(devices), devices[0].AppID, devices[0].UUID == dev.UUID)
	// Output:
	// 32 generic-amd64
	// 1 13015 true
}

func Example_update() {
	srv := exampleSupervisor()
	defer srv.Close()
	c, _ := client.New(client.Options{BaseURL: srv.URL, APIKey: "s3cret", KeyMode: client.KeyInHeader})
	ctx := context.Background()
	dev, _ := c.Provision(ctx, 13015, "")

	status, online, commit := "Idle", true, "d43bea5e16658e653088ce4b9a91b6606c3c2a0d"
	d, err := c.UpdateDevice(ctx, dev.UUID, api.DeviceUpdate{Status: &status, IsOnline: &online, Commit: &commit})
	if err != nil {
		panic(err)
	}
	fmt.Println(d.Status, *d.IsOnline, *d.Commit)
	// Output: Idle true d43bea5e16658e653088ce4b9a91b6606c3c2a0d
}

func Example_assets() {
	srv := exampleSupervisor()
	defer srv.Close()
	c, _ := client.New(client.Options{BaseURL: srv.URL, APIKey: "s3cret"})
	ctx := context.Background()
	apps, _ := c.Apps(ctx)
	a, err := c.Assets(ctx, apps[0].ID, apps[0].Commit, nil)
	if err != nil {
		panic(err)
	}
	defer a.Close()
	body, _ := io.ReadAll(a)
	fmt.Println(a.ContentType, string(body))
	// Output: application/x-tar firmware tar
}

func Example_errors() {
	srv := exampleSupervisor()
	defer srv.Close()
	c, _ := client.New(client.Options{BaseURL: srv.URL, APIKey: "s3cret"})
	_, err := c.Device(context.Background(), "0123456789abcdef0123456789abcdef")
	fmt.Println(client.IsNotFound(err), client.StatusCode(err))
	fmt.Println(err)
	// Output:
	// true 404
	// GET /v1/devices/0123456789abcdef0123456789abcdef: 404 Not Found: Device not found
}

func Example_log() {
	srv := exampleSupervisor()
	defer srv.Close()
	c, _ := client.New(client.Options{BaseURL: srv.URL, APIKey: "s3cret"})
	ctx := context.Background()
	dev, _ := c.Provision(ctx, 13015, "")
	ts := int64(1472142960)
	err := c.Log(ctx, dev.UUID, api.LogEntry{Message: "detected movement", Timestamp: &ts})
	fmt.Println(err)
	// Output: <nil>
}
