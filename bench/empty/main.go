// Command empty does nothing: an empty static Go program, the reference of
// the unit helper's start and of `tend spawn` (docs/BENCHMARKS.md).
package main

func main() {}
