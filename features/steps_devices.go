package features

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/cucumber/godog"
	"github.com/gavv/httpexpect/v2"
)

// Steps on the device list and single devices: provisioning, GET, PUT and the device objects they answer.

func getAnswers(ctx context.Context, path string, status int) error {
	st := scenarioOf(ctx)
	if err := st.call("GET", path, nil, st.authed); err != nil {
		return err
	}
	st.last.Status(status)
	return nil
}

func getAnswersText(ctx context.Context, path string, status int, text string) error {
	if err := getAnswers(ctx, path, status); err != nil {
		return err
	}
	return answerIsText(ctx, status, text)
}

func eventuallyGetAnswers(ctx context.Context, path string, status int) error {
	return eventuallyGetAnswersText(ctx, path, status, "")
}

func eventuallyGetAnswersText(ctx context.Context, path string, status int, text string) error {
	st := scenarioOf(ctx)
	p, err := st.expand(path)
	if err != nil {
		return err
	}
	return st.eventually(ctx, func(e *httpexpect.Expect, fail failFunc) {
		resp := st.authed(e.GET(p)).Expect()
		resp.Status(status)
		if text == "" {
			return
		}
		if err := st.checkText("GET "+p, status, resp.Body().Raw(), text); err != nil {
			fail("%v", err)
		}
	})
}

func provisionDevice(ctx context.Context, alias, appName string) error {
	st, a, err := appOf(ctx, appName)
	if err != nil {
		return err
	}
	obj := st.authed(st.api().POST("/v1/devices")).WithJSON(map[string]any{"appId": a.id}).
		Expect().Status(http.StatusCreated).JSON().Object()
	if err := st.rep.err(); err != nil {
		return err
	}
	uuid, _ := obj.Value("uuid").Raw().(string)
	id, _ := obj.Value("id").Raw().(float64)
	if !uuidRe.MatchString(uuid) {
		return fmt.Errorf("provisioning: got uuid %q, want 32 lowercase hex characters", uuid)
	}
	return st.addDevice(alias, uuid, int64(id), a)
}

func answerIsProvisionedDevice(ctx context.Context, alias, deviceType string) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	obj := st.last.JSON().Object()
	for _, k := range []string{"id", "uuid", "name", "note", "device_type"} {
		obj.ContainsKey(k)
	}
	if err := st.rep.err(); err != nil {
		return err
	}
	obj.Value("id").Number().IsInt().Gt(0)
	obj.Value("uuid").String().Match(uuidRe.String())
	obj.Value("name").String().NotEmpty()
	if note := obj.Value("note").Raw(); note != nil {
		if _, ok := note.(string); !ok {
			return fmt.Errorf("provisioning: got note %v, want null or a string", note)
		}
	}
	obj.Value("device_type").IsEqual(deviceType)
	if err := st.rep.err(); err != nil {
		return err
	}
	uuid := obj.Value("uuid").Raw().(string)
	id := int64(obj.Value("id").Raw().(float64))
	dev, err := st.world.Cloud.Device(uuid)
	if err != nil {
		return fmt.Errorf("provisioning answered uuid %s, which the cloud does not know: %w", uuid, err)
	}
	if dev.ID != id {
		return fmt.Errorf("provisioning: got id %d, want the cloud's device id %d", id, dev.ID)
	}
	var app *appState
	for _, a := range st.apps {
		if a.id == dev.AppID {
			app = a
		}
	}
	return st.addDevice(alias, uuid, id, app)
}

func differentUUIDs(ctx context.Context, a, b string) error {
	st, da, err := deviceOf(ctx, a)
	if err != nil {
		return err
	}
	db, err := st.device(b)
	if err != nil {
		return err
	}
	if da.uuid == db.uuid {
		return fmt.Errorf("devices %s and %s both got uuid %s", a, b, da.uuid)
	}
	return nil
}

func (st *scenario) listDevices(e *httpexpect.Expect) *httpexpect.Array {
	return st.authed(e.GET("/v1/devices")).Expect().Status(http.StatusOK).JSON().Array()
}

func deviceListEmpty(ctx context.Context) error {
	st := scenarioOf(ctx)
	st.listDevices(st.api()).IsEmpty()
	return nil
}

func deviceListEventuallyEmpty(ctx context.Context) error {
	st := scenarioOf(ctx)
	return st.eventually(ctx, func(e *httpexpect.Expect, _ failFunc) { st.listDevices(e).IsEmpty() })
}

var quoted = regexp.MustCompile(`"([^"]+)"`)

func deviceListHolds(ctx context.Context, list string) error {
	st := scenarioOf(ctx)
	var want []any
	for _, m := range quoted.FindAllStringSubmatch(list, -1) {
		d, err := st.device(m[1])
		if err != nil {
			return err
		}
		want = append(want, d.uuid)
	}
	arr := st.listDevices(st.api())
	if st.rep.err() != nil {
		return nil
	}
	var got []any
	for _, v := range arr.Raw() {
		if m, ok := v.(map[string]any); ok {
			got = append(got, m["uuid"])
		}
	}
	if !sameSet(got, want) {
		return fmt.Errorf("GET /v1/devices: got uuids %v, want exactly %v", got, want)
	}
	return nil
}

