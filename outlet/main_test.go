//go:build linux

package outlet

import (
	"testing"

	"go.uber.org/goleak"
)

// A goroutine leaked in PID 1 lives as long as the container.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
