// Command prometheus builds the upstream prometheus and promtool that
// zonetoll's per-zone scrape examples are checked with. See docs/zonelabeler.md.
package main

import "github.com/zonetoll/zonetoll/shared/climain"

func main() { climain.Main(newApp()) }
