package demo

import (
	"encoding/json"
	"fmt"
)

// serviceAdvice is what the demo reads of one Service in `costcalc advise --format json` (the type is
// costcalc's internal/advice.ServiceAdvice, which tools/ cannot import).
type serviceAdvice struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Clouds    []struct {
		Cloud         string  `json:"cloud"`
		SavingDollars float64 `json:"saving_dollars"`
	} `json:"clouds"`
	Recommendation *struct {
		Setting   string `json:"setting"`
		Safeguard string `json:"safeguard"`
	} `json:"recommendation"`
	Risks []struct {
		Kind    string `json:"kind"`
		Zone    string `json:"zone"`
		Message string `json:"message"`
	} `json:"risks"`
}

// apiAdvice returns the advice for the application's api Service, the one the demo routes; an error
// when the advice does not parse or does not list it.
func apiAdvice(m *Model, adviceJSON []byte) (*serviceAdvice, error) {
	var adv struct {
		Services []serviceAdvice `json:"services"`
	}
	if err := json.Unmarshal(adviceJSON, &adv); err != nil {
		return nil, fmt.Errorf("reading the advice: %w", err)
	}
	for i, s := range adv.Services {
		if s.Namespace == m.AppNS && s.Service == "api" {
			return &adv.Services[i], nil
		}
	}
	return nil, fmt.Errorf("reading the advice: it does not list %s/api", m.AppNS)
}
