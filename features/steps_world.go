package features

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/ctxtime"
)

// Steps that arrange the world (cloud, registry) and run the supervisor.

func registerWorldSteps(sc stepper) {
	sc.Step(stepExpr(`^the supervisor is running$`), supervisorRunning)
	sc.Step(stepExpr(`^the supervisor is (stopped|killed) and started again$`), supervisorRestarted)
	sc.Step(stepExpr(`^the supervisor is restarted with the new hook address$`), supervisorRestartedForHooks)
	sc.Step(stepExpr(`^the supervisor has waited (\d+) poll intervals$`), waitPolls)
	sc.Step(stepExpr(`^the supervisor has fetched its target twice more$`), fetchedTwiceMore)
	sc.Step(stepExpr(`^the supervisor's output never contains the API key$`), outputLacksKey)

	sc.Step(stepExpr(`^a dependent app "([^"]*)" with a release "([^"]*)" holding files:$`), appWithFiles)
	sc.Step(stepExpr(`^a dependent app "([^"]*)" with a release "([^"]*)" built from layers:$`), appWithLayers)
	sc.Step(stepExpr(`^a dependent app "([^"]*)" without a release$`), appWithoutRelease)
	sc.Step(stepExpr(`^a dependent app "([^"]*)" of another gateway$`), appOfOtherGateway)
	sc.Step(stepExpr(`^another gateway with a dependent app "([^"]*)"$`), appOfOtherGateway)
	sc.Step(stepExpr(`^a release "([^"]*)" of "([^"]*)" holding files is pushed:$`), pushFiles)
	sc.Step(stepExpr(`^app "([^"]*)" has (environment|config) variable "([^"]*)" set to "([^"]*)"$`), setAppVar)
	sc.Step(stepExpr(`^device "([^"]*)" has (environment|config) variable "([^"]*)" set to "([^"]*)"$`), setDeviceVar)
	sc.Step(stepExpr(`^a device "([^"]*)" of "([^"]*)" created in the cloud for this gateway$`), createCloudDevice)
	sc.Step(stepExpr(`^device "([^"]*)" is deleted in the cloud$`), deleteCloudDevice)
	sc.Step(stepExpr(`^device "([^"]*)" is moved to app "([^"]*)" of the other gateway$`), moveToOther)
	sc.Step(stepExpr(`^device "([^"]*)" is moved back to app "([^"]*)" of this gateway$`), moveBack)
	sc.Step(stepExpr(`^app "([^"]*)" is removed from the gateway$`), removeApp)
	sc.Step(stepExpr(`^a restart of "([^"]*)" is requested in the cloud$`), requestRestart)

	sc.Step(stepExpr(`^the cloud is unreachable$`), cloudUnreachable)
	sc.Step(stepExpr(`^the cloud is reachable again$`), cloudReachable)
	sc.Step(stepExpr(`^the cloud answers every request with (\d{3})$`), cloudFailsAll)
	sc.Step(stepExpr(`^the supervisor has tried to send status "([^"]*)" of "([^"]*)" to the unreachable cloud$`), triedPatchDuringOutage)
	sc.Step(stepExpr(`^the cloud fails the next (\d+) state requests with (\d{3})$`), cloudFailsState)
	sc.Step(stepExpr(`^the cloud has device "([^"]*)" in app "([^"]*)", managed by this gateway, of type "([^"]*)"$`), cloudHasDevice)
	sc.Step(stepExpr(`^the cloud eventually has device "([^"]*)" with:$`), cloudEventuallyHasDevice)
	sc.Step(stepExpr(`^the cloud eventually has device "([^"]*)", and keeps for (\d+) retry intervals?, with:$`), cloudEventuallyKeepsDevice)
	sc.Step(stepExpr(`^the cloud's device "([^"]*)" has no environment variable "([^"]*)"$`), cloudDeviceLacksEnv)
	sc.Step(stepExpr(`^the cloud eventually received exactly these log lines:$`), cloudReceivedLogs)
	sc.Step(stepExpr(`^the cloud eventually received the log line "([^"]*)" for "([^"]*)" stamped with the time it was sent$`), cloudReceivedStampedLog)
	sc.Step(stepExpr(`^the supervisor revalidated the target state with If-None-Match and got 304$`), revalidatedState)
	sc.Step(stepExpr(`^every request to the cloud carried the gateway's key$`), everyCloudRequestAuthed)
	sc.Step(stepExpr(`^the cloud saw no request it did not understand$`), noBadCloudRequests)
	sc.Step(stepExpr(`^the supervisor looked up device "([^"]*)" in the cloud by uuid$`), lookedUpDevice)

	sc.Step(stepExpr(`^the registry is unreachable$`), registryUnreachable)
	sc.Step(stepExpr(`^the registry is reachable again$`), registryReachable)
	sc.Step(stepExpr(`^the registry serves blobs slowly$`), registrySlow)
	sc.Step(stepExpr(`^the registry fails the next (\d+) blob requests with (\d{3})$`), registryFailsBlobs)
}

