package clustertest

import (
	"os"
	"testing"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// nkb is the nkbridge binary of this test binary, built on first use.
var nkb peers.NkbridgeBuild

func TestMain(m *testing.M) {
	code := m.Run()
	nkb.Remove()
	os.Exit(code)
}
