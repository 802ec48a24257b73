package outbox

import (
	"context"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// commitKeptLocal is the Cloud of an outbox under the violation
// put-commit-not-sent (self-check only): device patches reach the cloud
// without is_on__commit, and a patch that carried nothing else is taken as
// delivered without being sent. The store keeps the reported commit.
type commitKeptLocal struct{ Cloud }

func (c commitKeptLocal) PatchDevice(ctx context.Context, id int64, p cloudapi.DevicePatch) error {
	p.IsOnCommit = nil
	if p == (cloudapi.DevicePatch{}) {
		return nil
	}
	return c.Cloud.PatchDevice(ctx, id, p)
}
