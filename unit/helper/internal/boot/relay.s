//go:build linux

// This file lets the compiler accept the body-less functions of relay.go,
// whose bodies the runtime provides (see the //go:linkname comments there).
