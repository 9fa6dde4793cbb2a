package transports_test

import (
	"testing"

	"github.com/chatgate/chatgate/internal/consultest"
	"github.com/chatgate/chatgate/internal/natstest"
	"github.com/chatgate/chatgate/internal/pgtest"
	"github.com/chatgate/chatgate/internal/testkit"
)

// TestConformanceCluster runs the conformance suite with the two sides of
// every scenario on different nodes of a real cluster: PostgreSQL, NATS,
// Consul, and three nodes sharing them. The answers must be the single
// node's.
func TestConformanceCluster(t *testing.T) {
	pg := pgtest.Start(t)
	nats := natstest.Start(t)
	consul := consultest.Start(t)
	for i, tr := range conformanceTransports {
		t.Run(tr, func(t *testing.T) {
			store := pg.CreateDB(t)
			var nodes []*testkit.Node
			for range 3 {
				opts := append(conformanceNodeOptions(),
					testkit.WithCluster(store, nats.URL(), consul.Addr()), testkit.WithNodeID(-1))
				nodes = append(nodes, testkit.Start(t, opts...))
			}
			runConformance(t, nodes, tr, conformanceTransports[(i+1)%len(conformanceTransports)])
		})
	}
}
