package features

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cucumber/godog"
	"github.com/gavv/httpexpect/v2"
)

// Steps that speak to the supervisor's API as the gateway app does.

var uuidRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func registerAPISteps(sc stepper) {
	sc.Step(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)"$`, callWithKey)
	sc.Step(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with the key in (the query|a Bearer header|an ApiKey header|a lower-case bearer header|an upper-case APIKEY header|a Basic header)$`, callWithKeyIn)
	sc.Step(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with (no key|the wrong key in (?:the query|a header|a Bearer header|an ApiKey header|a lower-case bearer header|an upper-case APIKEY header|a lower-case apikey header))$`, callWithKeyIn)
	sc.Step(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with body:$`, callWithBody)
	sc.Step(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with a JSON body of (\d+) MiB$`, callWithHugeBody)
	sc.Step(`^the gateway app calls (POST|PUT) "([^"]*)" with the body (.+) padded to (\d+) MiB( and one byte)?$`, callWithPaddedBody)

	sc.Step(`^the answer is (\d{3})$`, answerIs)
	sc.Step(`^the answer is (\d{3}) or (\d{3})$`, answerIsEither)
	sc.Step(`^the answer is (\d{3}) "([^"]*)"$`, answerIsText)
	sc.Step(`^the answer is (\d{3}) with JSON:$`, answerIsJSON)
	sc.Step(`^the answer is plain text$`, answerIsPlainText)
	sc.Step(`^the answer's Content-Type is "([^"]*)"$`, answerContentType)
	sc.Step(`^the answer does not contain (the wrong key|the API key)$`, answerLacksKey)
	sc.Step(`^the answer's "([^"]*)" equals its "([^"]*)"$`, answerFieldsEqual)
	sc.Step(`^GET "([^"]*)" answers (\d{3})$`, getAnswers)
	sc.Step(`^GET "([^"]*)" answers (\d{3}) "([^"]*)"$`, getAnswersText)
	sc.Step(`^the supervisor eventually answers GET "([^"]*)" with (\d{3})$`, eventuallyGetAnswers)
	sc.Step(`^the supervisor eventually answers GET "([^"]*)" with (\d{3}) "([^"]*)"$`, eventuallyGetAnswersText)

	sc.Step(`^a device "([^"]*)" of "([^"]*)" provisioned through the supervisor$`, provisionDevice)
	sc.Step(`^the answer is a provisioned device "([^"]*)" of type "([^"]*)"$`, answerIsProvisionedDevice)
	sc.Step(`^devices "([^"]*)" and "([^"]*)" have different uuids$`, differentUUIDs)
	sc.Step(`^the device list is empty$`, deviceListEmpty)
	sc.Step(`^the device list is eventually empty$`, deviceListEventuallyEmpty)
	sc.Step(`^the device list holds exactly ((?:"[^"]+"(?:, | and )?)+)$`, deviceListHolds)
	sc.Step(`^the supervisor shows device "([^"]*)" with:$`, showsDevice)
	sc.Step(`^the supervisor eventually shows device "([^"]*)" with:$`, eventuallyShowsDevice)
	sc.Step(`^the answer is the device object of "([^"]*)" with:$`, answerIsDevice)
	sc.Step(`^the device object of "([^"]*)" has the contract's fields and types$`, deviceHasContractFields)
	sc.Step(`^every device in the device list has the contract's fields and types$`, everyDeviceHasContractFields)

	sc.Step(`^the gateway app reports for "([^"]*)":$`, reportFor)
	sc.Step(`^the gateway app reports the target of "([^"]*)"$`, reportTarget)
	sc.Step(`^the gateway app sends these log lines:$`, sendLogLines)
	sc.Step(`^the gateway app sends the log line "([^"]*)" for "([^"]*)" without a timestamp$`, sendLogLineNow)

	sc.Step(`^the supervisor has downloaded release "([^"]*)" of "([^"]*)"$`, eventuallyListsRelease)
	sc.Step(`^the supervisor eventually lists release "([^"]*)" of "([^"]*)"$`, eventuallyListsRelease)
	sc.Step(`^the dependent apps list is exactly:$`, appsListIs)
	sc.Step(`^the assets of "([^"]*)" at release "([^"]*)" are exactly:$`, assetsAre)
	sc.Step(`^the answer is a tar holding exactly:$`, answerIsTar)
	sc.Step(`^the answer has an ETag$`, answerHasETag)
	sc.Step(`^the gateway app asks for the same assets again with If-None-Match set to that ETag$`, askIfNoneMatch)
	sc.Step(`^the gateway app asks for bytes (\d+)-(\d+) of the same assets$`, askRange)
	sc.Step(`^the answer is 206 holding exactly those bytes of the full tar$`, answerIsRange)
	sc.Step(`^the gateway app asks for the assets of "([^"]*)" at release "([^"]*)" (\d+) times at once$`, askAssetsAtOnce)
	sc.Step(`^every answer is 200 with the same tar holding exactly:$`, everyAnswerIsTar)
}

