package node_test

import (
	"os"
	"testing"

	"github.com/chatgate/chatgate/internal/testkit"
)

// TestMain removes the binary the crash tests build once (testkit.Binary).
func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveBinary()
	os.Exit(code)
}
