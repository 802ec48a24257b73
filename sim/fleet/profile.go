package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string
// ("1.5s", "200ms").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"1.5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Distribution names of Dist.
const (
	DistFixed   = "fixed"
	DistUniform = "uniform"
	DistNormal  = "normal"
)

// Dist is a distribution of durations.
//   - "fixed" (or ""): always Mean.
//   - "uniform": uniform in [Min, Max].
//   - "normal": Mean + Stddev·N(0,1), clamped to [Min, Max] (Max zero means
//     no upper bound) and never negative.
type Dist struct {
	Dist   string   `json:"dist,omitempty"`
	Min    Duration `json:"min,omitempty"`
	Max    Duration `json:"max,omitempty"`
	Mean   Duration `json:"mean,omitempty"`
	Stddev Duration `json:"stddev,omitempty"`
}

// Validate reports a distribution that cannot be sampled.
func (d Dist) Validate() error {
	if d.Min < 0 || d.Max < 0 || d.Mean < 0 || d.Stddev < 0 {
		return errors.New("durations must not be negative")
	}
	switch d.Dist {
	case "", DistFixed:
	case DistUniform:
		if d.Max < d.Min {
			return fmt.Errorf("uniform: max %v is below min %v", time.Duration(d.Max), time.Duration(d.Min))
		}
	case DistNormal:
		if d.Max != 0 && d.Max < d.Min {
			return fmt.Errorf("normal: max %v is below min %v", time.Duration(d.Max), time.Duration(d.Min))
		}
	default:
		return fmt.Errorf("unknown distribution %q (fixed, uniform or normal)", d.Dist)
	}
	return nil
}

// Sample draws one duration from r.
func (d Dist) Sample(r *rand.Rand) time.Duration {
	switch d.Dist {
	case DistUniform:
		return time.Duration(d.Min) + time.Duration(r.Int64N(int64(d.Max-d.Min)+1))
	case DistNormal:
		v := float64(d.Mean) + float64(d.Stddev)*r.NormFloat64()
		v = math.Max(v, float64(d.Min))
		if d.Max != 0 {
			v = math.Min(v, float64(d.Max))
		}
		return time.Duration(math.Max(v, 0))
	default:
		return time.Duration(d.Mean)
	}
}

// Churn is the offline behaviour of devices: every Interval, an online
// device goes offline with Probability, and stays offline for a duration
// drawn from Duration.
type Churn struct {
	Probability float64  `json:"probability,omitempty"`
	Interval    Duration `json:"interval,omitempty"`
	Duration    Dist     `json:"duration,omitempty"`
}

// Profile declares a fleet of simulated dependent devices. It is plain data
// with JSON tags: LoadProfile reads it from a file.
type Profile struct {
	// Count is the number of devices.
	Count int `json:"count"`
	// Seed seeds every random choice of the fleet: device names and serials,
	// flash times, failures, churn, log lines. Same seed, same fleet, same
	// history. Zero is a seed like any other.
	Seed int64 `json:"seed"`
	// DeviceType, if empty, is left to the supervisor (generic-amd64).
	DeviceType string `json:"deviceType,omitempty"`
	// FlashTime is how long writing a firmware onto a device takes.
	FlashTime Dist `json:"flashTime,omitempty"`
	// FailureProbability is the chance that a flash fails although the
	// firmware is good (a flaky device); it is retried on the next update.
	FailureProbability float64 `json:"failureProbability,omitempty"`
	// Offline is the devices' churn between online and offline.
	Offline Churn `json:"offline,omitempty"`
	// LogRate is the mean number of log lines per second per online device
	// (a Poisson process); zero means no logs but system lines.
	LogRate float64 `json:"logRate,omitempty"`
	// RebootTime is how long a restart keeps a device offline.
	RebootTime Dist `json:"rebootTime,omitempty"`
}

// Validate reports an inconsistent profile.
func (p Profile) Validate() error {
	var errs []error
	if p.Count < 0 {
		errs = append(errs, fmt.Errorf("count %d is negative", p.Count))
	}
	if p.FailureProbability < 0 || p.FailureProbability > 1 {
		errs = append(errs, fmt.Errorf("failureProbability %v is not in [0, 1]", p.FailureProbability))
	}
	if p.Offline.Probability < 0 || p.Offline.Probability > 1 {
		errs = append(errs, fmt.Errorf("offline.probability %v is not in [0, 1]", p.Offline.Probability))
	}
	if p.Offline.Probability > 0 && p.Offline.Interval <= 0 {
		errs = append(errs, errors.New("offline.interval must be positive when offline.probability is"))
	}
	if p.LogRate < 0 || math.IsNaN(p.LogRate) || math.IsInf(p.LogRate, 0) {
		errs = append(errs, fmt.Errorf("logRate %v must be a finite number ≥ 0", p.LogRate))
	}
	for name, d := range map[string]Dist{"flashTime": p.FlashTime, "offline.duration": p.Offline.Duration, "rebootTime": p.RebootTime} {
		if err := d.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// LoadProfile reads a profile from a JSON file. Unknown fields are errors,
// so that a typo does not silently mean a default.
func LoadProfile(path string) (Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Profile{}, err
	}
	return ParseProfile(b)
}

// ParseProfile reads a profile from JSON and validates it.
func ParseProfile(b []byte) (Profile, error) {
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Profile{}, fmt.Errorf("profile: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Profile{}, fmt.Errorf("profile: %w", err)
	}
	return p, nil
}