// call sends one request and keeps the answer as "the answer".
func (st *scenario) call(method, path string, body []byte, decorate func(*httpexpect.Request) *httpexpect.Request) error {
	p, err := st.expand(path)
	if err != nil {
		return err
	}
	st.lastDeviceProbs = nil
	e := st.expectWithDeviceReport(stepReporter{st}, func(format string, a ...any) {
		st.lastDeviceProbs = append(st.lastDeviceProbs, fmt.Sprintf(format, a...))
	})
	req := e.Request(method, p)
	if body != nil {
		req = req.WithHeader("Content-Type", "application/json").WithBytes(body)
	}
	req = decorate(req)
	st.last = req.Expect()
	st.lastMethod, st.lastPath = method, p
	st.lastBody = []byte(st.last.Body().Raw())
	return nil
}

func callWithKey(ctx context.Context, method, path string) error {
	st := scenarioOf(ctx)
	return st.call(method, path, nil, st.authed)
}

func callWithKeyIn(ctx context.Context, method, path, where string) error {
	st := scenarioOf(ctx)
	wrong := "wrong-" + st.apiKey[:8]
	return st.call(method, path, nil, func(r *httpexpect.Request) *httpexpect.Request {
		switch where {
		case "the query":
			return r.WithQuery("apikey", st.apiKey)
		case "a Bearer header":
			return r.WithHeader("Authorization", "Bearer "+st.apiKey)
		case "an ApiKey header":
			return r.WithHeader("Authorization", "ApiKey "+st.apiKey)
		case "a lower-case bearer header":
			return r.WithHeader("Authorization", "bearer "+st.apiKey)
		case "an upper-case APIKEY header":
			return r.WithHeader("Authorization", "APIKEY "+st.apiKey)
		case "a Basic header":
			return r.WithHeader("Authorization", "Basic "+st.apiKey)
		case "the wrong key in the query":
			return r.WithQuery("apikey", wrong)
		case "the wrong key in a header", "the wrong key in a Bearer header":
			return r.WithHeader("Authorization", "Bearer "+wrong)
		case "the wrong key in an ApiKey header":
			return r.WithHeader("Authorization", "ApiKey "+wrong)
		case "the wrong key in a lower-case bearer header":
			return r.WithHeader("Authorization", "bearer "+wrong)
		case "the wrong key in an upper-case APIKEY header":
			return r.WithHeader("Authorization", "APIKEY "+wrong)
		case "the wrong key in a lower-case apikey header":
			return r.WithHeader("Authorization", "apikey "+wrong)
		}
		return r // no key
	})
}

func callWithBody(ctx context.Context, method, path string, doc *godog.DocString) error {
	st := scenarioOf(ctx)
	body, err := st.expand(doc.Content)
	if err != nil {
		return err
	}
	return st.call(method, path, []byte(body), st.authed)
}

func callWithHugeBody(ctx context.Context, method, path string, mib int) error {
	st := scenarioOf(ctx)
	var b bytes.Buffer
	b.WriteString(`{"status": "`)
	b.Write(bytes.Repeat([]byte("x"), mib<<20))
	b.WriteString(`"}`)
	return st.call(method, path, b.Bytes(), st.authed)
}

// needLast is the first thing every step about "the answer" does: there
// must be one, and if it carried device objects they must be whole (their
// problems, found when the answer arrived, fail the step that looks at it).
// padMark is where callWithPaddedBody pads the body.
const padMark = "…"

