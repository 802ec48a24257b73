// Package defaults fills the unset fields of an options struct with their
// defaults, for the constructors whose options' zero values mean "the
// default".
//
// It imports only the standard library.
package defaults

// number is what Positive takes: counts, sizes and durations.
type number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive sets *p to d unless *p is positive: the zero value of the
// option (or a negative one, which would make no sense) means its default.
func Positive[T number](p *T, d T) {
	if *p <= 0 {
		*p = d
	}
}
