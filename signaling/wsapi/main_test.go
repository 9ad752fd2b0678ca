package wsapi_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the servers the tests stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
