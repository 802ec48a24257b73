package cloud

import (
	"encoding/hex"
	"regexp"
)

// Word lists of generated names, balena style ("blue-sun").
var (
	nameAdjectives = []string{
		"autumn", "billowing", "bitter", "black", "blue", "bold", "broken", "calm",
		"cold", "cool", "crimson", "curly", "damp", "dark", "dawn", "delicate",
		"divine", "dry", "empty", "falling", "fancy", "floral", "fragrant", "frosty",
		"gentle", "green", "hidden", "holy", "icy", "jolly", "late", "lingering",
		"little", "lively", "long", "lucky", "misty", "morning", "muddy", "nameless",
		"noisy", "odd", "old", "orange", "patient", "plain", "polished", "proud",
		"purple", "quiet", "rapid", "red", "restless", "rough", "round", "royal",
		"shiny", "shy", "silent", "small", "snowy", "soft", "solitary", "sparkling",
		"spring", "square", "steep", "still", "summer", "sweet", "throbbing", "tight",
		"tiny", "twilight", "wandering", "weathered", "white", "wild", "winter", "wispy",
		"withered", "yellow", "young",
	}
	nameNouns = []string{
		"art", "band", "bar", "base", "bird", "block", "boat", "bonus",
		"bread", "breeze", "brook", "bush", "butterfly", "cake", "cell", "cherry",
		"cloud", "credit", "darkness", "dawn", "dew", "disk", "dream", "dust",
		"feather", "field", "fire", "firefly", "flower", "fog", "forest", "frog",
		"frost", "glade", "glitter", "grass", "hall", "hat", "haze", "heart",
		"hill", "king", "lab", "lake", "leaf", "limit", "math", "meadow",
		"mode", "moon", "morning", "mountain", "mouse", "mud", "night", "paper",
		"pine", "poetry", "pond", "queen", "rain", "recipe", "resonance", "rice",
		"river", "salad", "scene", "sea", "shadow", "shape", "silence", "sky",
		"smoke", "snow", "snowflake", "sound", "star", "sun", "sunset", "surf",
		"term", "thunder", "tooth", "tree", "truth", "union", "unit", "violet",
		"voice", "water", "waterfall", "wave", "wildflower", "wind", "wood",
	}
)

var (
	uuidRe = regexp.MustCompile(`^[0-9a-f]{32}$`)
	// gatewayUUIDRe also admits balena's 62-character uuids.
	gatewayUUIDRe = regexp.MustCompile(`^[0-9a-f]{32}([0-9a-f]{30})?$`)
	commitRe      = regexp.MustCompile(`^[0-9a-f]{40}$`)
	imageRe       = regexp.MustCompile(`^[^\s@]+@sha256:[0-9a-f]{64}$`)
	varRe         = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// nameLocked returns a generated adjective-noun name.
func (s *Server) nameLocked() string {
	return nameAdjectives[s.rng.IntN(len(nameAdjectives))] + "-" + nameNouns[s.rng.IntN(len(nameNouns))]
}

// hexLocked returns n random bytes from the seeded source as hex.
func (s *Server) hexLocked(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return hex.EncodeToString(b)
}

// newDeviceUUIDLocked returns a fresh 32-hex uuid not in use.
func (s *Server) newDeviceUUIDLocked() string {
	for {
		u := s.hexLocked(16)
		if _, taken := s.devices[u]; !taken && s.gateways[u] == nil {
			return u
		}
	}
}
