package cloud

import (
	"context"
	"errors"
	"time"
)

// Errors of the control API. Every error a control method returns wraps one
// of them; the HTTP control API maps them to 400, 404, 409 and 503.
var (
	// ErrInvalid is bad input: nothing was changed.
	ErrInvalid = errors.New("invalid input")
	// ErrNotFound is an unknown gateway, app or device.
	ErrNotFound = errors.New("not found")
	// ErrConflict is an id, uuid or key that is already taken.
	ErrConflict = errors.New("conflict")
	// ErrNoBuilder is a release with layers pushed to a cloud without an
	// ImageBuilder.
	ErrNoBuilder = errors.New("no image builder configured")
)

// Layer is one image layer of a release: files added or replaced, then
// paths deleted (whiteouts of files of earlier layers). Paths are relative
// to the image root, slash-separated; a dependent app's assets live under
// "assets/". In JSON, file contents are base64 (encoding/json's []byte).
type Layer struct {
	Files  map[string][]byte `json:"files,omitempty"`
	Delete []string          `json:"delete,omitempty"`
}

// ImageBuilder builds an image of layers (first layer at the bottom), pushes
// it as repository repo of a registry, and returns its full reference by
// digest, host:port/repo@sha256:<hex>. The fake registry's builder satisfies
// it through an adapter.
type ImageBuilder interface {
	BuildImage(ctx context.Context, repo string, layers []Layer) (ref string, err error)
}

// ImageBuilderFunc adapts a function to ImageBuilder.
type ImageBuilderFunc func(ctx context.Context, repo string, layers []Layer) (string, error)

// BuildImage calls f.
func (f ImageBuilderFunc) BuildImage(ctx context.Context, repo string, layers []Layer) (string, error) {
	return f(ctx, repo, layers)
}

// GatewaySpec describes a gateway to create. Zero fields are generated:
// UUID (32 lowercase hex), DeviceID (next free), APIKey (32 hex), Name
// (adjective-noun). AppID names an existing gateway app; if 0, a new one
// named AppName (or "<name>-fleet") is created.
type GatewaySpec struct {
	UUID     string `json:"uuid,omitempty"`
	DeviceID int64  `json:"deviceId,omitempty"`
	APIKey   string `json:"apiKey,omitempty"`
	Name     string `json:"name,omitempty"`
	AppID    int64  `json:"appId,omitempty"`
	AppName  string `json:"appName,omitempty"`
}

// Gateway is a gateway device: the identity a supervisor is started with
// (DEVICE_UUID, DEVICE_ID, DEVICE_API_KEY).
type Gateway struct {
	UUID     string `json:"uuid"`
	DeviceID int64  `json:"deviceId"`
	APIKey   string `json:"apiKey"`
	Name     string `json:"name"`
	AppID    int64  `json:"appId"`
	AppName  string `json:"appName"`
	// Devices is the number of dependent devices it manages.
	Devices int `json:"devices"`
	// DroppedLogs counts log lines it sent for devices it does not manage.
	DroppedLogs int64 `json:"droppedLogs"`
}

// AppSpec describes a dependent app to create under a gateway app: either
// ParentApp (a gateway app id) or Gateway (a gateway uuid, meaning its app).
// Name, if empty, is generated.
type AppSpec struct {
	Name        string            `json:"name,omitempty"`
	ParentApp   int64             `json:"parentApp,omitempty"`
	Gateway     string            `json:"gateway,omitempty"`
	Config      map[string]string `json:"config,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
}

// App is a dependent app as the control API shows it.
type App struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	ParentApp   int64             `json:"parentApp"`
	Config      map[string]string `json:"config"`
	Environment map[string]string `json:"environment"`
	// Release is the latest release, nil while there is none.
	Release *Release `json:"release"`
	Devices int      `json:"devices"`
}

// Release is a release of a dependent app.
type Release struct {
	ID int64 `json:"id"`
	// Commit is 40 lowercase hex characters.
	Commit string `json:"commit"`
	// Image is host:port/repo@sha256:<hex>.
	Image     string    `json:"image"`
	CreatedAt time.Time `json:"createdAt"`
}

// ReleaseSpec describes a release to push: either Layers, built into an
// image by the ImageBuilder, or Image, a ready reference. Commit, if empty,
// is generated (40 hex).
type ReleaseSpec struct {
	Layers []Layer `json:"layers,omitempty"`
	Image  string  `json:"image,omitempty"`
	Commit string  `json:"commit,omitempty"`
}

// DeviceSpec describes a dependent device "provisioned elsewhere" (not
// through a gateway). Zero fields: UUID generated, Name generated,
// DeviceType "generic-amd64", Gateway the only gateway of the app's parent
// app (an error if it has several).
type DeviceSpec struct {
	UUID        string            `json:"uuid,omitempty"`
	AppID       int64             `json:"appId"`
	DeviceType  string            `json:"deviceType,omitempty"`
	Name        string            `json:"name,omitempty"`
	Gateway     string            `json:"gateway,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Config      map[string]string `json:"config,omitempty"`
}

