//go:build linux

package blocking

import (
	"context"
	"syscall"
	"testing"
)

func BenchmarkDo(b *testing.B) {
	p := New("bench", 2)
	defer p.Close()
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		cred *syscall.Credential
	}{{"as-tend", nil}, {"as-caller", &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := p.Do(ctx, bc.cred, func() {}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