func sameSet(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	as, bs := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		as[i] = fmt.Sprint(a[i])
	}
	for i := range b {
		bs[i] = fmt.Sprint(b[i])
	}
	sort.Strings(as)
	sort.Strings(bs)
	return reflect.DeepEqual(as, bs)
}

// fieldTable reads a | field | value | table whose values are JSON with
// placeholders.
// deviceFieldsOf is the scenario of ctx, its device alias, and the fields
// of the step's table t as fieldTable reads them.
func deviceFieldsOf(ctx context.Context, alias string, t *godog.Table) (*scenario, *deviceState, map[string]any, []string, error) {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return st, d, nil, nil, err
	}
	want, order, err := st.fieldTable(t)
	return st, d, want, order, err
}

func (st *scenario) fieldTable(t *godog.Table) (map[string]any, []string, error) {
	out := map[string]any{}
	var order []string
	err := eachRow(t, "", []string{"field", "value"}, func(_ int, c []string) error {
		v, err := st.decodeJSON(c[1])
		out[c[0]] = v
		order = append(order, c[0])
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return out, order, nil
}

func checkFields(obj *httpexpect.Object, want map[string]any, order []string) {
	for _, k := range order {
		obj.ContainsKey(k)
		obj.Value(k).IsEqual(want[k])
	}
}

func (st *scenario) getDevice(e *httpexpect.Expect, d *deviceState) *httpexpect.Object {
	return st.authed(e.GET("/v1/devices/" + d.uuid)).Expect().Status(http.StatusOK).JSON().Object()
}

func showsDevice(ctx context.Context, alias string, t *godog.Table) error {
	st, d, want, order, err := deviceFieldsOf(ctx, alias, t)
	if err != nil {
		return err
	}
	checkFields(st.getDevice(st.api(), d), want, order)
	return nil
}

func eventuallyShowsDevice(ctx context.Context, alias string, t *godog.Table) error {
	st, d, want, order, err := deviceFieldsOf(ctx, alias, t)
	if err != nil {
		return err
	}
	return st.eventually(ctx, func(e *httpexpect.Expect, _ failFunc) { checkFields(st.getDevice(e, d), want, order) })
}

func answerIsDevice(ctx context.Context, alias string, t *godog.Table) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	want, order, err := st.fieldTable(t)
	if err != nil {
		return err
	}
	obj := st.last.JSON().Object()
	obj.Value("uuid").IsEqual(d.uuid)
	checkFields(obj, want, order)
	return nil
}

// fetchDevice is the scenario of ctx, its device alias and the
// supervisor's answer to GET /v1/devices/{uuid} for it: an error unless
// that was 200 with an object.
func fetchDevice(ctx context.Context, alias string) (*scenario, *deviceState, map[string]any, error) {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return st, d, nil, err
	}
	obj := st.getDevice(st.api(), d)
	if err := st.rep.err(); err != nil {
		return st, d, nil, err
	}
	return st, d, obj.Raw(), nil
}

func deviceHasContractFields(ctx context.Context, alias string) error {
	st, d, m, err := fetchDevice(ctx, alias)
	if err != nil {
		return err
	}
	if probs := checkDeviceShape(m, st.reference); len(probs) > 0 {
		return fmt.Errorf("GET /v1/devices/%s: %s", d.uuid, strings.Join(probs, "; "))
	}
	return nil
}

func everyDeviceHasContractFields(ctx context.Context) error {
	st := scenarioOf(ctx)
	arr := st.listDevices(st.api())
	if st.rep.err() != nil {
		return nil
	}
	if len(arr.Raw()) == 0 {
		return errors.New("GET /v1/devices: got an empty list, want devices to check")
	}
	for i, v := range arr.Raw() {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("GET /v1/devices: element %d is %s, want an object", i, jsonKind(v))
		}
		if probs := checkDeviceShape(m, st.reference); len(probs) > 0 {
			return fmt.Errorf("GET /v1/devices: element %d: %s", i, strings.Join(probs, "; "))
		}
	}
	return nil
}

func (st *scenario) put(d *deviceState, body any) {
	st.authed(st.api().PUT("/v1/devices/" + d.uuid)).WithJSON(body).Expect().Status(http.StatusOK)
}

func reportFor(ctx context.Context, alias string, doc *godog.DocString) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	body, err := st.decodeJSON(doc.Content)
	if err != nil {
		return err
	}
	st.put(d, body)
	return nil
}

func reportTarget(ctx context.Context, alias string) error {
	st, d, m, err := fetchDevice(ctx, alias)
	if err != nil {
		return err
	}
	if m["targetCommit"] == nil {
		return fmt.Errorf("device %s has no target commit to report", alias)
	}
	st.put(d, map[string]any{"commit": m["targetCommit"], "environment": m["targetEnvironment"], "config": m["targetConfig"]})
	return nil
}
