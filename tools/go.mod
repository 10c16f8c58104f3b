module github.com/zonetoll/zonetoll/tools

go 1.26.0
