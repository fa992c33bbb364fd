//go:build linux

package helper

// LocateIn is locateIn, for tests: Locate with tend's directory given.
var LocateIn = locateIn
