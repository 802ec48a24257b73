package features

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// The JUnit XML the suite writes (junit.xml): one testsuite per feature,
// one testcase per scenario with the feature as its classname, the clause
// IDs and tier as properties, and a failure's whole text in the element's
// body (its first line as the message).

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name       string          `xml:"name,attr"`
	Classname  string          `xml:"classname,attr"`
	File       string          `xml:"file,attr,omitempty"`
	Line       int             `xml:"line,attr,omitempty"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Failure    *junitFailure   `xml:"failure,omitempty"`
	Skipped    *struct{}       `xml:"skipped,omitempty"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

func seconds(ns int64) string { return fmt.Sprintf("%.3f", float64(ns)/1e9) }

// WriteJUnit writes the report's scenarios as JUnit XML.
func WriteJUnit(w io.Writer, r Report) error {
	all := junitSuites{Name: "depharness"}
	var total int64
	var suiteTime []int64
	index := map[string]int{}
	for _, sr := range r.scenarioList() {
		i, ok := index[sr.Feature]
		if !ok {
			i = len(all.Suites)
			index[sr.Feature] = i
			name := sr.FeatureName
			if name == "" {
				name = sr.Feature
			}
			all.Suites = append(all.Suites, junitSuite{Name: name})
			suiteTime = append(suiteTime, 0)
		}
		s := &all.Suites[i]
		c := junitCase{Name: sr.Name, Classname: s.Name, File: sr.Feature, Line: sr.Line, Time: seconds(int64(sr.Duration))}
		for _, id := range sr.Clauses {
			c.Properties = append(c.Properties, junitProperty{Name: "clause", Value: id})
		}
		tier := "contract"
		if sr.Reference {
			tier = "reference"
		}
		c.Properties = append(c.Properties, junitProperty{Name: "tier", Value: tier})
		switch sr.Status {
		case StatusFailed:
			msg := "failed"
			if d := sr.Detail; d != nil {
				msg = d.Step
				if len(d.Parts) > 0 {
					if first, _, _ := strings.Cut(d.Parts[0].Summary, "\n"); first != "" {
						msg += ": " + first
					}
				}
				if d.Clause != "" {
					c.Properties = append(c.Properties, junitProperty{Name: "failed-clause", Value: d.Clause})
				}
			}
			if len(msg) > 200 {
				msg = msg[:200] + "…"
			}
			body := sr.Failure
			if sr.Log != "" {
				body += "\n\nlog: " + sr.Log
			}
			c.Failure = &junitFailure{Message: msg, Type: "assertion", Body: body}
			s.Failures++
			all.Failures++
		case StatusSkipped:
			c.Skipped = &struct{}{}
			s.Skipped++
			all.Skipped++
		}
		s.Tests++
		all.Tests++
		s.Cases = append(s.Cases, c)
		total += int64(sr.Duration)
		suiteTime[i] += int64(sr.Duration)
	}
	for i := range all.Suites {
		all.Suites[i].Time = seconds(suiteTime[i])
	}
	all.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