// callWithPaddedBody sends body with its padMark replaced by as many "x"
// as make the whole body exactly mib MiB, or one byte more (BODY-1's
// boundary: up to 10 MiB is read and judged on its content, more is 413).
func callWithPaddedBody(ctx context.Context, method, path, body string, mib int, plusOne string) error {
	st := scenarioOf(ctx)
	b, err := st.expand(body)
	if err != nil {
		return err
	}
	if strings.Count(b, padMark) != 1 {
		return fmt.Errorf("body %s: want exactly one %s where the padding goes", b, padMark)
	}
	size := mib << 20
	if plusOne != "" {
		size++
	}
	pad := size - (len(b) - len(padMark))
	if pad < 0 {
		return fmt.Errorf("body %s is longer than %d bytes already", b, size)
	}
	full := strings.Replace(b, padMark, strings.Repeat("x", pad), 1)
	if len(full) != size {
		return fmt.Errorf("padded body has %d bytes, want %d", len(full), size)
	}
	return st.call(method, path, []byte(full), st.authed)
}

func answerIsEither(ctx context.Context, a, b int) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	raw := st.last.Raw()
	if raw == nil {
		return fmt.Errorf("%s %s: no answer, want %d or %d", st.lastMethod, st.lastPath, a, b)
	}
	if got := raw.StatusCode; got != a && got != b {
		return fmt.Errorf("%s %s: got %d %q, want %d or %d", st.lastMethod, st.lastPath, got, preview(st.lastBody), a, b)
	}
	return nil
}

func (st *scenario) needLast() error {
	if st.last == nil {
		return errors.New("no request was made in this scenario")
	}
	if len(st.lastDeviceProbs) > 0 {
		return errors.New(strings.Join(st.lastDeviceProbs, "\n"))
	}
	return nil
}

func answerIs(ctx context.Context, status int) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	st.last.Status(status)
	return nil
}

func answerIsText(ctx context.Context, status int, text string) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	st.last.Status(status)
	return st.checkText(st.lastMethod+" "+st.lastPath, status, string(st.lastBody), text)
}

// checkText is the one check of an answer's quoted text. A success answer's
// text (200 "OK" of /ping) is checked everywhere. An error answer's exact
// message is ERR-2, reference tier: in a @reference scenario it must equal
// text; in a contract-tier scenario any non-empty message will do
// (CONTRACT.md "Latitude").
func (st *scenario) checkText(what string, status int, body, text string) error {
	got := strings.TrimRight(body, "\r\n")
	switch {
	case status < 400 || st.reference:
		if got != text {
			return fmt.Errorf("%s: got body %q, want %q", what, got, text)
		}
	case strings.TrimSpace(got) == "":
		return fmt.Errorf("%s: got an empty body, want an error message", what)
	}
	return nil
}

func answerIsJSON(ctx context.Context, status int, doc *godog.DocString) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	want, err := st.decodeJSON(doc.Content)
	if err != nil {
		return err
	}
	st.last.Status(status)
	st.last.JSON().IsEqual(want)
	return nil
}

func (st *scenario) decodeJSON(s string) (any, error) {
	s, err := st.expand(s)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, arrange(fmt.Errorf("the scenario's JSON %q: %w", s, err))
	}
	return v, nil
}

func answerIsPlainText(ctx context.Context) error {
	return answerContentType(ctx, "text/plain")
}

func answerContentType(ctx context.Context, want string) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	ct := st.last.Raw().Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		return fmt.Errorf("%s %s: got Content-Type %q, want %s", st.lastMethod, st.lastPath, ct, want)
	}
	return nil
}

func answerLacksKey(ctx context.Context, which string) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	key := st.apiKey
	if which == "the wrong key" {
		key = "wrong-" + st.apiKey[:8]
	}
	var hdr strings.Builder
	_ = st.last.Raw().Header.Write(&hdr)
	if strings.Contains(string(st.lastBody), key) || strings.Contains(hdr.String(), key) {
		return fmt.Errorf("%s %s: the answer contains %s", st.lastMethod, st.lastPath, which)
	}
	return nil
}

