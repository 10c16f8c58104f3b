// Command overlaycheck builds every zonetoll kustomize target and checks its invariants.
// See docs/deploy.md.
package main

import "github.com/zonetoll/zonetoll/shared/climain"

func main() { climain.Main(newApp()) }