func supervisorRunning(ctx context.Context) error {
	st := scenarioOf(ctx)
	st.logf("starting the supervisor")
	err := startVerdict(st.target.Start(ctx, st.env()))
	st.readyAt = time.Now()
	return err
}

func supervisorRestarted(ctx context.Context, how string) error {
	st := scenarioOf(ctx)
	st.logf("supervisor %s, then started again", how)
	st.restartedAt = time.Now()
	var err error
	if how == "killed" {
		err = st.target.Kill()
	} else {
		err = st.target.Stop(ctx)
	}
	if err != nil {
		return err
	}
	// Not starting again, or not getting ready, is a harness failure unless
	// /ping answers otherwise than 200 (startVerdict).
	err = startVerdict(st.target.Start(ctx, st.env()))
	st.readyAt = time.Now()
	return err
}

// startVerdict classifies a failed start: a target that answers GET /ping
// with another status than 200 breaks AUTH-3 (an assertion); any other
// failure to start or get ready is the harness's (a HarnessError).
func startVerdict(err error) error {
	var pr *PingRefusedError
	if errors.As(err, &pr) {
		return err
	}
	return arrange(err)
}

func supervisorRestartedForHooks(ctx context.Context) error {
	return supervisorRestarted(ctx, "stopped")
}

func waitPolls(ctx context.Context, n int) error {
	st := scenarioOf(ctx)
	return ctxtime.Sleep(ctx, time.Duration(n)*st.cfg.Timing.Poll)
}

func fetchedTwiceMore(ctx context.Context) error {
	st := scenarioOf(ctx)
	after := st.world.Cloud.RequestSeq()
	actx, cancel := st.awaitCtx(ctx)
	defer cancel()
	n := 0
	err := st.world.Cloud.Await(actx, func(v *cloud.View) bool {
		n = 0
		for _, r := range v.Requests(after) {
			if r.Route == cloud.RouteState && r.Gateway == st.gateway.UUID && (r.Status == 200 || r.Status == 304) {
				n++
			}
		}
		return n >= 2
	})
	if err != nil {
		return fmt.Errorf("the supervisor fetched its target state %d times, want 2: %w", n, err)
	}
	return nil
}