func answerFieldsEqual(ctx context.Context, a, b string) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	obj := st.last.JSON().Object()
	obj.ContainsKey(a)
	obj.ContainsKey(b)
	if st.rep.err() != nil {
		return nil
	}
	obj.Value(a).IsEqual(obj.Value(b).Raw())
	return nil
}

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
	st := scenarioOf(ctx)
	a, err := st.app(appName)
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
	st := scenarioOf(ctx)
	da, err := st.device(a)
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
func (st *scenario) fieldTable(t *godog.Table) (map[string]any, []string, error) {
	out := map[string]any{}
	var order []string
	for i, row := range t.Rows {
		if i == 0 {
			continue
		}
		if len(row.Cells) != 2 {
			return nil, nil, fmt.Errorf("table row %d: want | field | value |", i)
		}
		v, err := st.decodeJSON(row.Cells[1].Value)
		if err != nil {
			return nil, nil, err
		}
		out[row.Cells[0].Value] = v
		order = append(order, row.Cells[0].Value)
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
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	want, order, err := st.fieldTable(t)
	if err != nil {
		return err
	}
	checkFields(st.getDevice(st.api(), d), want, order)
	return nil
}

func eventuallyShowsDevice(ctx context.Context, alias string, t *godog.Table) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	want, order, err := st.fieldTable(t)
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

func deviceHasContractFields(ctx context.Context, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	obj := st.getDevice(st.api(), d)
	if st.rep.err() != nil {
		return nil
	}
	if probs := checkDeviceShape(obj.Raw(), st.reference); len(probs) > 0 {
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
	st := scenarioOf(ctx)
	d, err := st.device(alias)
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
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	obj := st.getDevice(st.api(), d)
	if err := st.rep.err(); err != nil {
		return err
	}
	m := obj.Raw()
	if m["targetCommit"] == nil {
		return fmt.Errorf("device %s has no target commit to report", alias)
	}
	st.put(d, map[string]any{"commit": m["targetCommit"], "environment": m["targetEnvironment"], "config": m["targetConfig"]})
	return nil
}

type logRow struct {
	device    *deviceState
	message   string
	timestamp int64
	isSystem  bool
}

func (st *scenario) logTable(t *godog.Table) ([]logRow, error) {
	var rows []logRow
	for i, r := range t.Rows {
		if i == 0 {
			continue
		}
		if len(r.Cells) != 4 {
			return nil, fmt.Errorf("log table row %d: want | device | message | timestamp | isSystem |", i)
		}
		d, err := st.device(r.Cells[0].Value)
		if err != nil {
			return nil, err
		}
		ts, err := strconv.ParseInt(r.Cells[2].Value, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("log table row %d: %w", i, err)
		}
		rows = append(rows, logRow{d, r.Cells[1].Value, ts, r.Cells[3].Value == "true"})
	}
	return rows, nil
}

func sendLogLines(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	rows, err := st.logTable(t)
	if err != nil {
		return err
	}
	for _, r := range rows {
		st.authed(st.api().POST("/v1/devices/" + r.device.uuid + "/logs")).
			WithJSON(map[string]any{"message": r.message, "timestamp": r.timestamp, "isSystem": r.isSystem}).
			Expect().Status(http.StatusAccepted)
	}
	return nil
}

func sendLogLineNow(ctx context.Context, msg, alias string) error {
	st := scenarioOf(ctx)
	d, err := st.device(alias)
	if err != nil {
		return err
	}
	before := nowMillis()
	st.authed(st.api().POST("/v1/devices/" + d.uuid + "/logs")).WithJSON(map[string]any{"message": msg}).
		Expect().Status(http.StatusAccepted)
	if st.logSent == nil {
		st.logSent = map[string][2]int64{}
	}
	st.logSent[msg] = [2]int64{before, nowMillis()}
	return nil
}

func (st *scenario) appsList(e *httpexpect.Expect) *httpexpect.Array {
	return st.authed(e.GET("/v1/dependent-apps")).Expect().Status(http.StatusOK).JSON().Array()
}

func eventuallyListsRelease(ctx context.Context, release, appName string) error {
	st := scenarioOf(ctx)
	r, err := st.release(release)
	if err != nil {
		return err
	}
	if r.app.name != appName {
		return fmt.Errorf("release %s belongs to app %s, not %s", release, r.app.name, appName)
	}
	return st.eventually(ctx, func(e *httpexpect.Expect, fail failFunc) {
		arr := st.appsList(e)
		found := false
		for _, v := range arr.Raw() {
			if m, ok := v.(map[string]any); ok && m["id"] == float64(r.app.id) && m["commit"] == r.commit {
				found = true
			}
		}
		if !found {
			fail("GET /v1/dependent-apps: got %v, want app %d at commit %s", arr.Raw(), r.app.id, r.commit)
		}
	})
}

func appsListIs(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	var want []any
	for i, row := range t.Rows {
		if i == 0 {
			continue
		}
		a, err := st.app(row.Cells[0].Value)
		if err != nil {
			return err
		}
		r, err := st.release(row.Cells[1].Value)
		if err != nil {
			return err
		}
		cfg, err := st.decodeJSON(row.Cells[2].Value)
		if err != nil {
			return err
		}
		want = append(want, map[string]any{"id": a.id, "name": a.name, "commit": r.commit, "config": cfg})
	}
	arr := st.appsList(st.api())
	if st.rep.err() != nil {
		return nil
	}
	// App objects may carry additional fields (CONTRACT.md "Latitude"):
	// each is judged on the four fields of APP-LIST-1.
	var got []any
	for _, v := range arr.Raw() {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("GET /v1/dependent-apps: element %v is not an object", v)
		}
		p := map[string]any{}
		for _, k := range []string{"id", "name", "commit", "config"} {
			if x, ok := m[k]; ok {
				p[k] = x
			}
		}
		got = append(got, p)
	}
	wantJSON, _ := json.Marshal(want)
	var wantNorm []any
	_ = json.Unmarshal(wantJSON, &wantNorm)
	if !sameElements(got, wantNorm) {
		gotJSON, _ := json.Marshal(got)
		return fmt.Errorf("GET /v1/dependent-apps (their id, name, commit and config): got %s, want exactly %s in any order", gotJSON, wantJSON)
	}
	return nil
}

// sameElements reports whether a and b hold the same elements, any order.
func sameElements(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
next:
	for _, x := range a {
		for i, y := range b {
			if !used[i] && reflect.DeepEqual(x, y) {
				used[i] = true
				continue next
			}
		}
		return false
	}
	return true
}

// readTar returns the regular files of a tar by member name, and checks
// the names against APP-ASSET-1.
func readTar(b []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the tar: %w", err)
		}
		name := h.Name
		if strings.HasPrefix(name, "/") || strings.HasPrefix(strings.TrimPrefix(name, "./"), "assets/") {
			return nil, fmt.Errorf("tar member %q: names must be relative to /assets", name)
		}
		name = strings.TrimPrefix(name, "./")
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading tar member %q: %w", name, err)
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("tar member %q appears twice", name)
		}
		files[name] = data
	}
}

