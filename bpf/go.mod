module github.com/zonetoll/zonetoll/bpf

go 1.26.0
