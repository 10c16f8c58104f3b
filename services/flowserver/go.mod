module github.com/zonetoll/zonetoll/services/flowserver

go 1.26.0