func (st *scenario) compareTar(what string, b []byte, t *godog.Table) error {
	want, err := filesTable(t)
	if err != nil {
		return err
	}
	got, err := readTar(b)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return diffFiles(what, got, want)
}

func diffFiles(what string, got, want map[string][]byte) error {
	var probs []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			probs = append(probs, "missing "+name)
		case !bytes.Equal(g, w):
			probs = append(probs, fmt.Sprintf("%s: got %d bytes %s, want %d bytes %s", name, len(g), preview(g), len(w), preview(w)))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			probs = append(probs, "unexpected "+name)
		}
	}
	if len(probs) > 0 {
		sort.Strings(probs)
		return fmt.Errorf("%s: %s", what, strings.Join(probs, "; "))
	}
	return nil
}

func preview(b []byte) string {
	if len(b) > 24 {
		return fmt.Sprintf("%q…", b[:24])
	}
	return fmt.Sprintf("%q", b)
}

func assetsAre(ctx context.Context, appName, release string, t *godog.Table) error {
	st := scenarioOf(ctx)
	r, err := st.release(release)
	if err != nil {
		return err
	}
	if r.app.name != appName {
		return fmt.Errorf("release %s belongs to app %s, not %s", release, r.app.name, appName)
	}
	if err := st.call("GET", fmt.Sprintf("/v1/dependent-apps/%d/assets/%s", r.app.id, r.commit), nil, st.authed); err != nil {
		return err
	}
	st.last.Status(http.StatusOK)
	if err := st.rep.err(); err != nil {
		return err
	}
	if err := answerContentType(ctx, "application/x-tar"); err != nil {
		return err
	}
	return st.compareTar("GET "+st.lastPath, st.lastBody, t)
}

