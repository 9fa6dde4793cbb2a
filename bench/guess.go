package main

// The guessing probe (-guess URL): 64 clients guess one account's password
// for a while, and another user's GET /v1/me is timed meanwhile, the run
// the hardening issue starts from (479 wrong-password logins in 6 s, each
// an argon2id hash, and p99 77 ms for everyone else).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/client"
)

func runGuessProbe(ctx context.Context, base string, dur time.Duration, stdout, stderr io.Writer) error {
	prefix := fmt.Sprintf("g%d_", time.Now().UnixNano()%1_000_000)
	users, err := signupUsers(ctx, base, prefix, 2, nil)
	if err != nil {
		return err
	}
	victim, bystander := users[0], users[1]
	me := client.New(base, client.WithToken(bystander.Token, bystander.ID))
	timeMe := func() (int64, error) {
		t0 := nowNanos()
		err := me.Do(ctx, "GET", "/v1/me", nil, nil)
		return nowNanos() - t0, err
	}
	var quiet, during []int64
	for range 50 { // the bystander's latency before
		d, err := timeMe()
		if err != nil {
			return err
		}
		quiet = append(quiet, d)
	}
	gctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var checked, limited, other atomic.Int64
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(base, client.WithHTTPClient(hc))
			for gctx.Err() == nil {
				_, err := c.Login(gctx, victim.Name, "wrong guess", "")
				var ae *client.APIError
				switch {
				case err == nil:
					other.Add(1)
				case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
					checked.Add(1)
				case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
					limited.Add(1)
				case gctx.Err() != nil:
				default:
					other.Add(1)
				}
			}
		}()
	}
	for gctx.Err() == nil {
		d, err := timeMe()
		if err != nil {
			return err
		}
		during = append(during, d)
		time.Sleep(10 * time.Millisecond) // a person's pace, not a load generator's
	}
	wg.Wait()
	fmt.Fprintf(stdout, "guessing %s for %v from 64 clients: %d wrong passwords checked, %d refused with 429, %d other answers\n",
		base, dur, checked.Load(), limited.Load(), other.Load())
	q, d := summarize(quiet), summarize(during)
	fmt.Fprintf(stdout, "another user's GET /v1/me: p50 %.2f ms, p99 %.2f ms before; p50 %.2f ms, p99 %.2f ms during (%d requests)\n",
		ms(q.p50), ms(q.p99), ms(d.p50), ms(d.p99), d.n)
	return nil
}