// DeviceInfo is the cloud's whole view of a dependent device.
type DeviceInfo struct {
	ID              int64             `json:"id"`
	UUID            string            `json:"uuid"`
	Name            string            `json:"name"`
	DeviceType      string            `json:"deviceType"`
	AppID           int64             `json:"appId"`
	Gateway         string            `json:"gateway"`
	GatewayDeviceID int64             `json:"gatewayDeviceId"`
	Environment     map[string]string `json:"environment"`
	Config          map[string]string `json:"config"`
	Restart         int64             `json:"restart"`
	// Status, IsOnline and IsOnCommit are what gateways last PATCHed.
	Status       string    `json:"status"`
	IsOnline     bool      `json:"isOnline"`
	IsOnCommit   *string   `json:"isOnCommit"`
	RegisteredAt time.Time `json:"registeredAt"`
	// Origin is OriginProvisioned or OriginCreated.
	Origin string `json:"origin"`
	// LogCount is the number of log lines ever received for the device.
	LogCount int `json:"logCount"`
}

// VarKind is the kind of variables: environment or configuration.
type VarKind string

// Kinds of variables.
const (
	KindEnv    VarKind = "env"
	KindConfig VarKind = "config"
)

// VarsUpdate changes the variables of exactly one of App or Device: Set
// adds or replaces, Unset removes (a name in both is invalid).
type VarsUpdate struct {
	App    int64             `json:"app,omitempty"`
	Device string            `json:"device,omitempty"`
	Kind   VarKind           `json:"kind"`
	Set    map[string]string `json:"set,omitempty"`
	Unset  []string          `json:"unset,omitempty"`
}

// Request is one entry of the journal of protocol requests.
type Request struct {
	// Seq increases by one per request, from 1.
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	// Path is the request's path and query as received.
	Path string `json:"path"`
	// Route is one of the Route constants, or "unknown".
	Route string `json:"route"`
	// Gateway is the uuid of the authenticated gateway, "" if none.
	Gateway string `json:"gateway,omitempty"`
	// Status is the answer's status; 0 when the connection was closed.
	Status   int           `json:"status"`
	Duration time.Duration `json:"duration"`
	// Fault names the injected fault that answered, if any: "outage",
	// "fail-next", "hang"; or the fault that lost or delayed the answer of
	// a request that was handled: "drop-answer" (Status 0),
	// "delay-answer" (Status 0 when the client left before the answer).
	Fault string `json:"fault,omitempty"`
	// Body is the start of the request body as the fake read it, at most
	// Options.JournalBodyBytes, and nothing once the journal's budget of
	// body bytes (Options.JournalBodyBudget) needed the room for newer
	// bodies. It is shared: read it, never change it.
	Body []byte `json:"body,omitempty"`
	// BodySize is how many bytes of body the fake read in all; Body is
	// the whole body when len(Body) == BodySize.
	BodySize int64 `json:"body_size,omitempty"`
}

// WholeBody reports whether Body holds the whole body the fake read.
func (r Request) WholeBody() bool { return int64(len(r.Body)) == r.BodySize }
