module github.com/zonetoll/zonetoll/bpf

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/vishvananda/netlink v1.3.1
	golang.org/x/sys v0.47.0
)

require github.com/vishvananda/netns v0.0.5 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go

require (
	github.com/zonetoll/zonetoll/shared v0.0.0-00010101000000-000000000000
	github.com/zonetoll/zonetoll/testkit v0.0.0
)

replace github.com/zonetoll/zonetoll/testkit => ../testkit

replace github.com/zonetoll/zonetoll/shared => ../shared
