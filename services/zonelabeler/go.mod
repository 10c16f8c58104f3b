module github.com/zonetoll/zonetoll/services/zonelabeler

go 1.26.0
