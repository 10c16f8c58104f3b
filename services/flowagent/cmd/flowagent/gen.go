package main

//go:generate go run . settings --markdown --output ../../../../docs/settings/flowagent.md
