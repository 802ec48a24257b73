package api

import (
	"encoding/json"
	"testing"
)

func TestDeviceUpdateSendsOnlySetFieldsAndKeepsEmptyObjects(t *testing.T) {
	on, st := true, "Idle"
	tests := []struct {
		name string
		u    DeviceUpdate
		want string
	}{
		{"nothing set", DeviceUpdate{}, `{}`},
		{"status and online", DeviceUpdate{Status: &st, IsOnline: &on}, `{"is_online":true,"status":"Idle"}`},
		{"empty environment is an explicit {}", DeviceUpdate{Environment: Vars{}}, `{"environment":{}}`},
		{"nil config is absent", DeviceUpdate{Environment: Vars{"A": "1"}}, `{"environment":{"A":"1"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.u)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s, want %s", b, tt.want)
			}
		})
	}
}
