package consultest_test

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/consultest"
)

func TestStart(t *testing.T) {
	// Two at once, as parallel test binaries do: every port must differ.
	a, b := consultest.Start(t), consultest.Start(t)
	require.NotEqual(t, a.Addr(), b.Addr())

	for _, ag := range []*consultest.Agent{a, b} {
		leader, err := ag.Client().Status().Leader()
		require.NoError(t, err)
		require.NotEmpty(t, leader)
		_, err = ag.Client().KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil)
		require.NoError(t, err)
	}

	a.Stop()
	_, err := net.DialTimeout("tcp", a.Addr(), time.Second)
	require.Error(t, err, "stopped agent still listening")
	_, err = b.Client().Status().Leader()
	require.NoError(t, err, "the other agent is unaffected")
}
