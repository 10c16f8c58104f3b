module github.com/zonetoll/zonetoll/services/costcalc

go 1.26.0
