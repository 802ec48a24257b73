package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// A held connection's kind: what it sends, and the deadline within which
// the proxy must close it (counted from its start, see holdConn).
type connKind struct {
	name  string
	bound time.Duration
}

var connKinds = []connKind{
	{"silent (no request)", headerTimeout},
	{"keyless slow headers", headerTimeout},
	{"keyed slow headers", headerTimeout},
	// SRV-1: a keyless request is answered 401 within 1 s without its body;
	// the reference proxy then closes the connection.
	{"keyless slow body", time.Second},
	{"keyed slow body", bodyTimeout},
	{"keyed idle kept-alive", idleTimeout},
	{"keyless idle kept-alive", idleTimeout},
}

// dribble is the pace of a slow client: one byte this often.
const dribble = 300 * time.Millisecond

// holdConn opens one connection of kind k and returns when the proxy has
// closed it, or when limit has passed (then closed is false). took is
// measured from the point the kind's deadline runs from: the connection's
// start, its first header byte, or the end of its headers.
func (b *battery) holdConn(ctx context.Context, k int, limit time.Duration) (took time.Duration, closed bool, err error) {
	conn, err := net.Dial("tcp", b.apiAddr)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close()
	t0 := time.Now()
	auth := "Authorization: Bearer " + b.apiKey + "\r\n"
	put := "PUT /v1/devices/" + b.uuids[0] + " HTTP/1.1\r\nHost: chaos\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
	var head string
	slow := false
	switch k {
	case 0:
	case 1:
		head, slow = "GET /v1/devices HTTP/1.1\r\nHost: chaos\r\nX-Slow: ", true
	case 2:
		head, slow = "GET /v1/devices HTTP/1.1\r\nHost: chaos\r\n"+auth+"X-Slow: ", true
	case 3:
		head, slow = put+"\r\n{", true
	case 4:
		head, slow = put+auth+"\r\n{", true
	case 5:
		head = "GET /ping HTTP/1.1\r\nHost: chaos\r\n" + auth + "\r\n"
	case 6:
		head = "GET /v1/devices HTTP/1.1\r\nHost: chaos\r\n\r\n"
	}
	if head != "" {
		if _, err := io.WriteString(conn, head); err != nil {
			return 0, false, err
		}
		if k != 5 && k != 6 {
			t0 = time.Now() // the deadline runs from the first header byte or the end of the headers
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	if slow {
		go func() {
			t := time.NewTicker(dribble)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-t.C:
					if _, err := conn.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
	}
	conn.SetReadDeadline(t0.Add(limit))
	_, err = io.Copy(io.Discard, conn) // answers, then EOF or a reset when closed
	took = time.Since(t0)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return took, false, nil
	}
	return took, true, nil
}

// connections is the second part: Conns idle or dribbling connections of
// every kind at once, each to be closed within its deadline, while the API
// is asked for a device over and over and its latency measured.
func (b *battery) connections(ctx context.Context, fig *Figures) error {
	b.opts.progress.Printf("chaos: %d held connections (deadlines: headers %s, body %s, idle %s)\n", b.opts.Conns, headerTimeout, bodyTimeout, idleTimeout)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	limit := idleTimeout + 10*time.Second // give up on a connection after this
	for i := range b.opts.Conns {
		k := i % len(connKinds)
		wg.Go(func() {
			took, closed, err := b.holdConn(ctx, k, limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case closed && took <= connKinds[k].bound+closeSlack:
				fig.ConnsClosed++
			default:
				fig.ConnsOpenLate = append(fig.ConnsOpenLate, fmt.Sprintf("%s: closed=%t after %s", connKinds[k].name, closed, took.Round(time.Millisecond)))
			}
		})
	}
	held := make(chan struct{})
	go func() { wg.Wait(); close(held) }()

	// The API meanwhile, from a few keyed clients.
	var lat []time.Duration
	var lwg sync.WaitGroup
	for c := range 4 {
		lwg.Go(func() {
			hc := b.client()
			for i := c; ; i++ {
				select {
				case <-held:
					return
				default:
				}
				t := time.Now()
				code, err := b.do(ctx, hc, http.MethodGet, "/v1/devices/"+b.uuids[i%len(b.uuids)], "")
				d := time.Since(t)
				mu.Lock()
				fig.APIRequests++
				lat = append(lat, d)
				if err != nil || code != http.StatusOK {
					fig.APIErrors++
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	<-held
	lwg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("chaos: %d held connections could not be opened, first: %w", len(errs), errs[0])
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		fig.APIP50 = lat[n/2]
		fig.APIP99 = lat[min(n-1, n*99/100)]
	}
	slices.Sort(fig.ConnsOpenLate)
	return nil
}