func outputLacksKey(ctx context.Context) error {
	st := scenarioOf(ctx)
	// The target's output reaches the harness through a pipe copied by
	// another goroutine: give a line written before the last answer half a
	// second to arrive, then look again.
	for i := 0; i < 2; i++ {
		if strings.Contains(st.targetOut.String(), st.apiKey) {
			return errors.New("the supervisor's output contains its API key")
		}
		if i == 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

func setAppVar(ctx context.Context, appName, kind, name, value string) error {
	st, a, err := appOf(ctx, appName)
	if err != nil {
		return err
	}
	return setVar(st, a.id, kind, name, value, st.world.Cloud.SetAppEnv, st.world.Cloud.SetAppConfig)
}

func setDeviceVar(ctx context.Context, alias, kind, name, value string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	return setVar(st, d.uuid, kind, name, value, st.world.Cloud.SetDeviceEnv, st.world.Cloud.SetDeviceConfig)
}

// setVar sets one variable of id in the cloud, through env or config as
// kind says, and notes the target change.
func setVar[ID any](st *scenario, id ID, kind, name, value string, env, config func(ID, map[string]string) error) error {
	set := config
	if kind == "environment" {
		set = env
	}
	defer st.noteTargetChange(time.Now())
	return arrange(set(id, map[string]string{name: value}))
}

func createCloudDevice(ctx context.Context, alias, appName string) error {
	st, a, err := appOf(ctx, appName)
	if err != nil {
		return err
	}
	d, err := st.world.Cloud.CreateDevice(cloud.DeviceSpec{AppID: a.id, Gateway: st.gateway.UUID})
	if err != nil {
		return arrange(fmt.Errorf("creating device %s in the cloud: %w", alias, err))
	}
	return st.addDevice(alias, d.UUID, d.ID, a)
}

func deleteCloudDevice(ctx context.Context, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	return arrange(st.world.Cloud.DeleteDevice(d.uuid))
}

func moveToOther(ctx context.Context, alias, appName string) error {
	st, d, a, err := deviceAndOf(ctx, alias, (*scenario).app, appName)
	if err != nil {
		return err
	}
	if st.other == nil {
		return arrange(errors.New("no other gateway in this scenario"))
	}
	return arrange(st.world.Cloud.MoveDevice(d.uuid, a.id, st.other.UUID))
}

func moveBack(ctx context.Context, alias, appName string) error {
	st, d, a, err := deviceAndOf(ctx, alias, (*scenario).app, appName)
	if err != nil {
		return err
	}
	return arrange(st.world.Cloud.MoveDevice(d.uuid, a.id, st.gateway.UUID))
}

func removeApp(ctx context.Context, appName string) error {
	st, a, err := appOf(ctx, appName)
	if err != nil {
		return err
	}
	return arrange(st.world.Cloud.DeleteApp(a.id))
}

func requestRestart(ctx context.Context, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	n, err := st.world.Cloud.RestartDevice(d.uuid)
	st.logf("restart of %s requested (counter %d)", alias, n)
	return arrange(err)
}

func cloudUnreachable(ctx context.Context) error {
	return arrange(scenarioOf(ctx).world.Cloud.Outage(cloud.OutageClose))
}

func cloudReachable(ctx context.Context) error {
	scenarioOf(ctx).world.Cloud.ResetFaults()
	return nil
}

func cloudFailsAll(ctx context.Context, status int) error {
	return arrange(scenarioOf(ctx).world.Cloud.FailNext(cloud.RouteAll, 1<<30, status))
}

// triedPatchDuringOutage waits until a PATCH of the device carrying status
// met the outage, so that what the supervisor does with an update the cloud
// could not take is what the scenario then sees (a supervisor that tried an
// update only once the cloud was back would hide one that it drops).
func triedPatchDuringOutage(ctx context.Context, status, alias string) error {
	st, d, err := deviceOf(ctx, alias)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/v6/device(%d)", d.cloudID)
	actx, cancel := st.awaitCtx(ctx)
	defer cancel()
	err = st.world.Cloud.Await(actx, func(v *cloud.View) bool {
		for _, r := range v.Requests(0) {
			if r.Route != cloud.RoutePatch || r.Fault != "outage" || !strings.HasPrefix(r.Path, path) {
				continue
			}
			var p struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(r.Body, &p) == nil && p.Status == status {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("no PATCH of %s with status %q reached the unreachable cloud: %w", alias, status, err)
	}
	return nil
}

func cloudFailsState(ctx context.Context, n, status int) error {
	return arrange(scenarioOf(ctx).world.Cloud.FailNext(cloud.RouteState, n, status))
}

func registryUnreachable(ctx context.Context) error {
	r := scenarioOf(ctx).world.Registry
	r.Fail(registry.KindManifest, 503)
	r.Fail(registry.KindBlob, 503)
	return nil
}

func registryReachable(ctx context.Context) error {
	scenarioOf(ctx).world.Registry.Heal()
	return nil
}

func registrySlow(ctx context.Context) error {
	scenarioOf(ctx).world.Registry.Throttle(200_000)
	return nil
}

func registryFailsBlobs(ctx context.Context, n, status int) error {
	scenarioOf(ctx).world.Registry.FailNext(registry.KindBlob, n, status)
	return nil
}
