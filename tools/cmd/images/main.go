// Command images builds zonetoll's service images into OCI layouts without a container engine.
// See docs/deploy.md.
package main

import "github.com/zonetoll/zonetoll/shared/climain"

func main() { climain.Main(newApp()) }
