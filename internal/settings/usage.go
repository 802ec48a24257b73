package settings

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// helpWidth is where Usage wraps the help texts.
const helpWidth = 80

// Usage renders the flags of fs, sorted by name, each as a line with the
// flag, what its value looks like and its variable, then its help text
// with "(default …)" for a default or "(required)":
//
//	--devices int  [DEPHARNESS_UP_DEVICES]
//	    number of simulated dependent devices (default 20)
func Usage(fs *pflag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		b.WriteString("  ")
		if f.Shorthand != "" {
			b.WriteString("-" + f.Shorthand + ", ")
		}
		b.WriteString("--" + f.Name)
		if typ := f.Value.Type(); typ != "bool" {
			b.WriteString(" " + typ)
		}
		if env := Env(f); env != "" {
			b.WriteString("  [" + env + "]")
		}
		b.WriteString("\n")
		wrap(&b, f.Usage+DefaultNote(f), "      ", helpWidth)
	})
	return b.String()
}

// DefaultNote is what --help adds to a flag's help: " (required)", or
// " (default X)" when the flag has a default worth stating (not an empty
// text, not false).
func DefaultNote(f *pflag.Flag) string {
	switch {
	case Required(f):
		return " (required)"
	case f.DefValue == "", f.Value.Type() == "bool" && f.DefValue == "false":
		return ""
	default:
		return " (default " + f.DefValue + ")"
	}
}

// wrap writes text in lines of at most width columns (a longer word stands
// alone), each starting with indent.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, w := range strings.Fields(text) {
		if line != indent && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
}

// Suggest returns the candidates name was probably meant to be, the
// closest first: those within a small edit distance, and those it is the
// start of.
func Suggest(name string, candidates []string) []string {
	type scored struct {
		s string
		d int
	}
	limit := max(1, len(name)/3)
	var found []scored
	for _, c := range candidates {
		d := distance(name, c)
		if d <= limit || (len(name) > 1 && strings.HasPrefix(c, name)) {
			found = append(found, scored{c, d})
		}
	}
	slices.SortStableFunc(found, func(a, b scored) int { return a.d - b.d })
	var out []string
	for _, f := range found {
		if !slices.Contains(out, f.s) && len(out) < 3 {
			out = append(out, f.s)
		}
	}
	return out
}

// DidYouMean is "; did you mean X?" (or "X or Y?") for the suggestions,
// each with prefix, or "" for none.
func DidYouMean(prefix string, suggestions []string) string {
	if len(suggestions) == 0 {
		return ""
	}
	for i, s := range suggestions {
		suggestions[i] = prefix + s
	}
	return "; did you mean " + strings.Join(suggestions, " or ") + "?"
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// FlagError says in the words of this package what is wrong with a
// command line pflag refused: a value with what was expected, a flag that
// does not exist with the flags of fs it may have meant.
func FlagError(fs *pflag.FlagSet, err error) error {
	var (
		notExist *pflag.NotExistError
		invalid  *pflag.InvalidValueError
		noValue  *pflag.ValueRequiredError
	)
	switch {
	case errors.As(err, &invalid):
		return &ValueError{Flag: invalid.GetFlag().Name, Value: invalid.GetValue(), Err: cause(err)}
	case errors.As(err, &noValue):
		return fmt.Errorf("--%s needs a value", noValue.GetFlag().Name)
	case errors.As(err, &notExist):
		var names []string
		fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		if short := notExist.GetSpecifiedShortnames(); short != "" {
			// -devices: a long flag with one dash.
			if fs.Lookup(short) != nil {
				return fmt.Errorf("unknown flag -%s; did you mean --%s?", short, short)
			}
			return fmt.Errorf("unknown flag -%s%s", short, DidYouMean("--", Suggest(short, names)))
		}
		name := notExist.GetSpecifiedName()
		return fmt.Errorf("unknown flag --%s%s", name, DidYouMean("--", Suggest(name, names)))
	}
	return err
}

// Listener is an address a command listens on and the flags that set it.
type Listener struct {
	Addr  string
	Flags []string
}

// ListenError explains err when it is a failure to listen on the address
// of one of listeners (a port in use, an address not of this machine, a
// port below 1024): it names the address, the reason and the flags of fs,
// with their variables, to change. Any other err gives nil.
func ListenError(fs *pflag.FlagSet, err error, listeners ...Listener) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "listen" {
		return nil
	}
	reason := op.Err
	var sys *os.SyscallError
	if errors.As(reason, &sys) {
		reason = sys.Err
	}
	for _, l := range listeners {
		if !sameAddr(l.Addr, op.Addr) && !(op.Addr == nil && len(listeners) == 1) {
			continue
		}
		var change []string
		for _, name := range l.Flags {
			if f := fs.Lookup(name); f != nil && Env(f) != "" {
				change = append(change, fmt.Sprintf("--%s (%s)", name, Env(f)))
			} else {
				change = append(change, "--"+name)
			}
		}
		return fmt.Errorf("cannot listen on %s: %v; change %s", l.Addr, reason, strings.Join(change, " or "))
	}
	return nil
}

// sameAddr reports whether the listen address addr resolves to got, the
// address of a failed listen.
func sameAddr(addr string, got net.Addr) bool {
	if got == nil {
		return false
	}
	if addr == got.String() {
		return true
	}
	a, err := net.ResolveTCPAddr("tcp", addr)
	return err == nil && a.String() == got.String()
}
