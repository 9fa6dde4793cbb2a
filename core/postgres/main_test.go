package postgres_test

import (
	"testing"

	"github.com/chatgate/chatgate/internal/pgtest"
)

// One PostgreSQL server serves every test of this package; each test
// gets a database of its own.
func TestMain(m *testing.M) { pgtest.Main(m) }
