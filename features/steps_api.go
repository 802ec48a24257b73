package features

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"strings"

	"github.com/cucumber/godog"
	"github.com/gavv/httpexpect/v2"
)

// Steps that speak to the supervisor's API as the gateway app does.

var uuidRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func registerAPISteps(sc stepper) {
	sc.Step(stepExpr(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)"$`), callWithKey)
	sc.Step(stepExpr(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with the key in (the query|a Bearer header|an ApiKey header|a lower-case bearer header|an upper-case APIKEY header|a Basic header)$`), callWithKeyIn)
	sc.Step(stepExpr(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with (no key|the wrong key in (?:the query|a header|a Bearer header|an ApiKey header|a lower-case bearer header|an upper-case APIKEY header|a lower-case apikey header))$`), callWithKeyIn)
	sc.Step(stepExpr(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with body:$`), callWithBody)
	sc.Step(stepExpr(`^the gateway app calls (GET|POST|PUT|DELETE) "([^"]*)" with a JSON body of (\d+) MiB$`), callWithHugeBody)
	sc.Step(stepExpr(`^the gateway app calls (POST|PUT) "([^"]*)" with the body (.+) padded to (\d+) MiB( and one byte)?$`), callWithPaddedBody)

	sc.Step(stepExpr(`^the answer is (\d{3})$`), answerIs)
	sc.Step(stepExpr(`^the answer is (\d{3}) or (\d{3})$`), answerIsEither)
	sc.Step(stepExpr(`^the answer is (\d{3}) "([^"]*)"$`), answerIsText)
	sc.Step(stepExpr(`^the answer is (\d{3}) with JSON:$`), answerIsJSON)
	sc.Step(stepExpr(`^the answer is plain text$`), answerIsPlainText)
	sc.Step(stepExpr(`^the answer's Content-Type is "([^"]*)"$`), answerContentType)
	sc.Step(stepExpr(`^the answer does not contain (the wrong key|the API key)$`), answerLacksKey)
	sc.Step(stepExpr(`^the answer's "([^"]*)" equals its "([^"]*)"$`), answerFieldsEqual)
	sc.Step(stepExpr(`^GET "([^"]*)" answers (\d{3})$`), getAnswers)
	sc.Step(stepExpr(`^GET "([^"]*)" answers (\d{3}) "([^"]*)"$`), getAnswersText)
	sc.Step(stepExpr(`^the supervisor eventually answers GET "([^"]*)" with (\d{3})$`), eventuallyGetAnswers)
	sc.Step(stepExpr(`^the supervisor eventually answers GET "([^"]*)" with (\d{3}) "([^"]*)"$`), eventuallyGetAnswersText)

	sc.Step(stepExpr(`^a device "([^"]*)" of "([^"]*)" provisioned through the supervisor$`), provisionDevice)
	sc.Step(stepExpr(`^the answer is a provisioned device "([^"]*)" of type "([^"]*)"$`), answerIsProvisionedDevice)
	sc.Step(stepExpr(`^devices "([^"]*)" and "([^"]*)" have different uuids$`), differentUUIDs)
	sc.Step(stepExpr(`^the device list is empty$`), deviceListEmpty)
	sc.Step(stepExpr(`^the device list is eventually empty$`), deviceListEventuallyEmpty)
	sc.Step(stepExpr(`^the device list holds exactly ((?:"[^"]+"(?:, | and )?)+)$`), deviceListHolds)
	sc.Step(stepExpr(`^the supervisor shows device "([^"]*)" with:$`), showsDevice)
	sc.Step(stepExpr(`^the supervisor eventually shows device "([^"]*)" with:$`), eventuallyShowsDevice)
	sc.Step(stepExpr(`^the answer is the device object of "([^"]*)" with:$`), answerIsDevice)
	sc.Step(stepExpr(`^the device object of "([^"]*)" has the contract's fields and types$`), deviceHasContractFields)
	sc.Step(stepExpr(`^every device in the device list has the contract's fields and types$`), everyDeviceHasContractFields)

	sc.Step(stepExpr(`^the gateway app reports for "([^"]*)":$`), reportFor)
	sc.Step(stepExpr(`^the gateway app reports the target of "([^"]*)"$`), reportTarget)
	sc.Step(stepExpr(`^the gateway app sends these log lines:$`), sendLogLines)
	sc.Step(stepExpr(`^the gateway app sends the log line "([^"]*)" for "([^"]*)" without a timestamp$`), sendLogLineNow)

	sc.Step(stepExpr(`^the supervisor has downloaded release "([^"]*)" of "([^"]*)"$`), eventuallyListsRelease)
	sc.Step(stepExpr(`^the supervisor eventually lists release "([^"]*)" of "([^"]*)"$`), eventuallyListsRelease)
	sc.Step(stepExpr(`^the dependent apps list is exactly:$`), appsListIs)
	sc.Step(stepExpr(`^the assets of "([^"]*)" at release "([^"]*)" are exactly:$`), assetsAre)
	sc.Step(stepExpr(`^the answer is a tar holding exactly:$`), answerIsTar)
	sc.Step(stepExpr(`^the answer has an ETag$`), answerHasETag)
	sc.Step(stepExpr(`^the gateway app asks for the same assets again with If-None-Match set to that ETag$`), askIfNoneMatch)
	sc.Step(stepExpr(`^the gateway app asks for bytes (\d+)-(\d+) of the same assets$`), askRange)
	sc.Step(stepExpr(`^the answer is 206 holding exactly those bytes of the full tar$`), answerIsRange)
	sc.Step(stepExpr(`^the gateway app asks for the assets of "([^"]*)" at release "([^"]*)" (\d+) times at once$`), askAssetsAtOnce)
	sc.Step(stepExpr(`^every answer is 200 with the same tar holding exactly:$`), everyAnswerIsTar)
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
