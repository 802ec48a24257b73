package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Which repeats a fault excuses: a request whose answer may have been lost
// to a kill or a cloud fault.

// inDoubtAt reports whether a request seen from..to (by the cloud or the
// hook receiver) may have lost its answer to a fault: a kill up to inDoubt
// after it, or before it when no new proxy was started in between (the
// request was then sent by the process that died, and handled late); or
// the cloud cut off while or just after it was answered.
func inDoubtAt(events []event, from, to time.Time, kinds ...string) bool {
	for i, e := range events {
		if !slices.Contains(kinds, e.what) || e.at.After(to.Add(e.window)) || e.at.Before(from.Add(-5*time.Second)) {
			continue
		}
		if !e.at.Before(from) {
			return true
		}
		if e.what != "kill" {
			continue
		}
		restarted := false
		for _, n := range events[i+1:] {
			if n.what == "start" && n.at.Before(from) {
				restarted = true
			}
		}
		if !restarted {
			return true
		}
	}
	return false
}

// logRequestInDoubt reports whether the cloud may have stored the lines of
// r without the proxy learning it: r was taken (answered 2xx, or left
// unanswered) and the proxy was killed or the cloud cut off near it; or the
// cloud handled it and dropped its answer ("dropping answers"), or
// answered it late ("answering late"). A request refused, or closed before
// it was handled ("dropping connections"), stored nothing.
func logRequestInDoubt(r logRequest, events []event, periods []period) bool {
	taken := r.status/100 == 2 || r.status == 0
	if taken && inDoubtAt(events, r.start, r.end, "kill", "cloud-down") {
		return true
	}
	for _, p := range periods {
		if p.from.After(r.end) || p.to.Before(r.start) {
			continue
		}
		if p.what == "cloud answering late" || (p.what == "cloud dropping answers" && taken) {
			return true
		}
	}
	return false
}

// account fills the figures of the first part.
func (b *battery) account(fig *Figures, loads []*deviceLoad, release string, missingReports int) {
	b.mu.Lock()
	events := append([]event(nil), b.events...)
	periods := append([]period(nil), b.periods...)
	logReqs := append([]logRequest(nil), b.logReqs...)
	hooks := append([]hookSeen(nil), b.hooks...)
	fig.LogLinesDropped = int(b.dropped + b.curDrops)
	b.mu.Unlock()
	for _, e := range events {
		fig.MaxDoubtWindow = max(fig.MaxDoubtWindow, e.window)
	}

	fig.ReportsLost = missingReports
	for _, d := range loads {
		fig.ReportsAcked += d.reports
		fig.LogLinesAcked += len(d.ackedLogs)
		fig.LogLinesUnknown += len(d.unknown)
	}

	start := events[0].at
	if len(logReqs) > 0 && logReqs[0].start.Before(start) {
		start = logReqs[0].start
	}
	// Log lines, in the order the cloud holds them per device.
	// Each extra arrival of a line needs a request carrying it whose
	// outcome the proxy could not know (a fault during or just after it,
	// whatever its status: a dropped answer has none).
	var missing int
	doubtful := map[string]int{} // message -> requests carrying it that were in doubt
	carriers := map[string][]int{}
	doubt := make([]bool, len(logReqs))
	for i, r := range logReqs {
		doubt[i] = logRequestInDoubt(r, events, periods)
		for _, m := range r.messages {
			carriers[m] = append(carriers[m], i)
		}
	}
	// Only a carrier followed by another can explain a repeat: the last
	// one, whatever its fate, caused no further send.
	for m, cs := range carriers {
		for _, i := range cs[:len(cs)-1] {
			if doubt[i] {
				doubtful[m]++
			}
		}
	}
	for _, d := range loads {
		ls, _ := b.fakes.Cloud.Logs(d.uuid)
		fig.LogLinesArrived += len(ls)
		seen := map[int]int{}
		last := -1
		for _, l := range ls {
			u, seq, ok := parseLogMessage(l.Message)
			if !ok || u != d.uuid {
				continue
			}
			seen[seq]++
			if seen[seq] > 1 {
				if seen[seq]-1 <= doubtful[l.Message] {
					fig.LogLinesInDoubt++
				} else {
					fig.LogLinesDuplicate++
					if fig.LogLinesDuplicate <= 3 {
						fig.Notes = append(fig.Notes, duplicateNote(l.Message, carriers[l.Message], logReqs, events, start))
					}
				}
				continue
			}
			if seq < last {
				fig.LogLinesReordered++
			}
			last = max(last, seq)
		}
		for seq := range d.ackedLogs {
			if seen[seq] == 0 {
				missing++
			}
		}
	}
	fig.LogLinesLost = max(0, missing-fig.LogLinesDropped)

	// Hooks: an update hook answered 200 for a target must never come
	// again, unless a kill came within inDoubt of its answer (the proxy
	// may have died before it recorded the acknowledgement).
	acked := map[string]hookSeen{}
	for _, h := range hooks {
		key := h.uuid + " " + h.commit
		first, seen := acked[key]
		if !seen {
			acked[key] = h
			fig.HooksAcked++
			continue
		}
		if inDoubtAt(events, first.arrived, first.answered, "kill") {
			fig.HooksInDoubt++
			acked[key] = h // the new answer is the acknowledgement from here on
		} else {
			fig.HooksResent++
			if fig.HooksResent <= 5 {
				fig.Notes = append(fig.Notes, fmt.Sprintf("hook %.8s… %.7s answered 200 %s, sent again %s later; %s",
					h.uuid, h.commit, first.answered.Sub(start).Round(time.Millisecond), h.arrived.Sub(first.answered).Round(time.Millisecond), nextKill(events, first.answered)))
			}
		}
	}
	fig.DevicesConverged = len(b.hookAcked(release))
}

// nextKill describes the first kill after t.
func nextKill(events []event, t time.Time) string {
	for _, e := range events {
		if e.what == "kill" && e.at.After(t) {
			return fmt.Sprintf("the next kill came %s after the answer", e.at.Sub(t).Round(time.Millisecond))
		}
	}
	return "no kill after the answer"
}

// duplicateNote describes an unexplained repeat: the requests that carried
// the line and the faults nearest to them, in seconds from the start.
func duplicateNote(msg string, reqs []int, logReqs []logRequest, events []event, start time.Time) string {
	sec := func(t time.Time) string { return fmt.Sprintf("%.3fs", t.Sub(start).Seconds()) }
	var b strings.Builder
	fmt.Fprintf(&b, "duplicate %q carried by", msg)
	for _, i := range reqs {
		r := logReqs[i]
		fmt.Fprintf(&b, " [%s–%s %d, %d lines]", sec(r.start), sec(r.end), r.status, len(r.messages))
	}
	if len(reqs) > 0 {
		first := logReqs[reqs[0]]
		var near []string
		for _, e := range events {
			if d := e.at.Sub(first.start); d > -5*time.Second && d < 10*time.Second {
				near = append(near, e.what+"@"+sec(e.at))
			}
		}
		fmt.Fprintf(&b, "; faults near: %v", near)
	}
	return b.String()
}
