package jsonstr

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// std is encoding/json's encoding of s with HTML escaping off (Marshal,
// which TestMarshalIsJSONMarshalWithoutHTMLEscaping holds to json.Marshal).
func std(t *testing.T, s string) []byte {
	t.Helper()
	b, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMarshalIsJSONMarshalWithoutHTMLEscaping(t *testing.T) {
	for _, v := range []any{"plain", map[string]any{"b": []int{1, 2}, "a": nil}, 1.5, "line\nbreak\u2028"} {
		got, err := Marshal(v)
		want, _ := json.Marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Marshal(%#v) = %s, %v; want json.Marshal's %s", v, got, err, want)
		}
	}
	got, err := Marshal(map[string]string{"k": "<a&b>"})
	if want := `{"k":"<a&b>"}`; err != nil || string(got) != want {
		t.Errorf("Marshal kept HTML escaping or a newline: %q, %v; want %q", got, err, want)
	}
	if _, err := Marshal(make(chan int)); err == nil {
		t.Error("Marshal(chan) = nil error, want json's unsupported type error")
	}
}

func TestAppendEscapes(t *testing.T) {
	for s, want := range map[string]string{
		"":              `""`,
		"plain":         `"plain"`,
		`q"uote\back`:   `"q\"uote\\back"`,
		"\x00\x1f\x7f":  `"\u0000\u001f` + "\x7f" + `"`,
		"\n\r\t\b\f":    `"\n\r\t\b\f"`,
		"\u2028\u2029":  `"\u2028\u2029"`,
		"\xff bad utf8": `"\ufffd bad utf8"`,
		"<&> é 日本 😀":    `"<&> é 日本 😀"`,
	} {
		if got := string(Append([]byte("x"), s)); got != "x"+want {
			t.Errorf("Append(%q) = %s, want x%s", s, got, want)
		}
	}
}

// FuzzAppend holds Append equal to encoding/json, byte for byte.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote\back`, "\x00\x1f\n\r\t\b\f", "é ü 日本", "\u2028\u2029", "\xff\xfe bad utf8", "<&>", "é😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Append(nil, s)
		if want := std(t, s); !bytes.Equal(got, want) {
			t.Fatalf("Append(%q) = %s, want %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	s := "a device status with \"quotes\" and a newline\n and some é"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], s)
	}
}
