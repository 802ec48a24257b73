package httpapi

import (
	"bytes"
	"context"
	"strconv"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/store"
)

// Helpers of deliberate violations (self-check only): each turns a correct
// answer into the broken one its violation names.

// appIDAsString rewrites the "appId":<n> member of an encoded device object
// as a JSON string (the put-reply-appid-string violation).
func appIDAsString(obj []byte, appID int64) []byte {
	num := []byte(`"appId":` + strconv.FormatInt(appID, 10) + `,`)
	str := []byte(`"appId":"` + strconv.FormatInt(appID, 10) + `",`)
	return bytes.Replace(obj, num, str, 1)
}

// devicePatcher is the cloud client's PATCH of a device, which the
// put-cloud-fail-500 violation calls from the request.
type devicePatcher interface {
	PatchDevice(ctx context.Context, id int64, patch cloud.DevicePatch) error
}

// patchNow sends rep's cloud fields to the cloud at once, as the historical
// Supervisor did (the put-cloud-fail-500 violation). A report without cloud
// fields, or a Cloud that cannot patch, sends nothing.
func (h *Handler) patchNow(ctx context.Context, cloudID int64, rep store.Report) error {
	pc, ok := h.opts.Cloud.(devicePatcher)
	if !ok || (rep.Status == nil && rep.IsOnline == nil && rep.Commit == nil) {
		return nil
	}
	return pc.PatchDevice(ctx, cloudID, cloud.DevicePatch{Status: rep.Status, IsOnline: rep.IsOnline, IsOnCommit: rep.Commit})
}
