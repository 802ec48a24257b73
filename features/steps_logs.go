package features

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/cucumber/godog"
)

// Steps that send device log lines (POST /v1/devices/{uuid}/logs).

type logRow struct {
	device    *deviceState
	message   string
	timestamp int64
	isSystem  bool
}

func (st *scenario) logTable(t *godog.Table) ([]logRow, error) {
	var rows []logRow
	err := eachRow(t, "log", []string{"device", "message", "timestamp", "isSystem"}, func(i int, c []string) error {
		d, err := st.device(c[0])
		if err != nil {
			return err
		}
		ts, err := strconv.ParseInt(c[2], 10, 64)
		if err != nil {
			return fmt.Errorf("log table row %d: %w", i, err)
		}
		rows = append(rows, logRow{d, c[1], ts, c[3] == "true"})
		return nil
	})
	if err != nil {
		return nil, err
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
	st, d, err := deviceOf(ctx, alias)
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
