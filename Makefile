# zonetoll: one entry point for building, testing and the demo. See README.md.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w \
	-X github.com/zonetoll/zonetoll/shared/buildinfo.Version=$(VERSION) \
	-X github.com/zonetoll/zonetoll/shared/buildinfo.Revision=$(REVISION)
SERVICES := zonelabeler flowagent flowserver costcalc

.PHONY: build images check test test-kernels generate generate-check bench demo testcluster setup clean

## build: every service binary into bin/ (static, no cgo)
build:
	@mkdir -p bin
	@for s in $(SERVICES); do \
		echo "go build bin/$$s"; \
		(cd services/$$s && CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o ../../bin/$$s ./cmd/$$s); \
	done
	cd testkit && CGO_ENABLED=0 go build -trimpath -o ../bin/testcluster ./cmd/testcluster

## images: an OCI image per service, without a container engine, into out/images/<svc> (+ .tar); see docs/deploy.md
images:
	cd tools && go run ./cmd/images build --version $(VERSION) --revision $(REVISION) --tarball

## setup: install what builds and tests need on a fresh machine (Debian packages); idempotent
setup:
	hack/setup.sh

## check: the inner loop — gofmt, vet and every test that needs neither root nor the test cluster (-short)
check:
	hack/check.sh

## test: the whole suite — gofmt, generated files, vet, staticcheck, go test -race of every module
test: setup
	hack/test.sh

## test-kernels: the bpf and flowagent kernel tests in qemu VMs of Debian's 5.10, 6.1 and 6.12 cloud
## kernels (KERNELS="5.10 6.1 6.12 host" to choose); see docs/kernels.md
test-kernels: setup
	hack/kernels.sh $(KERNELS)

## generate: rebuild generated files (BPF objects and bindings); generate-check fails if that changes anything
generate:
	hack/generate.sh
generate-check:
	hack/generate.sh --check

## bench: every benchmark once (BENCH=regexp, COUNT=n); figures in docs/benchmarks.md
bench: setup
	hack/bench.sh

## testcluster: build (once, cached) the kube-apiserver and etcd the cluster tests run (and kube-controller-manager, kube-proxy), upstream prometheus/promtool and vmagent
testcluster:
	cd testkit && go run ./cmd/testcluster build && go run ./cmd/testcluster build --routing && go run ./cmd/testcluster build --kubernetes-version oldest && go run ./cmd/testcluster build --routing --kubernetes-version oldest && go run ./cmd/prometheus build && go run ./cmd/vmagent build

## demo: the local three-zone end-to-end demo
demo: setup
	hack/demo.sh

clean:
	rm -rf bin out
