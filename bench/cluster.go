package main

// The cluster probe (-cluster, -nodes): 1:1 latency and throughput with the
// sender on one node and the receiver on another, and durable sends/s
// through the store the nodes share. Pointed at a single node (one URL in
// -nodes) the same probe gives the single node's figures beside them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatgate/chatgate/client"
)

// clusterResult is what cluster.json holds.
type clusterResult struct {
	Nodes      []string       `json:"nodes"`
	SenderAt   string         `json:"sender_at"`
	ReceiverAt string         `json:"receiver_at"`
	Transport  string         `json:"transport"`
	Pairs      int            `json:"pairs"`
	Steps      []clusterStep  `json:"steps"`
	Sustained  float64        `json:"highest_sustained_msgs_per_s"`
	Durable    clusterDurable `json:"durable_sends"`
	Started    time.Time      `json:"started"`
	Note       string         `json:"note"`
}

type clusterStep struct {
	Rate      float64 `json:"rate"`
	Sent      int64   `json:"sent"`
	Delivered int64   `json:"delivered"`
	Lost      int64   `json:"lost"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	Sustained bool    `json:"sustained"`
}

type clusterDurable struct {
	Senders int     `json:"senders"`
	Seconds float64 `json:"seconds"`
	Sends   int64   `json:"sends"`
	PerSec  float64 `json:"sends_per_s"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
}