func answerIsTar(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	return st.compareTar(st.lastMethod+" "+st.lastPath, st.lastBody, t)
}

func answerHasETag(ctx context.Context) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	st.etag = st.last.Raw().Header.Get("ETag")
	if st.etag == "" {
		return fmt.Errorf("%s %s: no ETag header", st.lastMethod, st.lastPath)
	}
	st.fullTar = st.lastBody
	return nil
}

func askIfNoneMatch(ctx context.Context) error {
	st := scenarioOf(ctx)
	if st.etag == "" {
		return errors.New("no ETag was seen in this scenario")
	}
	return st.call("GET", st.lastPath, nil, func(r *httpexpect.Request) *httpexpect.Request {
		return st.authed(r).WithHeader("If-None-Match", st.etag)
	})
}

func askRange(ctx context.Context, from, to int) error {
	st := scenarioOf(ctx)
	if st.fullTar == nil {
		return errors.New("no full answer was seen in this scenario")
	}
	return st.call("GET", st.lastPath, nil, func(r *httpexpect.Request) *httpexpect.Request {
		return st.authed(r).WithHeader("Range", fmt.Sprintf("bytes=%d-%d", from, to))
	})
}

var rangeRe = regexp.MustCompile(`^bytes=(\d+)-(\d+)$`)

func answerIsRange(ctx context.Context) error {
	st := scenarioOf(ctx)
	if err := st.needLast(); err != nil {
		return err
	}
	st.last.Status(http.StatusPartialContent)
	if err := st.rep.err(); err != nil {
		return err
	}
	m := rangeRe.FindStringSubmatch(st.last.Raw().Request.Header.Get("Range"))
	if m == nil {
		return errors.New("the last request asked for no range")
	}
	from, _ := strconv.Atoi(m[1])
	to, _ := strconv.Atoi(m[2])
	if to >= len(st.fullTar) {
		return fmt.Errorf("the full tar has only %d bytes", len(st.fullTar))
	}
	want := st.fullTar[from : to+1]
	if !bytes.Equal(st.lastBody, want) {
		return fmt.Errorf("range %d-%d: got %d bytes that differ from the full tar's %d bytes there", from, to, len(st.lastBody), len(want))
	}
	cr := st.last.Raw().Header.Get("Content-Range")
	if wantCR := fmt.Sprintf("bytes %d-%d/%d", from, to, len(st.fullTar)); cr != wantCR {
		return fmt.Errorf("got Content-Range %q, want %q", cr, wantCR)
	}
	return nil
}

func askAssetsAtOnce(ctx context.Context, appName, release string, n int) error {
	st := scenarioOf(ctx)
	r, err := st.release(release)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/v1/dependent-apps/%d/assets/%s", r.app.id, r.commit)
	e := st.api()
	st.parallel = make([]*httpexpect.Response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st.parallel[i] = st.authed(e.GET(path)).Expect()
		}()
	}
	close(start)
	wg.Wait()
	st.lastPath = path
	return nil
}

func everyAnswerIsTar(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	if len(st.parallel) == 0 {
		return errors.New("no requests at once were made in this scenario")
	}
	var first []byte
	for i, resp := range st.parallel {
		resp.Status(http.StatusOK)
		body := []byte(resp.Body().Raw())
		if err := st.rep.err(); err != nil {
			return err
		}
		if i == 0 {
			first = body
			if err := st.compareTar(fmt.Sprintf("answer %d of GET %s", i+1, st.lastPath), body, t); err != nil {
				return err
			}
		} else if !bytes.Equal(body, first) {
			return fmt.Errorf("answer %d of GET %s differs from the first (%d bytes, want %d)", i+1, st.lastPath, len(body), len(first))
		}
	}
	return nil
}
