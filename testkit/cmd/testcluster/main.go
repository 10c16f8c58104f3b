// Command testcluster builds and runs the real kube-apiserver + etcd that
// zonetoll's cluster tests and demo use. See docs/testcluster.md.
package main

import "github.com/zonetoll/zonetoll/shared/climain"

func main() { climain.Main(newApp()) }
