package consul_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatgate/chatgate/internal/consultest"
)

func TestScratchLatency(t *testing.T) {
	agent := consultest.Start(t)
	c := agent.Client()
	for i := 0; i < 4; i++ {
		n := newFakeNode(t)
		svc := "lat" + string(rune('a'+i))
		d := newDiscovery(t, c, svc, "z")
		start := time.Now()
		register(t, c, svc, "x"+svc, "z", n)
		var agentPass, catPass, discPass time.Duration
		for time.Since(start) < 6*time.Second {
			if agentPass == 0 {
				ch, _ := c.Agent().ChecksWithFilter(`CheckID == "service:x` + svc + `"`)
				if ch["service:x"+svc] != nil && ch["service:x"+svc].Status == "passing" {
					agentPass = time.Since(start)
				}
			}
			if catPass == 0 {
				e, _, _ := c.Health().Service(svc, "", true, nil)
				if len(e) > 0 {
					catPass = time.Since(start)
				}
			}
			if discPass == 0 && len(d.Nodes()) > 0 {
				discPass = time.Since(start)
			}
			if discPass > 0 && catPass > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		hits := n.readyzHits()
		var first time.Duration
		if len(hits) > 0 {
			first = hits[0].Sub(start)
		}
		t.Logf("first hit %s agent passing %s health passing %s discovery %s", first, agentPass, catPass, discPass)
		_ = context.Background()
	}
}
