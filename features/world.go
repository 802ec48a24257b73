package features

import (
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
)

// CloudControl is what the steps need from the fake cloud: its control API,
// its journal and await functions, and its fault knobs. *cloud.Server
// satisfies it.
type CloudControl interface {
	CreateGateway(spec cloud.GatewaySpec) (cloud.Gateway, error)
	CreateApp(spec cloud.AppSpec) (cloud.App, error)
	DeleteApp(id int64) error
	PushRelease(ctx context.Context, appID int64, spec cloud.ReleaseSpec) (cloud.Release, error)
	SetAppEnv(appID int64, vars map[string]string) error
	SetAppConfig(appID int64, vars map[string]string) error
	SetDeviceEnv(uuid string, vars map[string]string) error
	SetDeviceConfig(uuid string, vars map[string]string) error
	CreateDevice(spec cloud.DeviceSpec) (cloud.DeviceInfo, error)
	DeleteDevice(uuid string) error
	MoveDevice(uuid string, appID int64, gateway string) error
	RestartDevice(uuid string) (int64, error)
	Device(uuid string) (cloud.DeviceInfo, error)
	Logs(uuid string) ([]cloudapi.LogLine, error)
	Requests(after uint64) []cloud.Request
	RequestSeq() uint64
	Await(ctx context.Context, pred func(*cloud.View) bool) error
	AwaitDevice(ctx context.Context, uuid string, pred func(cloudapi.Device) bool) (cloudapi.Device, error)
	AwaitLogs(ctx context.Context, uuid string, n int) ([]cloudapi.LogLine, error)
	FailNext(route string, n, status int) error
	Outage(mode cloud.OutageMode) error
	ResetFaults()
	RefuseLogLines(message string)
}

// RegistryControl is what the steps need from the fake registry: its fault
// knobs. *registry.Server satisfies it.
type RegistryControl interface {
	Throttle(bytesPerSec int64)
	FailNext(kind registry.Kind, n, status int)
	Fail(kind registry.Kind, status int)
	Heal()
	// Requests is the registry's request journal (timing bounds measure
	// from when an image was fully served).
	Requests() []registry.Request
}

// ImageBuilder builds release images into the registry. *registry.Builder
// satisfies it.
type ImageBuilder interface {
	Build(ctx context.Context, repo string, layers ...registry.Layer) (ref string, digest v1.Hash, err error)
}

// World is what one scenario runs in: a fake cloud reachable at CloudURL
// (the target's API_ENDPOINT) and a fake registry the cloud's images point
// to.
type World struct {
	CloudURL string
	Cloud    CloudControl
	Registry RegistryControl
	Images   ImageBuilder
	// Close stops the world's servers.
	Close func()
}

// WorldOptions are what a WorldFactory is given.
type WorldOptions struct {
	// Seed seeds the fakes' randomness.
	Seed int64
	// Logger receives the fakes' logs (the scenario log).
	Logger *slog.Logger
}

// WorldFactory starts a fresh world for one scenario.
type WorldFactory func(ctx context.Context, opts WorldOptions) (*World, error)

// LocalWorld is the default WorldFactory: a fake cloud and a fake registry
// in this process, each on its own loopback port, the cloud's releases
// pointing into the registry. (world.StartFakes composes the same; the
// suite starts its own so that it does not depend on the rest of the world
// building.)
func LocalWorld(ctx context.Context, opts WorldOptions) (*World, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg, err := registry.New(registry.Options{Logger: log.With("component", "registry"), Seed: opts.Seed})
	if err != nil {
		return nil, err
	}
	regAddr, stopReg, err := serveLoopback(reg, log)
	if err != nil {
		_ = reg.Close()
		return nil, err
	}
	cl, err := cloud.New(cloud.Options{
		Logger:     log.With("component", "cloud"),
		Registerer: prometheus.NewRegistry(),
		Seed:       uint64(opts.Seed),
	})
	if err != nil {
		stopReg()
		_ = reg.Close()
		return nil, err
	}
	cloudAddr, stopCloud, err := serveLoopback(cl, log)
	if err != nil {
		stopReg()
		_ = reg.Close()
		return nil, err
	}
	return &World{
		CloudURL: "http://" + cloudAddr,
		Cloud:    cl,
		Registry: reg,
		Images:   registry.NewBuilder(registry.BuilderOptions{Registry: regAddr, Transport: registry.HandlerTransport(reg)}),
		Close: func() {
			stopCloud()
			stopReg()
			_ = reg.Close()
		},
	}, nil
}

// serveLoopback serves h on a fresh 127.0.0.1 port and returns host:port
// and a function that stops the server.
func serveLoopback(h http.Handler, log *slog.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := httpserver.Start(ln, h, httpserver.Options{})
	go func() {
		if err := srv.Err(); err != nil {
			log.Error("loopback server", "err", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // closes what is left when ctx ends
	}, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// portPool hands out loopback ports for listeners that must keep their port
// across restarts (the supervisor's, the gateway app's). They come from
// below the kernel's ephemeral range, so that no outgoing connection and no
// listener on port 0 can take one while its owner is down, and a port is
// never given to two scenarios at once, even by suites running in other
// processes: each reservation holds an exclusive lock on a file named after
// the port until it is released.
type portPool struct {
	mu       sync.Mutex
	lo, hi   int
	rng      *mrand.Rand
	lockDir  string
	reserved map[int]*os.File // port → its held lock file
}

func newPortPool(seed int64) *portPool {
	lo, hi := 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var eLo, eHi int
		if _, err := fmt.Sscan(string(b), &eLo, &eHi); err == nil && eLo > 2048 {
			hi = eLo
			lo = max(1024, eLo-12768)
		}
	}
	return &portPool{
		lo: lo, hi: hi, rng: mrand.New(mrand.NewPCG(uint64(seed), 0x5eed)),
		lockDir: filepath.Join(os.TempDir(), "depharness-ports"), reserved: map[int]*os.File{},
	}
}

// lock takes the cross-process lock of port, or reports that another
// process holds it.
func (p *portPool) lock(port int) (*os.File, bool) {
	if err := os.MkdirAll(p.lockDir, 0o777); err != nil {
		return nil, false
	}
	f, err := os.OpenFile(filepath.Join(p.lockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// take reserves a port that is free now.
func (p *portPool) take() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 200 {
		port := p.lo + p.rng.IntN(p.hi-p.lo)
		if p.reserved[port] != nil {
			continue
		}
		lf, ok := p.lock(port)
		if !ok {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			lf.Close()
			continue
		}
		ln.Close()
		p.reserved[port] = lf
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d after 200 tries", p.lo, p.hi)
}

// release returns a port to the pool and drops its lock.
func (p *portPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lf := p.reserved[port]; lf != nil {
		lf.Close() // closing the file releases the flock
	}
	delete(p.reserved, port)
}

// The fakes satisfy the seams.
var (
	_ CloudControl    = (*cloud.Server)(nil)
	_ RegistryControl = (*registry.Server)(nil)
	_ ImageBuilder    = (*registry.Builder)(nil)
)
