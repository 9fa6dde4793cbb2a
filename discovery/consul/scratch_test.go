package consul_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/chatgate/chatgate/internal/consultest"
)

func TestScratchWindows(t *testing.T) {
	variant := os.Getenv("VARIANT")
	for run := 0; run < 8; run++ {
		t0 := time.Now()
		agent := consultest.Start(t)
		c := agent.Client()
		ready := time.Since(t0)
		var out []string
		if variant == "ttl" {
			c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "ttlp", Name: "ttlp", Check: &api.AgentServiceCheck{CheckID: "ttlp", TTL: "30s"}})
			s := time.Now()
			c.Agent().UpdateTTL("ttlp", "", "pass")
			for {
				cs, _, _ := c.Health().Checks("ttlp", nil)
				if len(cs) > 0 && cs[0].Status == "passing" {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			out = append(out, fmt.Sprintf("ttl probe lag %s", time.Since(s).Round(time.Millisecond)))
		}
		for i := 0; time.Since(t0) < 5*time.Second; i++ {
			n := newFakeNode(t)
			svc := fmt.Sprintf("r%di%d", run, i)
			if variant == "health" {
				c.Health().Service(svc, "", true, nil)
			}
			if variant == "catalog" {
				c.Catalog().Service(svc, "", nil)
			}
			s := time.Now()
			c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: svc, Name: svc, Check: &api.AgentServiceCheck{HTTP: n.URL() + "/readyz", Interval: "1s"}})
			for {
				cs, _, _ := c.Health().Checks(svc, &api.QueryOptions{UseCache: false})
				if len(cs) > 0 && cs[0].Status == "passing" {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			hits := n.readyzHits()
			lag := time.Since(s) - hits[0].Sub(s)
			if lag > 100*time.Millisecond {
				out = append(out, fmt.Sprintf("lag %s at %s", lag.Round(time.Millisecond), hits[0].Sub(t0).Round(time.Millisecond)))
			}
			c.Agent().ServiceDeregister(svc)
		}
		t.Logf("ready at %s; %s", ready.Round(time.Millisecond), strings.Join(out, ", "))
		agent.Stop()
	}
}
