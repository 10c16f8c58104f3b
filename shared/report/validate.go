package report

import "fmt"

// checkNodeName returns why name is not a valid DNS-1123 subdomain, or "" if
// it is. The rule is the one Kubernetes applies to node names
// (k8s.io/apimachinery IsDNS1123Subdomain): at most 253 characters, dot-
// separated labels of a-z, 0-9 and '-', each label starting and ending with a
// letter or digit. It is written out here so the wire format imports nothing
// from Kubernetes. It takes the decoder's bytes as they are, since converting
// them to a string would allocate for every report. The message leaves the
// name out, so that the caller decides how much of it to show.
func checkNodeName[S ~string | ~[]byte](name S) string {
	switch {
	case len(name) == 0:
		return "empty"
	case len(name) > MaxNodeNameLen:
		return fmt.Sprintf("length %d exceeds %d", len(name), MaxNodeNameLen)
	}
	labelStart := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-':
			if i == labelStart {
				return fmt.Sprintf("'-' at %d starts a label", i)
			}
			if i == len(name)-1 || name[i+1] == '.' {
				return fmt.Sprintf("'-' at %d ends a label", i)
			}
		case c == '.':
			if i == labelStart {
				return fmt.Sprintf("empty label at %d", i)
			}
			if i == len(name)-1 {
				return "ends with '.'"
			}
			labelStart = i + 1
		default:
			return fmt.Sprintf("character %q at %d is not allowed (only a-z, 0-9, '-', '.')", c, i)
		}
	}
	return ""
}

// checkWindow returns why a window of Unix nanoseconds is out of order, or ""
// if it is fine. Zero and negative starts are refused because they are what an
// unset or wrapped clock value looks like, never a real window.
func checkWindow(start, end int64) string {
	switch {
	case start <= 0:
		return fmt.Sprintf("start %d is not after the Unix epoch", start)
	case end < start:
		return fmt.Sprintf("end %d is before start %d", end, start)
	}
	return ""
}

func isZero(id [16]byte) bool {
	return id == [16]byte{}
}