// runClusterProbe measures the nodes (bringing a local cluster up first
// with scripts/cluster when cfg.cluster is set).
func runClusterProbe(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	nodes := cfg.nodes
	if cfg.cluster {
		out, err := exec.CommandContext(ctx, "scripts/cluster", "up").Output()
		if err != nil {
			return fmt.Errorf("scripts/cluster up: %w", err)
		}
		defer func() {
			if err := exec.Command("scripts/cluster", "down").Run(); err != nil {
				fmt.Fprintln(stderr, "scripts/cluster down:", err)
			}
		}()
		nodes = strings.Fields(string(out))
	}
	if len(nodes) == 0 {
		return errors.New("no nodes: give -nodes URL[,URL…] or -cluster")
	}
	res := clusterResult{Nodes: nodes, SenderAt: nodes[0], ReceiverAt: nodes[min(1, len(nodes)-1)],
		Transport: client.TransportWebSocket, Pairs: cfg.clusterPairs, Started: time.Now().UTC(),
		Note: "sender's WebSocket on the first node, receiver's on the second; latency is send start to receipt"}
	fmt.Fprintf(stderr, "cluster probe: %d pairs, sender at %s, receiver at %s\n", res.Pairs, res.SenderAt, res.ReceiverAt)

	prefix := fmt.Sprintf("cb%d_", time.Now().UnixNano()%1_000_000)
	users, err := signupUsers(ctx, nodes[0], prefix, 2*res.Pairs, nil)
	if err != nil {
		return err
	}
	// A message's content is its send time (stamp); what arrives from an
	// earlier step is not counted in this one.
	var (
		mu       sync.Mutex
		lats     []int64
		got      atomic.Int64
		stepFrom atomic.Int64
	)
	onEvent := func(e client.Event) {
		if e.Type != client.EventMessage || e.Message == nil {
			return
		}
		sent, ok := unstamp(e.Message.Content)
		if !ok || sent < stepFrom.Load() {
			return
		}
		lat := nowNanos() - sent
		mu.Lock()
		lats = append(lats, lat)
		mu.Unlock()
		got.Add(1)
	}
	conns := make([]*client.Conn, len(users))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	err = parallel(ctx, len(users), 16, func(i int) error {
		at := res.SenderAt
		var on func(client.Event)
		if i%2 == 1 {
			at, on = res.ReceiverAt, onEvent
		}
		c := client.New(at, client.WithToken(users[i].Token, users[i].ID), client.WithSendTimeout(20*time.Second))
		conn, err := c.Connect(ctx, client.ConnectOptions{Transports: []string{res.Transport}, Cursor: users[i].Cursor, OnEvent: on,
			Negotiation: &client.Negotiation{Server: at, Transports: []string{res.Transport}, HeartbeatInterval: 5 * time.Second}})
		conns[i] = conn
		return err
	})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	rates := cfg.clusterRates
	for _, rate := range rates {
		mu.Lock()
		lats = lats[:0]
		mu.Unlock()
		got.Store(0)
		stepFrom.Store(nowNanos())
		var sent atomic.Int64
		dur := cfg.clusterStep
		interval := time.Duration(float64(time.Second) / rate)
		stepCtx, cancel := context.WithTimeout(ctx, dur)
		var wg sync.WaitGroup
		// Sends are due at a steady rate from the step's start; each tick
		// sends what is due, so a late tick never lowers the rate.
		tick := time.NewTicker(max(interval, time.Millisecond))
		t0 := time.Now()
		n := 0
	loop:
		for {
			select {
			case <-stepCtx.Done():
				break loop
			case now := <-tick.C:
				for due := int(now.Sub(t0).Seconds() * rate); n < due; {
					p := n % res.Pairs
					content := stamp(0)
					n++
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := conns[2*p].Send(ctx, client.SendInput{To: users[2*p+1].ID, Content: content}); err == nil {
							sent.Add(1)
						}
					}()
				}
			}
		}
		tick.Stop()
		cancel()
		wg.Wait()
		// Let what was sent arrive (bounded).
		deadline := time.Now().Add(5 * time.Second)
		for got.Load() < sent.Load() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		st := clusterStep{Rate: rate, Sent: sent.Load(), Delivered: got.Load()}
		st.Lost = max(st.Sent-st.Delivered, 0)
		l := summarize(lats)
		mu.Unlock()
		st.P50Ms, st.P99Ms = ms(l.p50), ms(l.p99)
		achieved := float64(st.Sent) / dur.Seconds()
		st.Sustained = st.Lost == 0 && st.P99Ms <= float64(cfg.p99Bound.Milliseconds()) && achieved >= 0.95*rate
		if st.Sustained {
			res.Sustained = rate
		}
		res.Steps = append(res.Steps, st)
		fmt.Fprintf(stderr, "  %6.0f msg/s: sent %d, delivered %d, p50 %.2f ms, p99 %.2f ms, sustained %v\n",
			rate, st.Sent, st.Delivered, st.P50Ms, st.P99Ms, st.Sustained)
		if !st.Sustained && st.P99Ms > 10*float64(cfg.p99Bound.Milliseconds()) {
			break
		}
	}

	// Durable sends/s: many concurrent keep-alive senders over HTTP, spread
	// over every node, each send acknowledged only once stored.
	d := clusterDurable{Senders: cfg.clusterSenders, Seconds: cfg.clusterStep.Seconds()}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.clusterSenders, MaxConnsPerHost: cfg.clusterSenders}}
	dctx, cancel := context.WithTimeout(ctx, cfg.clusterStep)
	defer cancel()
	var sends atomic.Int64
	var dmu sync.Mutex
	var dl []int64
	var wg sync.WaitGroup
	for i := range cfg.clusterSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := users[(2*i)%len(users)], users[(2*i+1)%len(users)]
			c := client.New(nodes[i%len(nodes)], client.WithHTTPClient(hc), client.WithToken(from.Token, from.ID))
			var mine []int64
			for k := 0; dctx.Err() == nil; k++ {
				t0 := nowNanos()
				if _, err := c.Send(dctx, client.SendInput{To: to.ID, Content: fmt.Sprintf("d%d-%d", i, k)}); err != nil {
					break
				}
				mine = append(mine, nowNanos()-t0)
				sends.Add(1)
			}
			dmu.Lock()
			dl = append(dl, mine...)
			dmu.Unlock()
		}()
	}
	wg.Wait()
	d.Sends = sends.Load()
	d.PerSec = math.Round(float64(d.Sends) / d.Seconds)
	dlat := summarize(dl)
	d.P50Ms, d.P99Ms = ms(dlat.p50), ms(dlat.p99)
	res.Durable = d
	fmt.Fprintf(stderr, "  durable sends: %d senders, %.0f sends/s, p50 %.2f ms, p99 %.2f ms\n", d.Senders, d.PerSec, d.P50Ms, d.P99Ms)

	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.out, "cluster.json"), b, 0o644); err != nil {
		return err
	}
	md := renderCluster(res)
	if err := os.WriteFile(filepath.Join(cfg.out, "cluster.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, md)
	return nil
}

func renderCluster(r clusterResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Cluster probe (%s)\n\nNodes: %s. Sender at %s, receiver at %s, %s, %d pairs.\n\n",
		r.Started.Format(time.RFC3339), strings.Join(r.Nodes, ", "), r.SenderAt, r.ReceiverAt, r.Transport, r.Pairs)
	b.WriteString("| 1:1 rate (msg/s) | sent | delivered | lost | p50 ms | p99 ms | sustained |\n|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "| %.0f | %d | %d | %d | %.2f | %.2f | %v |\n", s.Rate, s.Sent, s.Delivered, s.Lost, s.P50Ms, s.P99Ms, s.Sustained)
	}
	fmt.Fprintf(&b, "\nHighest sustained 1:1 rate: %.0f msg/s.\n\nDurable sends over HTTP: %d concurrent senders spread over the nodes, %.0f s: **%.0f sends/s** (p50 %.2f ms, p99 %.2f ms).\n",
		r.Sustained, r.Durable.Senders, r.Durable.Seconds, r.Durable.PerSec, r.Durable.P50Ms, r.Durable.P99Ms)
	return b.String()
}
