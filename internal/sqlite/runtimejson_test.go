package sqlite

import (
	"encoding/json"
	"testing"
)

// containerIDByDecoding is what containerIDOf must agree with on valid JSON.
func containerIDByDecoding(data []byte) (string, bool) {
	var v struct {
		Container json.RawMessage `json:"container"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return "", false
	}
	var c struct {
		ID json.RawMessage `json:"id"`
	}
	var id string
	if json.Unmarshal(v.Container, &c) == nil {
		_ = json.Unmarshal(c.ID, &id)
	}
	return id, true
}

var containerIDCases = []struct {
	name, data, want string
}{
	{"container", `{"process":{"pid":1,"argv":["a","b"]},"container":{"name":"n","id":"c1","image":"img:1"},"host":"h1"}`, "c1"},
	{"host process", `{"process":{"pid":1},"host":"h1","file":{"path":"/etc/x"}}`, ""},
	{"white space", " {\n\t\"host\" : \"h\" ,\"container\" :{ \"id\" : \"c\" } } ", "c"},
	{"escapes", `{"container":{"id":"a\"b\\c\u00e9\/"}}`, "a\"b\\cé/"},
	{"nested keys do not count", `{"process":{"container":{"id":"no"}},"x":[{"container":{"id":"no"}}]}`, ""},
	{"null container", `{"container":null}`, ""},
	{"not a string", `{"container":{"id":42}}`, ""},
	{"keys ignore case, as encoding/json", `{"Container":{"ID":"c"}}`, "c"},
	{"escaped key", `{"\u0063ontainer":{"\u0069d":"c"}}`, "c"},
	{"last key wins", `{"container":{"id":"a"},"container":{"id":"b"}}`, "b"},
	{"numbers and literals", `{"a":-1.5e3,"b":true,"c":false,"d":null,"container":{"x":[1,{"y":"}"}],"id":"c"}}`, "c"},
	{"empty", `{}`, ""},
	{"not an object", `["container","c"]`, ""},
	{"not JSON", `container=c`, ""},
	{"nothing", ``, ""},
	{"truncated", `{"container":{"id":"c"`, ""},
	{"unterminated string", `{"container":{"id":"c`, ""},
}

func TestContainerIDOf(t *testing.T) {
	for _, tc := range containerIDCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(containerIDOf([]byte(tc.data))); got != tc.want {
				t.Errorf("containerIDOf(%q) = %q, want %q", tc.data, got, tc.want)
			}
		})
	}
}

func FuzzContainerIDOf(f *testing.F) {
	for _, tc := range containerIDCases {
		f.Add([]byte(tc.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := containerIDOf(data)
		want, valid := containerIDByDecoding(data)
		if valid && string(got) != want {
			t.Errorf("containerIDOf(%q) = %q, want %q", data, got, want)
		}
	})
}
