// Command vmagent builds the upstream vmagent that zonetoll's per-zone vmagent
// example is run with. See docs/zonelabeler.md.
package main

import "github.com/zonetoll/zonetoll/shared/climain"

func main() { climain.Main(newApp()) }
