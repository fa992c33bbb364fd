//go:build linux

// Package test holds the black-box tests of the tend binary: TestMain
// builds it once, and the tests run it as PID 1 of a fresh PID namespace
// (CLONE_NEWPID|CLONE_NEWNS) or as a plain child subreaper, with the test
// binary itself re-executed as the main process and its descendants.
//
// Set TEND_TEST_BINARY to test a prebuilt binary instead of building one.
package test
