module github.com/zonetoll/zonetoll/services/flowagent

go 1.26.0
