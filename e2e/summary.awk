# Filters `go test -v ./e2e/...` for a console: the RUN, PASS and FAIL lines
# of every test, plus the whole output of each test that failed (its logs,
# docker-compose output and container logs), which CI shows only here.
# The complete log is kept in reports/e2e.log by the Makefile.
/^=== RUN   [^\/]*$/ { buf = "" }
{ buf = buf $0 "\n" }
/^(=== RUN|--- |PASS|FAIL|ok|panic)/ { print; fflush() }
/^--- FAIL: [^\/]*$/ {
	printf "---- output of the failed test ----\n%s---- end of output ----\n", buf
	buf = ""
}
/^panic/ { panicked = 1 }
END { if (panicked) printf "---- output since the last test started ----\n%s", buf }
