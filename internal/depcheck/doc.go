// Package depcheck holds only a test: it enforces the direction of
// dependencies between the module's packages (proxy never imports the fakes,
// the simulator or the suite; the wire packages import only the standard
// library; the fakes and the simulator import only the wire packages of the
// proxy). It has no code of its own and nothing may import it.
package depcheck
